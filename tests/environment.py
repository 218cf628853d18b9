"""Loaded with `-p tests.environment` before Django's settings: isolates this test run.

Each run gets its own media folder and its own Redis key prefix, so runs side by side
(and the test worker process, which inherits this environment) never see each other's data.
"""

import os
import tempfile
import uuid

os.environ.setdefault("TAGSITE_MEDIA_DIR", tempfile.mkdtemp(prefix="tagsite-test-media-"))
os.environ.setdefault("CELERY_BROKER_URL", os.environ.get("TAGSITE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
os.environ.setdefault("CELERY_KEY_PREFIX", f"tagsite-test-{uuid.uuid4().hex[:10]}:")
# Playwright's sync API runs an event loop in the test thread; the ORM calls there are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
