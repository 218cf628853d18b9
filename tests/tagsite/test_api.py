import datetime
import io
import os

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image as PILImage
from rest_framework.authtoken.models import Token

from tagsite.models import Image, Job

pytestmark = pytest.mark.django_db


def jpeg_bytes(color=(200, 100, 50), size=(80, 60)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


def upload(client, name="cat.jpg", data=None, content_type="image/jpeg"):
    file = SimpleUploadedFile(name, jpeg_bytes() if data is None else data, content_type=content_type)
    return client.post("/api/images/upload/", {"file": file})


@pytest.mark.parametrize("url", ["/", "/upload/", "/jobs/", "/images/1/", "/admin/", "/api/docs/"])
def test_pages_need_a_staff_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("url", ["/api/images/", "/api/tags/", "/api/jobs/", "/api/schema/", "/api/aliases/"])
def test_api_needs_staff(client, url):
    assert client.get(url).status_code in (401, 403)
    User.objects.create_user("plain", password="pw-123456")
    client.login(username="plain", password="pw-123456")
    assert client.get(url).status_code == 403


def test_login_page_is_public(client):
    assert client.get("/accounts/login/").status_code == 200


def test_token_auth(client):
    staff = User.objects.create_user("bot", password="x", is_staff=True)
    token = Token.objects.create(user=staff)
    assert client.get("/api/images/", HTTP_AUTHORIZATION=f"Token {token.key}").status_code == 200


def test_upload_search_and_tag_through_the_api(admin_client):
    response = upload(admin_client)
    assert response.status_code == 201, response.content
    image = response.json()
    assert image["width"] == 80 and image["thumbnail_url"]
    assert admin_client.get(image["thumbnail_url"]).status_code == 200
    assert upload(admin_client, name="again.jpg").status_code == 200  # same content: the same image

    tagged = admin_client.post(f"/api/images/{image['id']}/tags/", {"tags": ["Cat", "sleeping"]}, "application/json")
    assert sorted(tagged.json()["tags"]) == ["cat", "sleeping"]
    found = admin_client.get("/api/images/", {"q": "cat -dog"}).json()
    assert [row["id"] for row in found["results"]] == [image["id"]]
    assert admin_client.get("/api/images/", {"tags": "cat", "exclude": "sleeping"}).json()["count"] == 0
    names = [tag["name"] for tag in admin_client.get("/api/tags/autocomplete/", {"q": "sle"}).json()]
    assert names == ["sleeping"]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.txt", b"hello", "not accepted"),
        ("fake.jpg", b"this is text", "not an image"),
        ("empty.jpg", b"", "empty"),
    ],
)
def test_bad_uploads_are_refused_clearly(admin_client, name, data, message):
    response = upload(admin_client, name=name, data=data)
    assert response.status_code == 400
    assert message in " ".join(response.json()["file"])
    assert not Image.objects.exists()


def test_upload_size_limit(admin_client, settings):
    settings.MAX_UPLOAD_BYTES = 100
    response = upload(admin_client)
    assert response.status_code == 400 and "over the limit" in response.json()["file"][0]


def test_upload_name_cannot_escape_the_upload_folder(admin_client, settings):
    response = upload(admin_client, name="../../../etc/evil.jpg")
    assert response.status_code == 201
    path = Image.objects.get().path
    assert path.startswith(str(settings.MEDIA_ROOT / "uploads")) and ".." not in path


def test_aliases_and_implications_api(admin_client):
    assert (
        admin_client.post("/api/aliases/", {"antecedent": "kitty", "target": "cat"}, "application/json").status_code
        == 201
    )
    cycle = admin_client.post("/api/aliases/", {"antecedent": "cat", "target": "kitty"}, "application/json")
    assert cycle.status_code == 400 and "cycle" in str(cycle.json())
    created = admin_client.post("/api/implications/", {"antecedent": "cat", "consequent": "animal"}, "application/json")
    assert created.status_code == 201
    loop = admin_client.post("/api/implications/", {"antecedent": "animal", "consequent": "kitty"}, "application/json")
    assert loop.status_code == 400


