"""Tagging by hand outside admin: the bulk endpoints behind the library's select-many, and names typed with
spaces (`Tabby Cat`) in autocomplete and search."""

import pytest
from django.contrib.auth.models import User

from tagsite.models import ImageTag, Tag
from tagsite.services.accounts import MODERATORS, ensure_moderators_group
from tagsite.services.ingest import ingest_paths
from tagsite.services.tags import add_tags, create_alias, create_implication, parse_query
from tests.factories import make_jpeg

pytestmark = pytest.mark.django_db


@pytest.fixture
def images(tmp_path):
    return ingest_paths([str(make_jpeg(tmp_path / f"{n}.jpg", color=(n * 40, 90, 120))) for n in range(3)])


def logged_in(client, name: str, moderator: bool):
    user = User.objects.create_user(name, is_staff=True)
    if moderator:
        user.groups.add(ensure_moderators_group())
    client.force_login(user)
    return client


def tags_of(image) -> dict[str, tuple[str, str | None]]:
    rows = ImageTag.objects.filter(image=image).select_related("tag", "added_by")
    return {row.tag.name: (row.source, row.added_by and row.added_by.username) for row in rows}


def test_bulk_tagging_applies_aliases_and_implications_and_records_who(client, images):
    create_implication("tabby_cat", "cat")
    create_alias("tabby", "tabby_cat")
    moderator = logged_in(client, "mod", moderator=True)
    ids = [images[0].pk, images[1].pk]
    response = moderator.post("/api/images/tags/", {"images": ids, "tags": ["Tabby"]}, content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"images": 2, "tags": ["cat", "tabby_cat"]}
    for image in images[:2]:
        assert tags_of(image) == {"tabby_cat": ("manual", "mod"), "cat": ("implied", "mod")}
    assert tags_of(images[2]) == {}
    assert Tag.objects.get(name="cat").usage_count == 2

    body = {"images": [images[0].pk], "tags": ["Tabby Cat"]}
    response = moderator.post("/api/images/untag/", body, content_type="application/json")
    assert response.json() == {"images": 1, "removed": 1}
    assert set(tags_of(images[0])) == {"cat"} and set(tags_of(images[1])) == {"tabby_cat", "cat"}
    assert Tag.objects.get(name="tabby_cat").usage_count == 1


@pytest.mark.parametrize("path", ["/api/images/tags/", "/api/images/untag/"])
def test_bulk_tagging_needs_the_same_permissions_as_tagging_one_image(client, images, path):
    staff = logged_in(client, "viewer", moderator=False)
    body = {"images": [images[0].pk], "tags": ["cat"]}
    assert staff.post(path, body, content_type="application/json").status_code == 403
    assert (
        staff.post(
            f"/api/images/{images[0].pk}/{path.rsplit('/', 2)[1]}/", {"tags": ["cat"]}, content_type="application/json"
        ).status_code
        == 403
    )
    assert not ImageTag.objects.exists()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"images": [10**9], "tags": ["cat"]}, "images", "No image has the id 1000000000."),
        ({"images": [], "tags": ["cat"]}, "images", "This list may not be empty."),
        ({"images": ["x"], "tags": ["cat"]}, "images", "A valid integer is required."),
        (
            {"images": [1], "tags": [f"t{n}" for n in range(101)]},
            "tags",
            "Ensure this field has no more than 100 elements.",
        ),
        (
            {"images": list(range(1, 1002)), "tags": ["cat"]},
            "images",
            "Ensure this field has no more than 1000 elements.",
        ),
    ],
)
def test_bulk_tagging_refuses_bad_requests_clearly(client, images, body, field, message):
    moderator = logged_in(client, "mod", moderator=True)
    response = moderator.post("/api/images/tags/", body, content_type="application/json")
    assert response.status_code == 400
    assert message in str(response.json()[field])
    assert not ImageTag.objects.exists()


def test_names_typed_with_spaces_are_found_by_autocomplete_and_search(admin_client, images):
    add_tags([images[0]], ["Tabby Cat", "window"])
    add_tags([images[1]], ["Deep Sea"])
    for typed in ("Tabby Ca", "tabby c", "TABBY_CAT", "tabby-cat"):
        found = admin_client.get("/api/tags/autocomplete/", {"q": typed}).json()
        assert [tag["name"] for tag in found] == ["tabby_cat"], typed
    search = lambda q: [image["id"] for image in admin_client.get("/api/images/", {"q": q}).json()["results"]]  # noqa: E731
    assert search('"Tabby Cat"') == [images[0].pk]
    assert search('"tabby cat" window') == [images[0].pk]
    assert sorted(search('~"Tabby Cat" ~"deep sea"')) == [images[0].pk, images[1].pk]
    assert search('-"Deep Sea" -"tabby cat"') == [images[2].pk]
    page = admin_client.get("/", {"q": '"Tabby Cat"'}).content.decode()
    assert page.count('class="tile"') == 1


@pytest.mark.parametrize(
    ("query", "parsed"),
    [
        ('"Tabby Cat" -"deep sea" ~"a b" smile', (["Tabby Cat", "smile"], ["deep sea"], ["a b"])),
        ("blue_eyes -hat ~cat ~dog", (["blue_eyes"], ["hat"], ["cat", "dog"])),
        ('-_- ^_^ "open quote', (["-_-", "^_^", "open quote"], [], [])),
        ('foo"bar -"" ~"  "', (['foo"bar'], [], [])),
    ],
)
def test_quoted_names_in_the_query_syntax(query, parsed):
    assert parse_query(query) == parsed


def test_moderators_group_has_the_tagging_permissions():
    group = ensure_moderators_group()
    assert group.name == MODERATORS
    codes = set(group.permissions.values_list("codename", flat=True))
    assert {"add_imagetag", "delete_imagetag"} <= codes


@pytest.mark.parametrize(("moderator", "shown"), [(True, True), (False, False)])
def test_the_tagging_controls_show_only_with_the_permissions(client, images, moderator, shown):
    viewer = logged_in(client, "someone", moderator=moderator)
    image_page = viewer.get(f"/images/{images[0].pk}/").content.decode()
    library = viewer.get("/").content.decode()
    assert ('id="tag-editor"' in image_page, 'class="untag"' in image_page) == (shown, False)  # no tags yet
    assert ('id="bulk-tags"' in library, 'class="select"' in library) == (shown, shown)
    add_tags([images[0]], ["window"])
    assert ('class="untag"' in viewer.get(f"/images/{images[0].pk}/").content.decode()) == shown
