"""Only authenticated staff see anything: every page needs a staff login unless it is public on purpose."""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import OperationalError
from django.http import HttpResponse, JsonResponse
from psycopg.errors import QueryCanceled

from tagsite.access import forbidden_page

PUBLIC_PREFIXES = ("/accounts/login/", "/static/", "/admin/login/")
BROWSER_API_PAGES = ("/api/docs/",)


class NulByteMiddleware:
    """PostgreSQL text cannot hold NUL, so a parameter with one is a bad request, never a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        params = [request.GET]
        if request.content_type == "application/x-www-form-urlencoded":
            params.append(request.POST)
        if "\x00" in request.path or any(_has_nul(query) for query in params):
            return JsonResponse({"detail": "NUL bytes are not allowed in parameters."}, status=400)
        return self.get_response(request)


def _has_nul(query) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in query.lists())


class UploadSizeLimitMiddleware:
    """Refuse an oversized upload from its Content-Length, before Django spools it to disk."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        length = request.META.get("CONTENT_LENGTH") or "0"
        limit = settings.MAX_UPLOAD_BYTES + 64 * 1024  # room for the multipart headers
        if length.isdigit() and int(length) > limit:
            message = f"request is {length} bytes, over the upload limit of {settings.MAX_UPLOAD_BYTES}"
            return JsonResponse({"file": [message]}, status=413)
        return self.get_response(request)


class StaffRequiredMiddleware:
    """Pages redirect anonymous and non-staff users to the login page; the API answers 401/403 itself."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path
        user = request.user
        api_call = path.startswith("/api/") and not path.startswith(BROWSER_API_PAGES)
        if path.startswith(PUBLIC_PREFIXES) or api_call or (user.is_authenticated and user.is_staff):
            return self.get_response(request)
        if request.headers.get("accept", "").startswith("application/json"):
            return JsonResponse({"detail": "Staff login required."}, status=403)
        return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)


def limit_web_statements(sender, connection, **kwargs) -> None:
    """No database statement of a web request runs longer than TAGSITE_WEB_STATEMENT_TIMEOUT seconds.

    Web processes only: a page or API call that holds a backend for minutes (a search with hundreds of terms, a
    lock wait) takes a connection from everyone else, while a Celery task or a command is long on purpose (an
    import, a tagging backlog) and must not be cut off. So the WSGI application (`tagsite.wsgi`) connects this to
    `connection_created`, and each of its connections gets the limit once when it opens: setting it per request
    cost two more round trips a request. A cancelled statement answers 503 (`StatementTimeoutMiddleware`).
    """
    milliseconds = int(settings.WEB_STATEMENT_TIMEOUT * 1000)
    if milliseconds > 0:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [str(milliseconds)])


class StatementTimeoutMiddleware:
    """A statement the web limit cancelled (`limit_web_statements`) answers 503 with the reason, not a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError) or not isinstance(exception.__cause__, QueryCanceled):
            return None
        message = (
            f"The database took longer than {settings.WEB_STATEMENT_TIMEOUT:g} s for this request and stopped it; "
            "narrow the search (fewer terms) or try again when the server is less busy."
        )
        if request.path.startswith("/api/") or request.headers.get("accept", "").startswith("application/json"):
            return JsonResponse({"detail": message}, status=503)
        return HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")


class ForbiddenPageMiddleware:
    """A page's PermissionDenied becomes the 403 page in the site's layout, saying what is missing and whom to ask.

    Handled here, the refusal is one "Forbidden" line in the log instead of a traceback; the API keeps
    DRF's own JSON answers.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, PermissionDenied) and not request.path.startswith("/api/"):
            return forbidden_page(request, exception)
        return None