def test_admin_upload_and_change_pages(admin_client):
    file = SimpleUploadedFile("admin.jpg", jpeg_bytes((1, 2, 3)), content_type="image/jpeg")
    response = admin_client.post("/admin/tagsite/image/add/", {"file": file})
    assert response.status_code == 302, response.content.decode()[:2000]
    image = Image.objects.get()
    assert image.uploaded_by.username == "admin"
    assert admin_client.get(f"/admin/tagsite/image/{image.pk}/change/").status_code == 200
    for model in ["image", "tag", "tagalias", "tagimplication", "imagetag", "imagestage", "job"]:
        assert admin_client.get(f"/admin/tagsite/{model}/").status_code == 200, model


def test_openapi_schema_and_docs(admin_client):
    schema = admin_client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/images/upload/" in schema.content
    assert admin_client.get("/api/docs/").status_code == 200


def test_moderators_group_exists_with_permissions():
    group = Group.objects.get(name="moderators")
    assert group.permissions.filter(codename="add_imagetag").exists()


def test_pages_render(admin_client, image_folder):
    from tagsite.services.ingest import import_folder

    import_folder(image_folder)
    image = Image.objects.first()
    for url in ["/", "/?q=nothing", "/upload/", "/jobs/", f"/images/{image.pk}/", f"/images/{image.pk}/file"]:
        assert admin_client.get(url).status_code == 200, url


def test_untag_through_the_api(admin_client):
    image = upload(admin_client).json()
    admin_client.post(f"/api/images/{image['id']}/tags/", {"tags": ["cat", "dog"]}, "application/json")
    response = admin_client.post(f"/api/images/{image['id']}/untag/", {"tags": ["Cat"]}, "application/json")
    assert response.json()["tags"] == ["dog"]


def test_an_oversized_upload_is_refused_before_it_is_read(admin_client, settings):
    settings.MAX_UPLOAD_BYTES = 10_000
    response = upload(admin_client, data=b"\xff" * 200_000)
    assert response.status_code == 413 and "over the upload limit" in response.json()["file"][0]


def test_importing_a_server_folder_needs_more_than_staff(client, image_folder):
    staff = User.objects.create_user("staff", password="pw-123456", is_staff=True)
    client.force_login(staff)
    response = client.post("/api/jobs/import/", {"path": str(image_folder)}, content_type="application/json")
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("tiny.jpg", jpeg_bytes()[:100]),  # a 100-byte JPEG: the header and nothing else
        ("cut.png", None),
        ("bomb.gif", b"GIF89a\xff\xff\xff\xff\0\0\0,\0\0\0\0\xff\xff\xff\xff\0\x02\x02\x44\x01\0;"),
    ],
)
def test_a_broken_upload_is_a_400_with_the_reason(admin_client, name, data):
    if data is None:
        buffer = io.BytesIO()
        PILImage.new("RGB", (64, 64), "red").save(buffer, "PNG")
        data = buffer.getvalue()[:60]
    response = upload(admin_client, name=name, data=data)
    assert response.status_code == 400, response.content
    reason = " ".join(response.json()["file"])
    assert any(word in reason for word in ("truncated", "damaged", "decompression bomb")), reason
    assert not Image.objects.exists()


def test_images_filter_by_file_format(admin_client, image_folder):
    """`?format=` is DRF's response format (JPEG: 404); the image format filter is `file_format`."""
    from tagsite.services.ingest import import_folder

    PILImage.new("RGB", (20, 10), "red").save(image_folder / "red.png")
    import_folder(image_folder)
    jpegs = admin_client.get("/api/images/", {"file_format": "JPEG"})
    assert jpegs.status_code == 200 and jpegs.json()["count"] == 3
    assert admin_client.get("/api/images/", {"file_format": "png"}).json()["count"] == 1
    schema = admin_client.get("/api/schema/").content.decode()
    listing = schema[schema.index("/api/images/:") : schema.index("/api/images/{id}/")]
    assert "name: file_format" in listing and "name: format\n" not in listing


def search_terms(count: int) -> str:
    return " ".join(f"term{n}" for n in range(count))


def test_a_search_with_too_many_terms_is_a_clear_400(admin_client, settings):
    settings.SEARCH_MAX_TERMS = 40
    assert admin_client.get("/api/images/", {"q": search_terms(40)}).status_code == 200
    for params in ({"q": search_terms(41)}, {"tags": ",".join(f"t{n}" for n in range(700))}):
        response = admin_client.get("/api/images/", params)
        assert response.status_code == 400
        assert "at most 40" in response.json()["q"][0]
    page = admin_client.get("/", {"q": search_terms(700)})
    assert page.status_code == 400 and "at most 40" in page.content.decode()
    assert admin_client.get("/", {"q": search_terms(40)}).status_code == 200


