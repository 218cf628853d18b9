import io

from PIL import Image

from tagsite.ai.openai_compat import jpeg_bytes
from tagsite.imaging import open_image
from tests.factories import make_jpeg


def test_a_decoded_picture_is_turned_upright_once(tmp_path):
    """A picture stored sideways (orientation 6) is upright after decoding, and stays so through the VLM's JPEG
    encoding, whole or cropped: the decoded pixels carry no orientation left to apply a second time."""
    path = make_jpeg(tmp_path / "sideways.jpg", size=(64, 48), orientation=6)
    decoded = open_image(path, max_pixels=10**8)
    assert decoded.image.size == (48, 64) and (decoded.width, decoded.height) == (48, 64)
    assert Image.open(io.BytesIO(jpeg_bytes(decoded.image))).size == (48, 64)
    assert Image.open(io.BytesIO(jpeg_bytes(decoded.image.crop((0, 0, 40, 60))))).size == (40, 60)
