"""WSGI entry point (gunicorn serves `tagsite.wsgi:application`)."""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.db.backends.signals import connection_created
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")
application = get_wsgi_application()

from tagsite.middleware import limit_web_statements  # noqa: E402 - needs the settings loaded above

connection_created.connect(limit_web_statements, dispatch_uid="tagsite.web_statement_timeout")

# The garbage collector walked the 160k objects of the loaded code again and again: about 2 ms of a 50-row list's
# CPU and, once in a hundred requests, a full collection of tens of ms. Imported now (every view) and frozen, they
# are skipped. The thresholds stay Python's: collecting young objects after 50,000 allocations, not 700, saved little
# and made each young collection a pause of 40-65 ms (30k-45k objects at once).
get_resolver().url_patterns  # noqa: B018 - imports every view module
gc.freeze()
