"""Users and the moderators group."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from tagsite.features import moderator_permissions

MODERATORS = "moderators"


class AccountError(RuntimeError):
    pass


def ensure_superuser() -> tuple[str, str | None]:
    """Make sure a staff superuser exists. Returns its name and, only when just generated, its password."""
    User = get_user_model()
    if User.objects.filter(is_superuser=True, is_staff=True, is_active=True).exists():
        return User.objects.filter(is_superuser=True).values_list("username", flat=True).first(), None
    username = os.environ.get("TAGSITE_ADMIN_USER", "admin")
    if User.objects.filter(username=username).exists():
        raise AccountError(
            f"User '{username}' exists but is not an active staff superuser. Promote it "
            f"(manage.py shell, or admin) or set TAGSITE_ADMIN_USER to a new name."
        )
    password = os.environ.get("TAGSITE_ADMIN_PASSWORD")
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    User.objects.create_superuser(username, os.environ.get("TAGSITE_ADMIN_EMAIL", ""), password)
    return username, generated


def ensure_moderators_group(**kwargs) -> Group:
    """The `moderators` group with the core's and every app's moderator permissions (tagsite.features), and every review
    kind's `review_<kind>` permission."""
    from tagsite import review

    group, _ = Group.objects.get_or_create(name=MODERATORS)
    wanted = []
    for dotted in [*moderator_permissions(), *review.permissions()]:
        app_label, codename = dotted.split(".", 1)
        wanted += Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    group.permissions.add(*wanted)
    return group


def administrators() -> list[str]:
    """Whom to ask for access: the active superusers, as `name <email>` where an email is set."""
    users = get_user_model().objects.filter(is_superuser=True, is_active=True).order_by("username")
    return [f"{user.get_username()} <{user.email}>" if user.email else user.get_username() for user in users]
