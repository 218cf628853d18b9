import pytest

from tagsite.models import Image
from tagsite.services.ingest import import_folder


@pytest.mark.django_db
def test_import_folder(image_folder):
    counts = import_folder(image_folder)
    assert counts["new"] == 3
    assert Image.objects.filter(status="ok").count() == 3
