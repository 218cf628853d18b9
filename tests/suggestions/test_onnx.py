"""The ONNX adapter against real models built in the WD14 contract: wrong preprocessing fails here."""

import numpy as np
import pytest
from PIL import Image

from tagsite.ai.onnx import load_pixels, load_tagger, pad_and_resize, predict_files, preprocess, read_input_shape
from tests.suggestions.wd14 import build_model

RED = (255, 0, 0)
MAX_PIXELS = 50_000_000


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "dynamic": load_tagger(str(build_model(root / "dynamic") / "model.onnx")),
        "fixed": load_tagger(str(build_model(root / "fixed", batch=1) / "model.onnx")),
        "fixed4": load_tagger(str(build_model(root / "fixed4", batch=4) / "model.onnx")),
        "small": load_tagger(str(build_model(root / "small", size=320) / "model.onnx")),
    }


def scores(tagger, image: Image.Image) -> np.ndarray:
    """The nine pixel features: whole-image, top-band and bottom-band means of input channels 0, 1, 2."""
    batch = preprocess(image, tagger.input_size)[None]
    return tagger.predict(batch)[0][4:13]


def test_shapes_are_read_from_the_graph(models):
    assert (models["dynamic"].input_size, models["dynamic"].fixed_batch) == (448, None)
    assert (models["fixed"].input_size, models["fixed"].fixed_batch) == (448, 1)
    assert (models["small"].input_size, models["small"].fixed_batch) == (320, None)
    assert models["dynamic"].providers == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="NHWC"):
        read_input_shape(["batch", 3, 448, 448])


def test_same_process_reuses_the_session(models):
    assert load_tagger(models["dynamic"].path) is models["dynamic"]


@pytest.mark.parametrize("name", ["dynamic", "fixed", "small"])
def test_pixels_go_in_as_bgr_0_to_255(models, name):
    features = scores(models[name], Image.new("RGB", (300, 300), RED))
    # channel 0 is blue, channel 2 is red: an RGB order would swap them, a /255 would give 1/255
    np.testing.assert_allclose(features[:3], [0.0, 0.0, 1.0], atol=1e-3)


@pytest.mark.parametrize("name", ["dynamic", "small"])
def test_wide_image_is_padded_white_and_centred(models, name):
    features = scores(models[name], Image.new("RGB", (400, 200), RED))
    np.testing.assert_allclose(features[3:6], [1, 1, 1], atol=1e-3)  # top band: white padding
    np.testing.assert_allclose(features[6:9], [1, 1, 1], atol=1e-3)  # bottom band: white too, so centred
    np.testing.assert_allclose(features[:3], [0.5, 0.5, 1.0], atol=0.01)  # half padding, not stretched


def test_tall_image_keeps_its_rows_and_gets_white_sides(models):
    features = scores(models["dynamic"], Image.new("RGB", (100, 400), RED))
    np.testing.assert_allclose(features[3:6], [0.75, 0.75, 1.0], atol=0.01)  # red in the middle quarter only
    np.testing.assert_allclose(features[:3], [0.75, 0.75, 1.0], atol=0.01)


def test_transparency_becomes_white(models):
    features = scores(models["dynamic"], Image.new("RGBA", (64, 64), (0, 0, 0, 0)))
    np.testing.assert_allclose(features, np.ones(9), atol=1e-3)


def test_bicubic_resize_matches_the_reference(models):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (600, 600, 3), dtype=np.uint8))
    pixels = preprocess(image, 448)
    reference = np.asarray(image.resize((448, 448), Image.Resampling.BICUBIC), dtype=np.float32)[:, :, ::-1]
    assert pixels.dtype == np.float32 and pixels.shape == (448, 448, 3)
    np.testing.assert_array_equal(pixels, reference)