def test_the_search_query_plan_does_not_grow_with_the_terms(admin_client):
    """40 all-of words cost what 2 do: one grouped scan, not a join per word (700 words ran for minutes)."""
    import json

    from django.db import connection

    from tagsite.models import Tag
    from tagsite.services.tags import add_tags, search_images

    image = Image.objects.create(path="/nowhere/a.jpg", sha256="a" * 64, status="ok")
    Image.objects.create(path="/nowhere/b.jpg", sha256="b" * 64, status="ok")
    names = [f"term{n}" for n in range(40)]
    add_tags([image], names)
    assert Tag.objects.count() == 40

    def plan_nodes(words: list[str]) -> int:
        sql, params = search_images(words).query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            return json.dumps(cursor.fetchone()[0]).count('"Node Type"')

    nodes = [plan_nodes(names[:count]) for count in (2, 10, 20, 40)]
    assert max(nodes) < 12 and max(nodes) - min(nodes) <= 3, nodes  # a join per word would be 40+ nodes
    found = admin_client.get("/api/images/", {"q": " ".join(names)}).json()
    assert [row["id"] for row in found["results"]] == [image.pk]
    assert admin_client.get("/api/images/", {"q": " ".join([*names[:39], "absent"])}).json()["count"] == 0
    assert admin_client.get("/api/images/", {"q": "term1 -term2"}).json()["count"] == 0
    assert admin_client.get("/api/images/", {"q": "~term1 ~absent"}).json()["count"] == 1


