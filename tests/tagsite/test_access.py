"""Refusals a person can act on: a login without staff access and a page without a permission say what is
missing and whom to ask, in the site's layout, with no traceback in the log."""

import logging

import pytest
from django.contrib.auth.models import User

from tagsite.models import Job
from tagsite.services.accounts import ensure_moderators_group
from tests.browser import screenshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def administrator():
    return User.objects.create_superuser("root", "root@example.org", "a-long-password")


def test_a_right_password_without_staff_access_says_so_and_whom_to_ask(client, administrator):
    User.objects.create_user("visitor", password="a-long-password")
    response = client.post("/accounts/login/", {"username": "visitor", "password": "a-long-password"})
    page = response.content.decode()
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert "The account visitor has no staff access to tagsite." in page
    assert "root &lt;root@example.org&gt;" in page and "moderators group" in page


def test_a_wrong_password_is_told_apart_from_missing_staff_access(client, administrator):
    User.objects.create_user("visitor", password="a-long-password")
    page = client.post("/accounts/login/", {"username": "visitor", "password": "wrong"}).content.decode()
    assert "Please enter a correct username and password" in page and "no staff access" not in page


def test_a_logged_in_account_without_staff_access_is_told_why_it_is_back_at_the_login(client, administrator):
    client.force_login(User.objects.create_user("visitor"))
    response = client.get("/jobs/", follow=True)
    assert response.redirect_chain[-1][0].startswith("/accounts/login/")
    assert "The account visitor has no staff access" in response.content.decode()


@pytest.fixture
def plain_staff(client):
    """Staff, but in no group: every page that needs a permission refuses it."""
    ensure_moderators_group()
    client.force_login(User.objects.create_user("helper", is_staff=True))
    return client


@pytest.mark.parametrize(
    ("method", "path", "permission", "name"),
    [
        ("get", "/tag_categorize", "categorization.view_extendedcategory", "Can view extended category"),
        ("post", "/tag_categorize/run", "categorization.categorize_tags", None),
        ("post", "/suggestions/unmapped/", "suggestions.review_tagsuggestion", None),
        ("post", "/suggestions/report/", "suggestions.review_tagsuggestion", None),
        ("post", "/jobs/{job}/cancel/", "tagsite.cancel_job", None),
    ],
)
def test_a_missing_permission_is_a_403_page_that_names_it(
    plain_staff, administrator, caplog, method, path, permission, name
):
    job = Job.objects.create(kind="import_images", status=Job.Status.RUNNING)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = getattr(plain_staff, method)(path.format(job=job.pk))
    page = response.content.decode()
    assert response.status_code == 403
    assert 'class="topbar"' in page and "Permission needed" in page  # the site's layout
    assert f"({permission})" in page and (name is None or f"“{name}”" in page)
    assert "Ask an administrator (root &lt;root@example.org&gt;)" in page
    assert "<strong>moderators</strong> group" in page  # the group that has it
    assert [record.exc_info for record in caplog.records] == [None]  # one "Forbidden" line, no traceback


def test_a_permission_the_moderators_group_lacks_is_granted_in_admin(plain_staff, administrator, settings):
    from django.contrib.auth.models import Group, Permission

    Group.objects.get(name="moderators").permissions.remove(Permission.objects.get(codename="cancel_job"))
    job = Job.objects.create(kind="import_images", status=Job.Status.RUNNING)
    page = plain_staff.post(f"/jobs/{job.pk}/cancel/").content.decode()
    assert "grant you this permission in admin" in page and "<strong>moderators</strong>" not in page


def test_the_api_keeps_its_json_refusal(plain_staff):
    job = Job.objects.create(kind="import_images", status=Job.Status.RUNNING)
    response = plain_staff.post(f"/api/jobs/{job.pk}/cancel/", content_type="application/json")
    assert response.status_code == 403 and response["Content-Type"] == "application/json"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_refusals_in_the_browser_at_phone_width(browser, live_server, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.org", "a-long-password")
    django_user_model.objects.create_user("visitor", password="a-long-password")
    django_user_model.objects.create_user("helper", password="a-long-password", is_staff=True)
    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    page.goto(f"{live_server.url}/")
    page.fill("input[name=username]", "visitor")
    page.fill("input[name=password]", "a-long-password")
    page.click("button[type=submit]")
    page.locator("text=has no staff access").wait_for()
    screenshot(page, "login-no-staff-390")
    page.fill("input[name=username]", "helper")
    page.fill("input[name=password]", "a-long-password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/tag_categorize")
    page.locator("text=Permission needed").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "forbidden-390")
    context.close()