@pytest.mark.parametrize(
    "width, height", [(750, 500), (501, 750), (3000, 2001), (449, 448), (448, 300), (300, 301), (200, 120), (333, 333)]
)
def test_padding_shortcut_matches_pad_then_resize(width, height):
    rng = np.random.default_rng(width * height)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    side = max(width, height)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    reference = square.resize((448, 448), Image.Resampling.BICUBIC)
    difference = np.abs(np.asarray(pad_and_resize(image, 448), np.int16) - np.asarray(reference, np.int16))
    assert difference.max() <= 1 and np.count_nonzero(difference) < difference.size / 1000  # float rounding at most


def test_preprocess_writes_into_a_batch_slot():
    image = Image.new("RGB", (300, 200), RED)
    batch = np.zeros((2, 448, 448, 3), np.float32)
    assert np.shares_memory(preprocess(image, 448, batch[1]), batch[1])
    np.testing.assert_array_equal(batch[1], preprocess(image, 448))
    assert not batch[0].any()


@pytest.mark.parametrize("name", ["dynamic", "fixed", "fixed4"])
def test_batches_predict_like_single_images(models, name, tmp_path):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30), (200, 100, 0)]
    paths = []
    for index, color in enumerate(colors):
        path = tmp_path / f"{index}.png"
        Image.new("RGB", (120 + 40 * index, 90), color).save(path)
        paths.append(str(path))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8not really")
    paths.insert(2, str(tmp_path / "broken.jpg"))
    tagger = models[name]
    load = lambda path, out=None: load_pixels(path, tagger.input_size, MAX_PIXELS, out)  # noqa: E731
    results = list(predict_files(tagger, paths, load, batch_size=4, threads=2))
    assert [r.item for r in results] == paths  # in order, the broken file in its place
    assert results[2].probabilities is None and "image" in results[2].error
    reference = models["dynamic"]  # the same weights with a dynamic batch axis
    for result in results[:2] + results[3:]:
        single = reference.predict(load(result.item)[None])[0]
        np.testing.assert_allclose(result.probabilities, single, atol=5e-3)  # float32 sums differ by batch layout


@pytest.mark.parametrize(("count", "broken"), [(1, None), (3, None), (5, None), (4, 1), (5, 4), (1, 0)])
def test_a_fixed_batch_of_4_takes_partial_batches(models, tmp_path, count, broken):
    """The graph refuses a chunk of other than 4 ("Got: 3 Expected: 4"): short chunks are padded, padding dropped."""
    paths = []
    for index in range(count):
        path = tmp_path / f"{index}.png"
        Image.new("RGB", (100, 80 + 10 * index), (40 * index, 255 - 40 * index, 90)).save(path)
        paths.append(str(path))
    if broken is not None:
        (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        paths[broken] = str(tmp_path / "broken.png")
    tagger, reference = models["fixed4"], models["dynamic"]
    load = lambda path, out=None: load_pixels(path, tagger.input_size, MAX_PIXELS, out)  # noqa: E731
    results = list(predict_files(tagger, paths, load, batch_size=32, threads=2))
    assert [r.item for r in results] == paths
    for index, result in enumerate(results):
        if index == broken:
            assert result.probabilities is None and result.error
            continue
        assert not result.error and result.probabilities.shape == (17,)
        np.testing.assert_allclose(result.probabilities, reference.predict(load(result.item)[None])[0], atol=5e-3)
    decoded = [load(path) for index, path in enumerate(paths) if index != broken]
    if len(decoded) % 4:
        with pytest.raises(Exception, match="Expected: 4"):  # what the padding is there for
            tagger.session.run(None, {tagger.input_name: np.stack(decoded)})


def test_a_model_reinstalled_over_the_same_file_gets_a_new_session(tmp_path):
    path = build_model(tmp_path / "installed") / "model.onnx"
    first = load_tagger(str(path))
    path.write_bytes((build_model(tmp_path / "other", size=320) / "model.onnx").read_bytes())
    second = load_tagger(str(path))
    assert second is not first and second.input_size == 320
    assert load_tagger(str(path)) is second
