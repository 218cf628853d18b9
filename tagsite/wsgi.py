"""WSGI entry point (gunicorn serves `tagsite.wsgi:application`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")
application = get_wsgi_application()
