"""Who may enter, and what a refused person reads: the missing staff flag or permission, and whom to ask."""

from functools import wraps

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from tagsite.services.accounts import MODERATORS, administrators


def whom_to_ask() -> str:
    """The administrators by name, or the role when there is none to name."""
    names = administrators()
    return f"an administrator ({', '.join(names)})" if names else "an administrator"


class StaffAuthenticationForm(AuthenticationForm):
    """The login form: a right password on an account without staff access says so, instead of an empty form."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not user.is_staff:
            raise forms.ValidationError(no_staff_message(user), code="no_staff")


class LoginView(auth_views.LoginView):
    """Login; someone already logged in without staff access (sent back here by the middleware) reads why."""

    authentication_form = StaffAuthenticationForm

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        context["no_staff"] = no_staff_message(user) if user.is_authenticated and not user.is_staff else ""
        return context


def no_staff_message(user) -> str:
    return (
        f"The account {user.get_username()} has no staff access to tagsite. Ask {whom_to_ask()} to mark it as "
        f"staff in admin and to add it to the {MODERATORS} group."
    )


class MissingPermission(PermissionDenied):
    """A staff user lacks a permission; the message names it."""

    def __init__(self, perm: str):
        self.perm = perm
        super().__init__(f"This needs the permission “{permission_name(perm)}” ({perm}), which your account lacks.")


def permission_name(perm: str) -> str:
    app_label, _, codename = perm.partition(".")
    found = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
    return found.name if found else perm


def require(user, perm: str) -> None:
    if not user.has_perm(perm):
        raise MissingPermission(perm)


def permission_required(perm: str):
    """A page that needs `perm`: without it, the 403 page says which permission and whom to ask."""

    def decorator(view):
        @wraps(view)
        def checked(request, *args, **kwargs):
            require(request.user, perm)
            return view(request, *args, **kwargs)

        return checked

    return decorator


def forbidden_page(request, exception: PermissionDenied):
    """The 403 page in the site's layout: what is missing, and whom to ask for it."""
    perm = getattr(exception, "perm", "")
    app_label, _, codename = perm.partition(".")
    moderators_have_it = (
        bool(perm)
        and Group.objects.filter(
            name=MODERATORS, permissions__content_type__app_label=app_label, permissions__codename=codename
        ).exists()
    )
    context = {
        "reason": str(exception) or "Your account lacks a permission this page needs.",
        "moderators_have_it": moderators_have_it,
        "moderators": MODERATORS,
        "whom": whom_to_ask(),
    }
    return render(request, "403.html", context, status=403)
