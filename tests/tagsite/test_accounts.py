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
