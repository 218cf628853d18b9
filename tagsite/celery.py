"""The Celery app. Queues: `gpu` (ONNX inference), `llm` (chat calls), `default`."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")

app = Celery("tagsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("default", "gpu", "llm")]
app.autodiscover_tasks()
