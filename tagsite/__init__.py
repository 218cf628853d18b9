"""tagsite: the Django project and its core app (library, tags, ingest, jobs, adapters)."""

from tagsite.celery import app as celery_app

__all__ = ["celery_app"]
