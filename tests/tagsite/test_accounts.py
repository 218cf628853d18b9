import pytest
from django.contrib.auth.models import User

from tagsite.services.accounts import AccountError, ensure_superuser

pytestmark = pytest.mark.django_db


def test_generates_a_password_once(monkeypatch):
    monkeypatch.delenv("TAGSITE_ADMIN_PASSWORD", raising=False)
    username, password = ensure_superuser()
    assert username == "admin" and len(password) >= 12
    assert User.objects.get(username="admin").check_password(password)
    assert ensure_superuser() == ("admin", None)


def test_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("TAGSITE_ADMIN_USER", "boss")
    monkeypatch.setenv("TAGSITE_ADMIN_PASSWORD", "a-chosen-password")
    assert ensure_superuser() == ("boss", None)
    assert User.objects.get(username="boss", is_staff=True, is_superuser=True).check_password("a-chosen-password")


def test_an_ordinary_user_of_that_name_is_not_promoted_silently():
    User.objects.create_user("admin", password="x")
    with pytest.raises(AccountError, match="not an active staff superuser"):
        ensure_superuser()


def test_a_request_reads_its_session_from_the_shared_cache(admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    admin_client.get("/jobs/")
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get("/jobs/").status_code == 200
    assert not [query for query in queries if "django_session" in query["sql"]]


def test_a_logout_ends_the_session_everywhere(client, admin_user):
    """The cached session goes with the database row: the old cookie, sent again, is logged out."""
    from django.contrib.sessions.models import Session
    from django.core.cache import cache

    client.force_login(admin_user)
    cookie = client.cookies["sessionid"].value
    assert client.get("/jobs/").status_code == 200
    client.post("/accounts/logout/")
    assert not Session.objects.filter(session_key=cookie).exists()
    assert cache.get(f"django.contrib.sessions.cached_db{cookie}") is None
    client.cookies["sessionid"] = cookie
    assert client.get("/jobs/").status_code == 302
