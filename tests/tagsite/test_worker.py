import pytest

from tagsite.models import Image, Job
from tests.conftest import wait_for


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_import_job_runs_on_a_real_worker(celery_worker, admin_client, image_folder, settings):
    settings.IMPORT_ROOTS = [str(image_folder.parent)]  # the job carries the roots checked at the request
    response = admin_client.post("/api/jobs/import/", {"path": str(image_folder)}, content_type="application/json")
    assert response.status_code == 202
    job_id = response.json()["id"]
    job = wait_for(lambda: Job.objects.filter(pk=job_id, status__in=["succeeded", "failed"]).first())
    assert job.status == "succeeded", job.message
    assert job.counts["new"] == 3
    assert Image.objects.filter(status="ok").count() == 3
