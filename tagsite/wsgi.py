"""WSGI entry point (gunicorn serves `tagsite.wsgi:application`)."""

import os

from django.core.wsgi import get_wsgi_application
from django.db.backends.signals import connection_created

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")
application = get_wsgi_application()

from tagsite.middleware import limit_web_statements  # noqa: E402 - needs the settings loaded above

connection_created.connect(limit_web_statements, dispatch_uid="tagsite.web_statement_timeout")