@pytest.fixture
def web_process():
    """This process's connections set up as a web process's are (`tagsite.wsgi`), for the test."""
    from django.db import connection
    from django.db.backends.signals import connection_created

    from tagsite.middleware import limit_web_statements

    connection_created.connect(limit_web_statements, dispatch_uid="test.web_process")
    connection.close()
    yield
    connection_created.disconnect(dispatch_uid="test.web_process")
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_web_request_cannot_hold_the_database_past_the_statement_timeout(admin_client, settings, web_process):
    """A request waiting on a lock (or running a slow query) is stopped after TAGSITE_WEB_STATEMENT_TIMEOUT: 503."""
    import threading

    import psycopg

    from tests.conftest import database_url

    settings.WEB_STATEMENT_TIMEOUT = 0.5
    locked, release = threading.Event(), threading.Event()

    def hold_the_images_table():
        with psycopg.connect(database_url()) as other, other.transaction():
            other.execute("LOCK TABLE tagsite_image IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_images_table)
    holder.start()
    try:
        assert locked.wait(10)
        for url, kind in (("/api/images/", "application/json"), ("/", "text/plain")):
            response = admin_client.get(url)
            assert response.status_code == 503 and response["Content-Type"].startswith(kind)
            assert "longer than 0.5 s" in response.content.decode()
    finally:
        release.set()
        holder.join()
    assert admin_client.get("/api/images/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_only_the_web_application_limits_its_statements():
    """A process that loads the WSGI application (gunicorn, runserver) limits every connection it opens; one that
    does not (a command, a Celery worker) has no limit: an import or a backlog is long on purpose."""
    import subprocess
    import sys

    from django.conf import settings

    from tests.conftest import database_url

    show = "from django.db import connection; c = connection.cursor(); c.execute('SHOW statement_timeout'); "
    env = {**os.environ, "DATABASE_URL": database_url(), "TAGSITE_WEB_STATEMENT_TIMEOUT": "7",
           "DJANGO_SETTINGS_MODULE": "tagsite.settings"}  # fmt: skip
    web = "import tagsite.wsgi; " + show + "print(c.fetchone()[0])"
    command = "import django; django.setup(); " + show + "print(c.fetchone()[0])"
    for code, expected in ((web, "7s"), (command, "0")):
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=settings.BASE_DIR
        )
        assert run.stdout.split()[-1:] == [expected], run.stderr[-2000:]


def test_the_web_application_freezes_its_loaded_code_for_the_garbage_collector():
    """Every view imported and frozen at start: collections skip the loaded code (2 ms of a list's CPU)."""
    import subprocess
    import sys

    from django.conf import settings

    code = (
        "import gc, sys, tagsite.wsgi; "
        "print(gc.get_freeze_count(), gc.get_threshold()[0], 'tagsite.urls' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tagsite.settings"}
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=settings.BASE_DIR
    )
    frozen, threshold, views_loaded = run.stdout.split()[-3:]
    # young objects collected at Python's threshold: a larger one made each collection a pause of 40-65 ms
    assert int(frozen) > 50_000 and int(threshold) == 700 and views_loaded == "True", run.stderr[-2000:]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/proc/self", "never imported"),
        ("/proc", "never imported"),
        ("/etc", "outside the import folders"),
        ("pictures", "relative path"),
        ("../../etc", "relative path"),
        ("", "blank"),
        ("/does/not/exist", "does not exist"),
        ("FILE", "is not a folder"),
        ("OUTSIDE", "outside the import folders"),
        ("LINK", "outside the import folders"),
    ],
)
def test_a_folder_import_outside_the_roots_is_refused_at_once(admin_client, settings, tmp_path, path, reason):
    """Checked when asked (400 with the reason), never queued: nothing reaches the worker."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "file.jpg").write_bytes(jpeg_bytes())
    (root / "link").symlink_to(outside, target_is_directory=True)
    settings.IMPORT_ROOTS = [str(root)]
    path = {"FILE": str(root / "file.jpg"), "OUTSIDE": str(outside), "LINK": str(root / "link")}.get(path, path)
    response = admin_client.post("/api/jobs/import/", {"path": path}, content_type="application/json")
    assert response.status_code == 400, response.content
    assert reason in response.json()["path"][0]
    assert not Job.objects.exists()


def test_the_upload_page_imports_a_folder_inside_the_roots_only(admin_client, client, settings, image_folder, tmp_path):
    settings.IMPORT_ROOTS = [str(image_folder)]
    page = admin_client.get("/upload/").content.decode()
    assert "Import a folder on the server" in page and str(image_folder) in page
    refused = {
        "/proc/self": "never imported",
        str(tmp_path): "outside the import folders",
        "library": "relative path",
        str(image_folder / "photo0.jpg"): "is not a folder",
    }
    for path, reason in refused.items():
        response = admin_client.post("/import/", {"path": path})
        assert response.status_code == 400 and reason in response.content.decode(), path
    assert not Job.objects.exists()

    response = admin_client.post("/import/", {"path": str(image_folder)})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.params == {"path": str(image_folder), "roots": [str(image_folder)]}

    staff = User.objects.create_user("staff", password="pw-123456", is_staff=True)
    client.force_login(staff)
    assert client.post("/import/", {"path": str(image_folder)}).status_code == 403
    assert Job.objects.count() == 1


def test_the_image_list_rows_are_what_the_image_serializer_writes(admin_client):
    """The list builds its rows without DRF's per-field calls: the same JSON as ImageSerializer (one image with a
    thumbnail, tags and texts, one broken without)."""
    from tagsite.api import ImageSerializer
    from tagsite.services.tags import add_tags

    shown = Image.objects.get(pk=upload(admin_client).json()["id"])
    add_tags([shown], ["cat", "sleeping", "hat"])
    Image.objects.filter(pk=shown.pk).update(title="A cat", caption="asleep", description="A cat on a hat.")
    broken = Image.objects.create(
        path="/photos/broken.jpg", status=Image.Status.FAILED, error="cannot read", width=None
    )
    whole_second = datetime.datetime(2024, 5, 1, 10, 0, tzinfo=datetime.UTC)  # no fraction written
    Image.objects.filter(pk=broken.pk).update(updated_at=whole_second)
    listed = admin_client.get("/api/images/", {"status": ""}).json()["results"]
    expected = ImageSerializer(Image.objects.order_by("-id"), many=True).data
    assert len(listed) == 2 and listed == [dict(row) for row in expected]
    assert listed[1]["tags"] == ["cat", "sleeping", "hat"] and listed[1]["thumbnail_url"]
    assert listed[0]["updated_at"] == "2024-05-01T10:00:00Z" and "." in listed[1]["created_at"]
    with timezone.override("Europe/Paris"):  # dates converted in Python, not formatted in UTC by the database
        listed = admin_client.get("/api/images/", {"status": ""}).json()["results"]
        expected = ImageSerializer(Image.objects.order_by("-id"), many=True).data
    assert listed == [dict(row) for row in expected] and listed[0]["updated_at"] == "2024-05-01T12:00:00+02:00"
