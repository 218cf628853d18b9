from pathlib import Path

import pytest
from PIL import Image as PILImage

from suggestions import services
from tagsite.ai.openai_compat import forget_structured_outputs
from tagsite.models import Image
from tagsite.services.ingest import ingest_paths
from tests.suggestions.wd14 import build_model


@pytest.fixture(autouse=True)
def fresh_structured_output_probes():
    """Test servers reuse ports: a dialect probed from one server (say `none`) must not answer for a later one."""
    forget_structured_outputs()
    yield
    forget_structured_outputs()


@pytest.fixture(autouse=True)
def own_metadata_dir(settings, tmp_path):
    """Run audits (`job-<id>/`) in the test's own folder: job ids restart in every test database, so runs sharing
    var/metadata (two people testing one checkout) would read each other's audit.jsonl."""
    settings.METADATA_DIR = tmp_path / "metadata"


@pytest.fixture
def models_dir(settings, tmp_path):
    settings.SUGGESTIONS_MODELS_DIR = tmp_path / "models"
    return settings.SUGGESTIONS_MODELS_DIR


@pytest.fixture
def wd14(models_dir, tmp_path):
    """The dynamic-batch 448 test model, installed and active."""
    return services.install_model("wd-test", build_model(tmp_path / "wd14-src"), version="v1")


def add_image(folder: Path, name: str, color, size=(96, 96)) -> Image:
    """A real PNG of one colour, ingested into the library."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    PILImage.new("RGB", size, color).save(path)
    (image,) = ingest_paths([str(path)])
    return image
