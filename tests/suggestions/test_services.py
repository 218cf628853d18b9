"""Installing models, storing suggestions (mappings, aliases, implications, worklist), review and learning."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from suggestions import services
from suggestions.models import ImageRun, MLModelVersion, ReviewDecision, TagMapping, TagSuggestion, UnmappedTag
from tagsite.models import ImageTag, Job, Tag
from tagsite.services.tags import create_alias, create_implication, get_or_create_tags
from tests.conftest import ROOT, database_url
from tests.suggestions.conftest import add_image
from tests.suggestions.wd14 import build_model

RED, BLUE = (255, 0, 0), (0, 0, 255)


def suggested(image, model=None) -> dict[str, float]:
    rows = TagSuggestion.objects.filter(image=image, **({"model_version": model} if model else {}))
    return dict(rows.values_list("tag__name", "confidence"))


@pytest.mark.django_db
def test_install_reads_the_graph_and_copies_the_files(wd14, models_dir, tmp_path):
    assert (wd14.input_size, wd14.fixed_batch, wd14.label_count) == (448, None, 17)
    assert wd14.thresholds == {"general": 0.35, "character": 0.85}
    assert wd14.model_file.startswith(str(models_dir)) and os.path.isfile(wd14.labels_file)
    assert wd14.sha256 == services.file_sha256(tmp_path / "wd14-src" / "model.onnx")
    small = services.install_model("wd-small", build_model(tmp_path / "small", size=320, batch=1))
    assert (small.input_size, small.fixed_batch, small.version) == (320, 1, small.sha256[:12])


@pytest.mark.django_db
def test_install_rejects_a_label_file_that_does_not_match(models_dir, tmp_path):
    folder = build_model(tmp_path / "bad")
    lines = (folder / "selected_tags.csv").read_text().splitlines()
    (folder / "selected_tags.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(services.ModelInstallError, match="17 outputs but selected_tags.csv lists 16"):
        services.install_model("bad", folder)
    with pytest.raises(services.ModelInstallError, match="needs model.onnx"):
        services.install_model("empty", tmp_path)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("thresholds", "error"),
    [
        ("[0.4]", "JSON object"),
        ('{"general": "x"}', "numbers from 0 to 1, not those of 'general'"),
        ('{"general": 1.5, "character": true}', "not those of 'general', 'character'"),
        ('{"general": NaN}', "numbers from 0 to 1"),
        ('{"genral": 0.4}', "Unknown categories 'genral'"),
    ],
)
def test_install_refuses_thresholds_that_are_not_categories_to_numbers_in_0_1(models_dir, tmp_path, thresholds, error):
    folder = str(build_model(tmp_path / "src"))
    with pytest.raises(CommandError, match=error):
        call_command("install_model", "wd", "--from", folder, "--thresholds", thresholds, stdout=io.StringIO())
    assert not MLModelVersion.objects.exists() and not models_dir.exists()
    call_command(
        "install_model", "wd", "--from", folder, "--thresholds", '{"general": 0.5, "meta": 1}', stdout=io.StringIO()
    )
    assert MLModelVersion.objects.get().thresholds == {"general": 0.5, "character": 0.85, "meta": 1}


@pytest.mark.django_db
def test_install_from_hugging_face_offline_says_so(tmp_path):
    env = {**os.environ, "DATABASE_URL": database_url(), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path)}
    command = [sys.executable, "manage.py", "install_model", "wd", "--hf-repo", "SmilingWolf/wd-vit-tagger-v3"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "cannot download SmilingWolf/wd-vit-tagger-v3 from Hugging Face" in result.stderr
    assert "offline" in result.stderr and "install_model NAME --from DIR" in result.stderr


@pytest.mark.django_db
def test_suggestions_rating_and_categories(wd14, tmp_path):
    red = add_image(tmp_path / "lib", "red.png", RED)
    blue = add_image(tmp_path / "lib", "blue.png", BLUE)
    counts = services.suggest_tags(wd14, services.images_to_tag(wd14))
    assert counts == {"images": 2, "suggestions": 10, "held": 0, "failed": 0}
    expected = {"long_hair": 1.0, "blush": 1.0, "short_hair": 1.0, "simple_background": 0.6, "hatsune_miku": 0.9}
    assert suggested(red) == pytest.approx(expected, abs=1e-3)
    assert set(suggested(blue)) == {"1girl", "breasts", "smile", "simple_background", "hatsune_miku"}
    red.refresh_from_db(), blue.refresh_from_db()
    assert (red.rating, blue.rating) == ("general", "sensitive")
    miku = TagSuggestion.objects.get(image=red, tag__name="hatsune_miku")
    assert miku.category == Tag.DanbooruCategory.CHARACTER and miku.tag.danbooru_category == 4
    assert red.stages.get(stage="suggest").status == "done"


@pytest.mark.django_db
def test_rerunning_creates_no_duplicates(wd14, tmp_path):
    image = add_image(tmp_path / "lib", "red.png", RED)
    services.suggest_tags(wd14, services.images_to_tag(wd14))
    assert services.images_to_tag(wd14).count() == 0
    assert services.suggest_tags(wd14, [image])["suggestions"] == 0  # forced again: the run record stops it
    assert TagSuggestion.objects.count() == 5 and ImageRun.objects.count() == 1


@pytest.mark.django_db
def test_mappings_aliases_and_implications_apply_before_storing(wd14, tmp_path):
    hair = get_or_create_tags(["hair"])["hair"]
    TagMapping.objects.create(external_tag="long_hair", tag=hair, confidence=0.5)
    TagMapping.objects.create(external_tag="blush", tag=None)
    create_alias("short_hair", "short hairstyle")
    create_implication("hatsune_miku", "vocaloid")
    image = add_image(tmp_path / "lib", "red.png", RED)
    services.suggest_tags(wd14, [image])
    assert suggested(image) == {
        "hair": 0.5,
        "short_hairstyle": 1.0,
        "simple_background": pytest.approx(0.6),
        "hatsune_miku": pytest.approx(0.9),
        "vocaloid": pytest.approx(0.9),
    }


@pytest.mark.django_db
def test_unmapped_labels_wait_in_the_worklist(wd14, tmp_path, settings):
    settings.SUGGESTIONS_UNMAPPED = "worklist"
    TagMapping.objects.create(external_tag="simple_background", tag=None)
    images = [add_image(tmp_path / "lib", f"{i}.png", RED, size=(96 + i, 96 + i)) for i in range(2)]
    counts = services.suggest_tags(wd14, images)
    assert counts["suggestions"] == 0 and counts["held"] == 8
    entries = {entry.external_tag: entry.waiting for entry in services.worklist()}
    assert entries == {"long_hair": 2, "blush": 2, "short_hair": 2, "hatsune_miku": 2}
    services.resolve_worklist(UnmappedTag.objects.filter(external_tag="long_hair"), "map", "long hair")
    services.resolve_worklist(UnmappedTag.objects.filter(external_tag="hatsune_miku"), "same_name")
    services.resolve_worklist(UnmappedTag.objects.filter(external_tag__in=["blush", "short_hair"]), "ignore")
    assert not UnmappedTag.objects.exists()
    assert set(suggested(images[0])) == set(suggested(images[1])) == {"long_hair", "hatsune_miku"}
    assert Tag.objects.get(name="hatsune_miku").danbooru_category == 4
    assert TagMapping.objects.get(external_tag="blush").tag is None


@pytest.mark.django_db
def test_import_tag_mappings_command(tmp_path):
    get_or_create_tags(["long hair", "smile"])
    TagMapping.objects.create(external_tag="smile", tag=Tag.objects.get(name="smile"))
    csv_file = tmp_path / "mappings.csv"
    csv_file.write_text(
        "danbooru_tag,internal_tag_title,action\n"
        "long_hair,long hair,map\nsmile,smile,map\nblue_eyes,blue eyes,map\n1girl,,ignore\n"
    )
    out, err = io.StringIO(), io.StringIO()
    call_command("import_tag_mappings", str(csv_file), stdout=out, stderr=err)
    assert "2 created, 1 skipped (already mapped), 1 missing (internal tag not found)" in out.getvalue()
    assert "blue_eyes -> blue eyes" in err.getvalue()
    assert TagMapping.objects.get(external_tag="long_hair").tag.name == "long_hair"
    assert TagMapping.objects.get(external_tag="1girl").tag is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "error"),
    [
        (None, "cannot read"),  # no such file
        ("", "no danbooru_tag, internal_tag_title, action column"),
        ("tag,title\nlong_hair,long hair\n", "header must be danbooru_tag,internal_tag_title,action"),
        (b"danbooru_tag,internal_tag_title,action\ncaf\xe9,cafe,map\n", "is not UTF-8 text"),
        ("danbooru_tag,internal_tag_title,action\nsmile,smile,map\nblush,,ignroe\n", "unknown action 'ignroe'"),
    ],
)
def test_import_tag_mappings_refuses_a_bad_file_and_imports_nothing(tmp_path, content, error):
    get_or_create_tags(["smile"])
    csv_file = tmp_path / "mappings.csv"
    if content is not None:
        csv_file.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CommandError, match=error):
        call_command("import_tag_mappings", str(csv_file), stdout=io.StringIO())
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_tag_mappings", str(tmp_path), stdout=io.StringIO())  # a directory
    with pytest.raises(ValueError, match=error):
        services.import_tag_mappings(csv_file)
    assert not TagMapping.objects.exists()


@pytest.mark.django_db
def test_review_tags_the_image_and_remembers_rejections(wd14, tmp_path, admin_user):
    create_implication("hatsune_miku", "vocaloid")
    image = add_image(tmp_path / "lib", "red.png", RED)
    services.suggest_tags(wd14, [image])
    result = services.review_images([image], threshold=0.95, user=admin_user)
    assert result == {"approved": 3, "rejected": 3}  # long_hair, blush, short_hair vs the 0.6/0.9 ones
    link = ImageTag.objects.get(image=image, tag__name="long_hair")
    assert (link.source, link.model_name, link.added_by) == ("model", "wd-test v1", admin_user)
    assert ReviewDecision.objects.filter(user=admin_user, via="page").count() == 6
    assert not ImageTag.objects.filter(image=image, tag__name="hatsune_miku").exists()
    v2 = services.install_model("wd-test", build_model(tmp_path / "v2-src"), version="v2")
    services.suggest_tags(v2, [image])
    # approved tags are on the image and rejected ones are remembered: the new version suggests neither
    assert suggested(image, v2) == {}
    miku = TagSuggestion.objects.get(image=image, tag__name="hatsune_miku")
    services.decide([miku], TagSuggestion.Status.APPROVED, admin_user, via="api")
    assert {"hatsune_miku", "vocaloid"} <= set(image.image_tags.values_list("tag__name", flat=True))
    services.decide([miku], TagSuggestion.Status.REJECTED, admin_user)
    assert not image.image_tags.filter(tag__name="hatsune_miku").exists()


def test_mcut_and_per_label_thresholds():
    assert services.mcut_threshold(np.array([0.9, 0.8, 0.2, 0.1])) == pytest.approx(0.5)
    labels = services.Labels(["general", "explicit", "a", "b", "c", "miku"], np.array([9, 9, 0, 0, 0, 4]))
    model = services.MLModelVersion(thresholds={"general": 0.35, "character": 0.85}, tag_thresholds={"b": 0.7})
    probabilities = np.array([0.2, 0.8, 0.9, 0.6, 0.3, 0.5], dtype=np.float32)
    thresholds = services.threshold_vector(model, labels)
    rating, chosen = services.select_labels(model, labels, thresholds, probabilities)
    assert rating == "explicit" and [c.label for c in chosen] == ["a"]
    model.use_mcut = True
    _, chosen = services.select_labels(model, labels, thresholds, probabilities)
    assert [c.label for c in chosen] == ["a", "b", "miku"]  # general gap 0.9|0.6|0.3 -> 0.45; one character


def test_recommended_threshold_reaches_the_target_precision():
    outcomes = [(0.95, True), (0.9, True), (0.8, True), (0.7, False), (0.6, True), (0.5, False), (0.4, False)]
    assert services.recommend_threshold(outcomes, 0.9) == 0.8
    assert services.recommend_threshold(outcomes, 0.75) == 0.6
    assert services.recommend_threshold([(0.9, False)], 0.9) is None


@pytest.mark.django_db
def test_report_and_applying_thresholds(wd14, tmp_path, admin_user):
    images = [add_image(tmp_path / "lib", f"{i}.png", (255 - 40 * i, 0, 0)) for i in range(5)]
    services.suggest_tags(wd14, images)  # long_hair scores the red mean: 1.0, 0.84, 0.69, 0.53, 0.37
    long_hair = TagSuggestion.objects.filter(tag__name="long_hair").order_by("-confidence")
    services.decide(long_hair[:3], TagSuggestion.Status.APPROVED, admin_user)
    services.decide(long_hair[3:], TagSuggestion.Status.REJECTED, admin_user)
    row = next(r for r in services.review_report(target_precision=0.9) if r.label == "long_hair")
    assert (row.approved, row.rejected, row.pending, row.threshold) == (3, 2, 0, 0.35)
    assert row.precision == 0.6 and row.recommended == pytest.approx(0.6863, abs=1e-3)
    out = io.StringIO()
    call_command("review_report", "--apply", stdout=out)
    assert "long_hair" in out.getvalue() and "wd-test v1: set" in out.getvalue()
    wd14.refresh_from_db()
    assert wd14.tag_thresholds["long_hair"] == pytest.approx(0.6863, abs=1e-3)


@pytest.mark.django_db
def test_suggest_tags_command_backlog_options(wd14, tmp_path):
    for i in range(4):
        add_image(tmp_path / "lib", f"{i}.png", RED, size=(90 + i, 90))
    out = io.StringIO()
    call_command("suggest_tags", "--dry-run", "--batch-size", "2", stdout=out)
    assert "(dry run: nothing stored)" in out.getvalue() and not TagSuggestion.objects.exists()
    call_command("suggest_tags", "--model", "wd-test", "--skip", "1", "--limit", "2", stdout=out)
    assert ImageRun.objects.count() == 2
    call_command("suggest_tags", stdout=out)
    assert ImageRun.objects.count() == 4 and TagSuggestion.objects.count() == 20
    job = Job.objects.filter(kind="suggest_tags").first()
    assert job.status == "succeeded" and job.counts["images"] == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    "command, option, value, problem",
    [
        ("suggest_tags", "--limit", "-1", "must be 0 or more"),
        ("suggest_tags", "--skip", "-5", "must be 0 or more"),
        ("suggest_tags", "--batch-size", "0", "must be 1 or more"),
        ("suggest_tags", "--batch-size", "two", "'two' is not a whole number"),
        ("review_report", "--target-precision", "1.5", "must be from 0 to 1"),
        ("review_report", "--target-precision", "nan", "must be from 0 to 1"),
    ],
)
def test_out_of_range_command_options_are_usage_errors(command, option, value, problem):
    with pytest.raises(CommandError, match=f"argument {option}: {problem}"):
        call_command(command, f"{option}={value}")
    assert not Job.objects.exists()
