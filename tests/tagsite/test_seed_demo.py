"""seed_demo: a realistic demo library written with COPY, checked against today's schema."""

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count

from suggestions.models import MLModelVersion, TagSuggestion
from tagsite.models import Image, ImageTag, Job, Tag, TagAlias
from tagsite.services.demo import DEMO_ROOT, CopyTable, DemoSchemaError
from tests.tagsite.test_scale import ensure_categories

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "danbooru_tags_sample.csv"
pytestmark = pytest.mark.django_db(transaction=True)  # seeding ends with VACUUM, outside a transaction


def seed(*extra: str) -> None:
    ensure_categories()
    call_command("seed_demo", "--images", "200", "--suggestions", "2000", "--tags", str(SAMPLE), *extra, verbosity=0)


def test_seeds_a_realistic_library_that_fits_the_schema():
    seed()
    assert Image.objects.count() == 200
    assert not Image.objects.exclude(path__startswith=DEMO_ROOT).exists()
    per_image = list(ImageTag.objects.values("image").annotate(n=Count("id")).values_list("n", flat=True))
    assert len(per_image) == 200 and min(per_image) >= 15 and max(per_image) <= 27
    # Real usage skew: the most used tag of the list is on far more images than a tag from its middle.
    counts = dict(Tag.objects.values_list("name", "usage_count"))
    assert counts["1girl"] > 40 and counts["1girl"] > 10 * (sorted(counts.values())[len(counts) // 2] + 1)
    recount = dict(ImageTag.objects.values("tag__name").annotate(n=Count("id")).values_list("tag__name", "n"))
    assert {name: n for name, n in counts.items() if n} == recount
    assert TagAlias.objects.count() > 100
    assert MLModelVersion.objects.count() == 2
    suggestions = TagSuggestion.objects.count()
    assert 1900 <= suggestions <= 2000
    assert TagSuggestion.objects.values("model_version").distinct().count() == 2
    pending = TagSuggestion.objects.filter(status="pending").count()
    assert 0.7 * suggestions < pending < suggestions  # mostly pending, some decided
    from categorization.models import CategoryProposal

    assert CategoryProposal.objects.filter(status="pending").count() > 100
    assert Job.objects.filter(error_count=200).exists()  # jobs with a full error list, as in real use


def test_refuses_a_library_with_real_images_unless_forced():
    Image.objects.create(path="/photos/holiday.jpg", sha256="a" * 64)
    with pytest.raises(CommandError, match="1 real images"):
        seed()
    assert Image.objects.count() == 1
    seed("--force")
    assert Image.objects.filter(path__startswith=DEMO_ROOT).count() == 200
    assert Image.objects.filter(path="/photos/holiday.jpg").exists()


def test_a_second_run_needs_reset():
    seed()
    with pytest.raises(CommandError, match="--reset"):
        seed()
    seed("--reset")
    assert Image.objects.count() == 200
    assert TagSuggestion.objects.values("image", "tag", "model_version").distinct().count() >= 1900


def test_a_required_field_without_a_default_is_a_clear_error():
    with pytest.raises(DemoSchemaError, match=r"TagAlias\.antecedent is required"):
        CopyTable(TagAlias, ["tag_id"])
