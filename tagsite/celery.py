"""The Celery app. Queues: `gpu` (ONNX inference), `llm` (chat calls), `io` (metadata writes), `default`."""

import os
import warnings

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")
# `./tagsite.sh run` runs as root on a fresh machine, as the README says. Celery's warning about a root worker
# is about pickle, which this worker never accepts (JSON only); it is not the user's to read.
warnings.filterwarnings("ignore", message="You're running the worker with superuser privileges")

app = Celery("tagsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("default", "gpu", "llm", "io")]
app.autodiscover_tasks()
