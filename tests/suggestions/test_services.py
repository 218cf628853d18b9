"""Installing models, storing suggestions (mappings, aliases, implications, worklist), review and learning."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from suggestions import services
from suggestions.models import ImageRun, MLModelVersion, TagMapping, TagSuggestion, UnmappedTag
from suggestions.tasks import infer_backlog, infer_tags, queue_auto_tagging, start_backlog
from tagsite.ai.onnx import load_pixels, load_tagger
from tagsite.models import Decision, Image, ImageTag, Job, Tag
from tagsite.services.tags import create_alias, create_implication, get_or_create_tags
from tests.conftest import ROOT, database_url
from tests.suggestions.conftest import add_image
from tests.suggestions.wd14 import CONSTANT_TAGS, FEATURE_TAGS, build_model

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
def test_a_fixed_batch_model_tags_one_image_and_partial_batches(models_dir, tmp_path):
    """Batch 4 in the graph: one image (an upload's task), 3 + a file that fails to decode, then 5."""
    model = services.install_model("wd-fixed", build_model(tmp_path / "src", batch=4), version="v1")
    assert model.fixed_batch == 4
    images = [add_image(tmp_path / "lib", f"{i}.png", RED, size=(90 + i, 90)) for i in range(10)]
    broken = add_image(tmp_path / "lib", "broken.png", RED)
    open(broken.path, "r+b").truncate(60)  # damaged after import: its decode fails at inference
    assert services.suggest_tags(model, images[:1]) == {"images": 1, "suggestions": 5, "held": 0, "failed": 0}
    counts = services.suggest_tags(model, [*images[1:3], broken, images[3]])
    assert counts == {"images": 3, "suggestions": 15, "held": 0, "failed": 1}
    assert services.suggest_tags(model, images[4:9], batch_size=8) == {
        "images": 5, "suggestions": 25, "held": 0, "failed": 0
    }  # fmt: skip
    assert suggested(images[8]) == pytest.approx(
        {"long_hair": 1.0, "blush": 1.0, "short_hair": 1.0, "simple_background": 0.6, "hatsune_miku": 0.9}, abs=1e-3
    )
    assert broken.stages.get(stage="suggest").status == "failed"


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
def test_import_tag_mappings_replace_fixes_the_mappings_a_tagging_run_made(wd14, tmp_path):
    image = add_image(tmp_path / "lib", "red.png", RED)
    services.suggest_tags(wd14, [image])  # long_hair, blush, short_hair, simple_background, hatsune_miku
    assert TagMapping.objects.get(external_tag="long_hair").automatic
    services.set_mapping("danbooru", "smile", get_or_create_tags(["smile"])["smile"])  # a moderator's
    flowing = get_or_create_tags(["flowing hair"])["flowing hair"]
    csv_file = tmp_path / "mappings.csv"
    csv_file.write_text(
        "danbooru_tag,internal_tag_title,action\n"
        "long_hair,flowing hair,map\nsimple_background,,ignore\nsmile,smile,map\nblush,blush,map\n"
    )
    out = io.StringIO()
    call_command("import_tag_mappings", str(csv_file), stdout=out)
    assert out.getvalue().strip() == (
        "0 created, 4 skipped (already mapped; 3 made automatically by a tagging run: --replace updates them), "
        "0 missing (internal tag not found)"
    )
    assert TagMapping.objects.get(external_tag="long_hair").tag.name == "long_hair"
    before = suggested(image)
    call_command("import_tag_mappings", str(csv_file), "--replace", stdout=out)
    assert out.getvalue().splitlines()[-1] == (
        "0 created, 3 replaced (3 of them made automatically by a tagging run), 1 unchanged, "
        "0 missing (internal tag not found)"
    )
    assert TagMapping.objects.get(external_tag="long_hair").tag == flowing
    assert TagMapping.objects.get(external_tag="simple_background").tag is None
    assert not TagMapping.objects.filter(automatic=True, external_tag__in=["long_hair", "blush"]).exists()
    # the pending suggestions follow: long_hair's moves to the new tag, the now ignored label's goes
    after = suggested(image)
    assert after[flowing.name] == before["long_hair"] and "long_hair" not in after
    assert "simple_background" not in after and after["blush"] == before["blush"]
    later = add_image(tmp_path / "lib", "red2.png", RED, size=(90, 90))
    services.suggest_tags(wd14, [later])
    assert flowing.name in suggested(later) and "long_hair" not in suggested(later)


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
    assert Decision.objects.filter(kind="tagsuggestion", user=admin_user, via="page").count() == 6
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
    model = MLModelVersion(thresholds={"general": 0.35, "character": 0.85}, tag_thresholds={"b": 0.7})
    probabilities = np.array([0.2, 0.8, 0.9, 0.6, 0.3, 0.5], dtype=np.float32)
    thresholds = services.threshold_vector(model, labels)
    rating, chosen = services.select_labels(model, labels, thresholds, probabilities)
    assert rating == "explicit" and [c.label for c in chosen] == ["a"]
    model.use_mcut = True
    _, chosen = services.select_labels(model, labels, thresholds, probabilities)
    assert [c.label for c in chosen] == ["a", "b", "miku"]  # general gap 0.9|0.6|0.3 -> 0.45; one character


def test_wilson_bounds_widen_with_few_decisions():
    assert services.wilson_bounds(7, 7)[0] == pytest.approx(0.721, abs=1e-3)  # 7/7 approved: not yet 0.9
    assert services.wilson_bounds(70, 70)[0] == pytest.approx(0.963, abs=1e-3)
    assert services.wilson_bounds(0, 7)[1] == pytest.approx(0.279, abs=1e-3)  # 7/7 rejected: surely below 0.5
    assert services.wilson_bounds(1, 2) == pytest.approx((0.121, 0.879), abs=1e-3)


def spread(count: int, low: float, high: float) -> list[float]:
    return [low + (high - low) * i / max(1, count - 1) for i in range(count)]


@pytest.mark.parametrize(
    ("outcomes", "current", "recommended"),
    [
        # 100 % approved, many decisions: never raised to its lowest score (nor to 1.0 for a 0.99996)
        ([(c, True) for c in spread(40, 0.4, 0.99996)], 0.35, None),
        ([(0.99996, True)] * 30, 0.35, None),
        # 100 % approved above a threshold set higher earlier: lowered as far as the evidence goes
        ([(c, True) for c in spread(40, 0.5, 0.99)], 0.8, 0.5),
        # approved above 0.7, rejected below: raised to the lowest approved score once there are enough
        ([(c, True) for c in spread(40, 0.7, 0.99)] + [(c, False) for c in spread(40, 0.36, 0.69)], 0.35, 0.7),
        # the same pattern with 3 + 2 decisions: the bound cannot reach 0.9, so no change
        ([(0.9, True), (0.8, True), (0.7, True), (0.5, False), (0.4, False)], 0.35, None),
        ([(0.9, False)] * 7, 0.35, None),  # rejected 7/7: no threshold reaches the target (the report says off)
        ([], 0.35, None),
    ],
)
def test_recommended_threshold_needs_the_bound_to_reach_the_target(outcomes, current, recommended):
    result = services.recommend_threshold(outcomes, 0.9, current)
    assert result == (None if recommended is None else pytest.approx(recommended))


def make_decisions(model, label: str, outcomes: list[tuple[float, bool]], user, images) -> None:
    """Suggestions of one label at these confidences, then approved or rejected through the review service."""
    tag = get_or_create_tags([label])[label]
    made = [
        TagSuggestion.objects.create(image=image, tag=tag, model_version=model, external_tag=label, confidence=score)
        for image, (score, _) in zip(images, outcomes, strict=False)
    ]
    services.decide([s for s, (_, ok) in zip(made, outcomes, strict=False) if ok], "approved", user)
    services.decide([s for s, (_, ok) in zip(made, outcomes, strict=False) if not ok], "rejected", user)


@pytest.mark.django_db
def test_report_shows_the_evidence_and_apply_never_makes_precision_worse(wd14, tmp_path, admin_user):
    """The issue's cases: a 100 % approved label, a label rejected 7/7, a small sample, and a real raise."""
    images = [Image.objects.create(path=str(tmp_path / f"{i}.png"), sha256=f"{i:064x}") for i in range(80)]
    always, few, mixed = FEATURE_TAGS[2], FEATURE_TAGS[0], FEATURE_TAGS[1]  # always: long_hair, 1.0 on red
    never = next(iter(CONSTANT_TAGS))  # scores 0.6 on every image
    make_decisions(wd14, always, [(c, True) for c in [*spread(29, 0.4, 0.99), 0.99996]], admin_user, images)
    for image in images[30:35]:  # a rule's approvals are no human evidence either way
        TagSuggestion.objects.create(
            image=image, tag=Tag.objects.get(name=always), model_version=wd14, external_tag=always, confidence=0.5,
            status=TagSuggestion.Status.AUTO_APPROVED,
        )  # fmt: skip
    make_decisions(wd14, never, [(0.6, False)] * 7, admin_user, images)
    make_decisions(wd14, few, [(0.9, True), (0.8, True), (0.7, True), (0.5, False), (0.4, False)], admin_user, images)
    make_decisions(
        wd14, mixed, [(c, True) for c in spread(40, 0.7, 0.99)] + [(c, False) for c in spread(40, 0.36, 0.69)],
        admin_user, images,
    )  # fmt: skip
    rows = {row.label: row for row in services.review_report(target_precision=0.9)}
    assert (rows[always].decided, rows[always].precision, rows[always].recommended) == (30, 1.0, None)
    assert rows[always].lower_bound == pytest.approx(30 / (30 + 1.6449**2), abs=1e-3)
    assert (rows[never].precision, rows[never].recommended, rows[never].turn_off) == (0.0, None, True)
    assert (rows[few].precision, rows[few].recommended, rows[few].turn_off) == (0.6, None, False)
    assert rows[mixed].recommended == pytest.approx(0.7) and not rows[mixed].turn_off
    out = io.StringIO()
    call_command("review_report", "--apply", stdout=out)
    text = out.getvalue()
    assert "Target precision 0.90" in text and "Wilson lower bound" in text
    assert f"{always[:28]:<28}    30     0     0      30  1.000  0.917  0.350      -" in text
    assert f"{never[:28]:<28}     0     7     0       7  0.000  0.000  0.350    off" in text
    assert "wd-test v1: set 1 label thresholds, turned 1 labels off" in text
    wd14.refresh_from_db()
    assert wd14.tag_thresholds == {mixed: pytest.approx(0.7)} and wd14.disabled_labels == [never]
    # the label turned off is no longer suggested; the all-approved one still is, at its old threshold
    image = add_image(tmp_path / "lib", "red.png", RED)
    services.suggest_tags(wd14, [image])
    assert never not in suggested(image) and always in suggested(image)
    out = io.StringIO()
    call_command("review_report", "--apply", stdout=out)
    assert f"{never[:28]:<28}     0     7     0       0      -      -    off      -" in out.getvalue()
    assert "Nothing to apply" in out.getvalue()


@pytest.mark.django_db
def test_raw_scores_are_stored_at_full_precision(wd14, tmp_path):
    image = add_image(tmp_path / "lib", "red.png", (215, 0, 0))
    services.suggest_tags(wd14, [image])
    tagger = load_tagger(wd14.model_file, use_gpu=False)
    pixels = load_pixels(image.path, tagger.input_size, 10**8)[None]
    raw = float(tagger.predict(pixels)[0][4 + FEATURE_TAGS.index("long_hair")])  # about the red mean, 215 / 255
    assert suggested(image)["long_hair"] == raw and raw != round(raw, 4)  # not rounded to 4 decimals


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


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, error",
    [
        (["review_report", "--model", "nonexistent"], "no model named 'nonexistent' \\(installed: wd-test\\)"),
        (["review_report", "--apply", "--model", "nonexistent"], "no model named 'nonexistent'"),
        (["suggest_tags", "--model", "nonexistent"], "no active model named nonexistent"),
        (["import_tag_mappings", "{csv}", "--source", "danboru"], "no installed model reads labels from source"),
    ],
)
def test_unknown_names_in_commands_are_command_errors(wd14, tmp_path, args, error):
    """Not a header and exit 0: a misspelt model or source changes nothing and says so."""
    csv_file = tmp_path / "mappings.csv"
    csv_file.write_text("danbooru_tag,internal_tag_title,action\nsmile,,ignore\n")
    out = io.StringIO()
    with pytest.raises(CommandError, match=error):
        call_command(*[arg.format(csv=csv_file) for arg in args], stdout=out)
    assert out.getvalue() == "" and not Job.objects.exists() and not TagMapping.objects.exists()
    wd14.refresh_from_db()
    assert wd14.tag_thresholds == {} and wd14.disabled_labels == []


@pytest.mark.django_db
def test_suggestions_record_the_job_that_produced_them(wd14, tmp_path, settings):
    settings.SUGGESTIONS_ON_INGEST = False
    uploaded, old = (add_image(tmp_path / "lib", f"{n}.png", RED, size=(96 + n, 96)) for n in range(2))
    (rolling,) = queue_auto_tagging([uploaded.pk], [wd14])  # its task waits for a commit: the body runs here
    infer_tags([uploaded.pk], wd14.pk, rolling.pk)
    backlog = start_backlog(wd14, None)
    infer_backlog(backlog.pk)
    jobs = dict(TagSuggestion.objects.values_list("image_id", "job__kind").distinct())
    assert jobs == {uploaded.pk: "auto_tag", old.pk: "suggest_tags"}
    assert set(TagSuggestion.objects.filter(image=old).values_list("job_id", flat=True)) == {backlog.pk}
    assert set(TagSuggestion.objects.filter(image=uploaded).values_list("job_id", flat=True)) == {rolling.pk}
