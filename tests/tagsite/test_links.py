"""Links built from a template reversed once are the links reverse() gives."""

from django.urls import reverse, set_script_prefix

from tagsite.links import object_url


def test_object_urls_are_what_reverse_gives():
    for name in ("image-file", "image-thumbnail", "job-detail"):
        for pk in (1, 7, 123456789):
            assert object_url(name, pk) == reverse(name, args=[pk])


def test_object_urls_follow_the_script_prefix():
    try:
        set_script_prefix("/tagsite/")
        assert object_url("job-detail", 3) == reverse("job-detail", args=[3])
        assert object_url("job-detail", 3).startswith("/tagsite/")
    finally:
        set_script_prefix("/")
    assert not object_url("job-detail", 3).startswith("/tagsite/")
