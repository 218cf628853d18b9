"""Every page in headless Chromium at a desktop width (1400 px) and a phone width (390 px).

Screenshots land in TAGSITE_SCREENSHOTS as `<page>-<width>.png`; a person looks at them.
"""

from importlib import import_module

import pytest
from django.apps import apps

from categorization.models import CategoryProposal, ExtendedCategory
from categorization.services import chat_producer
from suggestions import services as suggestion_services
from suggestions.models import TagSuggestion
from tagsite.models import Job, Tag
from tagsite.services.ingest import ingest_paths
from tagsite.services.tags import get_or_create_tags
from tests.browser import horizontal_overflow, outside_viewport_width, screenshot
from tests.factories import make_jpeg, write_keywords
from tests.suggestions.wd14 import build_model

DESKTOP, PHONE = 1400, 390
# Names that the review page once cut to "hats…", "brea…", "Dee…", and one longer than any column.
SUGGESTED = [
    ("hatsune_miku", 4, 0.97),
    ("Deep Sea", 0, 0.93),
    ("breasts", 0, 0.91),
    ("hat", 0, 0.88),
    ("Tabby Cat", 0, 0.81),
    ("looking_at_viewer", 0, 0.77),
    ("very_long_tag_name_that_describes_an_unusually_specific_detail_of_the_background", 0, 0.64),
    ("holding_umbrella_with_both_hands", 0, 0.55),
    ("smile", 0, 0.52),
    ("outdoors", 0, 0.49),
    ("cloud", 0, 0.41),
]


@pytest.fixture
def library(settings, tmp_path):
    """Images with tags, suggestions to review, category proposals and a job with errors."""
    import_module("categorization.migrations.0002_categories").create_categories(apps, None)  # a flush drops them
    settings.SUGGESTIONS_MODELS_DIR = tmp_path / "models"
    settings.SUGGESTIONS_ON_INGEST = False
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for index, keywords in enumerate((["Tabby Cat", "window"], ["Deep Sea", "fish"], ["harbour"])):
        path = make_jpeg(folder / f"photo with a rather long file name number {index}.jpg", size=(640, 480))
        write_keywords(path, subject=keywords)
        paths.append(str(path))
    images = ingest_paths(paths)
    model = suggestion_services.install_model("wd-test", build_model(tmp_path / "wd14"), version="v1")
    tags = get_or_create_tags([name for name, _, _ in SUGGESTED])
    for name, category, confidence in SUGGESTED:
        for image in images[:2]:
            TagSuggestion.objects.create(
                image=image, tag=tags[name], model_version=model, external_tag=name, category=category,
                confidence=confidence,
            )  # fmt: skip
    for name, code in (("Tabby Cat", "13_Object"), ("window", "14_Setting"), ("fish", "13_Object")):
        CategoryProposal.objects.create(
            tag=Tag.objects.get(name=name.lower().replace(" ", "_")),
            category=ExtendedCategory.objects.get(code=code), confidence=0.87, producer=chat_producer("llm", "v1"),
        )  # fmt: skip
    Job.objects.create(
        kind="import_images", status=Job.Status.FAILED, total=40, current=40, error_count=2,
        message="38 new, 2 failed: /srv/photos/a folder with a long name/and a file name that goes on.jpg",
        errors=[{"item": "/srv/photos/broken.png", "error": "The file is truncated."}],
    )  # fmt: skip
    return images


PAGES = {
    "library": lambda images: "/",
    "image": lambda images: f"/images/{images[0].pk}/",
    "review": lambda images: "/suggestions/",
    "tag_categorize": lambda images: "/tag_categorize",
    "jobs": lambda images: "/jobs/",
    "job": lambda images: f"/jobs/{Job.objects.latest('pk').pk}/",
    "review-hub": lambda images: "/review/",
    "upload": lambda images: "/upload/",
    "unmapped": lambda images: "/suggestions/unmapped/",
    "precision": lambda images: "/suggestions/report/",
}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_every_page_fits_the_width_and_keeps_its_buttons_on_screen(staff_page, live_server, library, width):
    page = staff_page
    page.set_viewport_size({"width": width, "height": 900})
    for name, path in PAGES.items():
        page.goto(f"{live_server.url}{path(library)}")
        page.wait_for_load_state("networkidle")
        screenshot(page, f"{name}-{width}")
        assert horizontal_overflow(page) == [], name
        assert outside_viewport_width(page.locator(".topbar nav a, .topbar button")) == [], name  # no cut-off nav
    page.goto(f"{live_server.url}/suggestions/")
    assert page.locator("button.approve").count() == 2 * len(SUGGESTED)
    assert outside_viewport_width(page.locator("button.approve, button.reject, .review-card footer button")) == []
    page.goto(f"{live_server.url}/tag_categorize?state=proposal")
    assert page.locator("td.proposal button").count() == 6
    assert outside_viewport_width(page.locator("td.proposal button, td.current button")) == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_review_shows_whole_tag_names_and_the_keys_that_flip_them(staff_page, live_server, library, width):
    page = staff_page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{live_server.url}/suggestions/")
    card = page.locator(".review-card").first
    names = card.locator(".suggestion .name")  # the name's cell: the name and its similar-tags toggle
    tags = get_or_create_tags([name for name, _, _ in SUGGESTED])
    shown = card.locator(".suggestion .tag-name").all_inner_texts()
    assert shown == [tags[name].display_name for name, _, _ in SUGGESTED]
    cut = names.evaluate_all("els => els.filter((el) => el.scrollWidth > el.clientWidth).map((el) => el.textContent)")
    assert cut == []  # every name whole: long ones wrap instead of ending in an ellipsis
    keys = card.locator(".suggestion").evaluate_all("els => els.map((el) => el.querySelector('kbd.key')?.textContent)")
    assert keys == [str(n) for n in range(1, 10)] + [None, None]  # 1-9 beside the tags they flip, no more
    page.keyboard.press("2")  # flips the tag numbered 2
    card.locator(".suggestion.approved", has_text="Deep Sea").wait_for()
    assert TagSuggestion.objects.get(image=library[0], tag__name="deep_sea").status == "approved"
    screenshot(page, f"review-names-{width}")
