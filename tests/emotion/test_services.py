"""Labels stored on the review core, the commands, seed 004's CSV and the image tags of approved labels."""

import csv
import io

import pytest
from django.core.management import call_command
from django.test import override_settings

from emotion.models import EmotionLabel, EmotionProposal, EmotionSynonym, Face, ImageEmotion
from emotion.services import Vocabulary, relabel
from tagsite.models import Decision, Image, ImageStage, Proposal
from tagsite.review.services import decide

pytestmark = pytest.mark.django_db


def read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["filename", "path", "emotion", "confidence"]  # seed 004's columns, in its order
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_synonyms_map_other_words_and_anything_else_is_rejected(labels):
    vocabulary = Vocabulary.load()
    assert [vocabulary.resolve(word) for word in ("Happy", "smiling", "serious", " Shocked.", "crying")] == [
        "happy", "happy", "neutral", "surprise", "sad",
    ]  # fmt: skip
    assert vocabulary.resolve("bored") is None and vocabulary.resolve("") is None
    EmotionSynonym.objects.create(word="bored", label=EmotionLabel.objects.get(name="neutral"))  # admin extends it
    assert Vocabulary.load().resolve("bored") == "neutral"
    assert list(EmotionLabel.objects.values_list("name", flat=True)) == [
        "happy", "surprise", "angry", "disgust", "fear", "neutral", "sad",
    ]  # fmt: skip


def test_auto_tag_images_imports_labels_and_writes_seed_004s_csv(folder):
    out = io.StringIO()
    call_command("auto_tag_images", str(folder), "--backend", "local", stdout=out, verbosity=0)
    output = folder.parent / "dataset" / "llm_labels.csv"  # seed 004's default beside the folder
    assert f"Wrote 3 labels to {output}" in out.getvalue()
    rows = {row["filename"]: row for row in read_csv(output)}
    assert sorted(rows) == ["astronaut.png", "obama.jpg", "two_faces.jpg"]
    assert rows["astronaut.png"]["emotion"] == "happy" and float(rows["astronaut.png"]["confidence"]) > 0.95
    assert rows["astronaut.png"]["path"] == str(folder / "astronaut.png")
    assert rows["two_faces.jpg"]["emotion"] == "neutral"  # the largest face's (Grace Hopper's), as seed 004 has one

    runs = {run.image.filename: run for run in ImageEmotion.objects.select_related("image")}
    assert runs["coffee.png"].outcome == ImageEmotion.Outcome.NO_FACE
    assert not Face.objects.filter(image__path__endswith="coffee.png").exists()
    assert "broken.jpg" not in runs  # the import recorded it as failed; there is nothing to read
    assert Image.objects.get(path__endswith="broken.jpg").status == Image.Status.FAILED
    two = Face.objects.filter(image__path__endswith="two_faces.jpg").order_by("index")
    assert [face.proposal.label.name for face in two] == ["neutral", "happy"]
    assert two[0].width * two[0].height > two[1].width * two[1].height
    assert all(p.status == Proposal.Status.PENDING for p in EmotionProposal.objects.all())  # never auto-approved
    assert ImageStage.objects.filter(stage="emotion", status=ImageStage.Status.DONE).count() == 4

    again = io.StringIO()
    call_command("auto_tag_images", str(folder), stdout=again, verbosity=0)
    assert "0 images" in again.getvalue() and EmotionProposal.objects.count() == 4  # nothing labelled twice


def test_dry_run_reads_in_place_and_stores_nothing(folder):
    out = io.StringIO()
    call_command("auto_tag_images", str(folder), "--dry-run", "--no-recursive", stdout=out, verbosity=0)
    text = out.getvalue()
    assert f"{folder / 'astronaut.png'}: face 0" in text and "happy" in text
    assert f"{folder / 'coffee.png'}: no face" in text and f"{folder / 'broken.jpg'}: failed" in text
    assert "obama" not in text  # not recursive
    assert not Image.objects.exists() and not ImageEmotion.objects.exists()


def test_without_recursion_only_the_folders_own_files_are_imported_and_labelled(folder):
    call_command("auto_tag_images", str(folder), "--no-recursive", stdout=io.StringIO(), verbosity=0)
    assert not Image.objects.filter(path__contains="/more/").exists()
    rows = read_csv(folder.parent / "dataset" / "llm_labels.csv")
    assert [row["filename"] for row in rows] == ["astronaut.png", "two_faces.jpg"]
    assert sorted(ImageEmotion.objects.values_list("image__path", flat=True)) == [
        str(folder / "astronaut.png"), str(folder / "coffee.png"), str(folder / "two_faces.jpg"),
    ]  # fmt: skip


def test_export_writes_approved_labels_or_all_and_relabels_count(folder, tmp_path, django_user_model):
    call_command("auto_tag_images", str(folder), "--only-approved", stdout=io.StringIO(), verbosity=0)
    assert read_csv(folder.parent / "dataset" / "llm_labels.csv") == []  # nothing approved yet
    moderator = django_user_model.objects.create_user("mod", is_staff=True)
    two = EmotionProposal.objects.filter(image__path__endswith="two_faces.jpg").order_by("face__index")
    assert relabel([two[0].pk], "sad") == 1
    decide(kind="emotion", ids=[p.pk for p in two], status="approved", user=moderator, via="command")
    call_command("export_emotions", "--output", str(tmp_path / "approved.csv"), stdout=io.StringIO())
    rows = read_csv(tmp_path / "approved.csv")
    assert [(row["filename"], row["emotion"]) for row in rows] == [("two_faces.jpg", "sad")]
    assert EmotionProposal.objects.get(pk=two[0].pk).proposed_label.name == "neutral"  # what the model said
    assert relabel([two[0].pk], "happy") == 0  # decided: changed through a decision only
    everything = io.StringIO()
    call_command("export_emotions", "--output", "-", "--all", stdout=everything)
    assert [row[0] for row in csv.reader(io.StringIO(everything.getvalue()))][1:] == [
        "astronaut.png",
        "obama.jpg",
        "two_faces.jpg",
    ]  # fmt: skip  (in path order; faces/more/obama.jpg is below faces/)
    assert Decision.objects.filter(kind="emotion").count() == 2

    # the largest face's label is the image's: with it rejected, the smaller face's approved smile is no row
    decide(kind="emotion", ids=[two[0].pk], status="rejected", user=moderator, via="command")
    call_command("export_emotions", "--output", str(tmp_path / "approved.csv"), stdout=io.StringIO())
    assert read_csv(tmp_path / "approved.csv") == []


@override_settings(EMOTION_IMAGE_TAGS=True)
def test_approved_labels_become_image_tags_and_taking_back_removes_them(folder, django_user_model):
    call_command("auto_tag_images", str(folder), stdout=io.StringIO(), verbosity=0)
    moderator = django_user_model.objects.create_user("mod", is_staff=True)
    astronaut = EmotionProposal.objects.get(image__path__endswith="astronaut.png")
    decide(kind="emotion", ids=[astronaut.pk], status="approved", user=moderator, via="page")
    image = astronaut.image
    assert list(image.tags.values_list("name", flat=True)) == ["emotion:happy"]
    assert Image.objects.filter(tags__name="emotion:happy").count() == 1  # the library can search it
    decide(kind="emotion", ids=[astronaut.pk], status="rejected", user=moderator, via="page")
    assert not image.tags.exists()
