"""Merge proposals on the review core: propose from dedupe_tags, edit (representative, drop a member), approve
(aliases, images re-pointed, usage counts, dirty images), undo from the audit, reject (pairs remembered)."""

import json
import subprocess

import pytest
from django.core.management import call_command

from categorization.models import CategoryProposal, ExtendedCategory, TagCategory
from dedupe import services
from dedupe.api import write_merged_files
from dedupe.models import MergeMember, MergeProposal, MustNotMerge
from suggestions.models import MLModelVersion, TagSuggestion
from tagsite import metadata
from tagsite.models import Decision, Image, ImageTag, Producer, Tag, TagAlias
from tagsite.review.services import decide
from tagsite.services import writeback
from tagsite.services.ingest import import_folder
from tagsite.services.jobs import run_job
from tests.dedupe.conftest import embed_all, make_tags
from tests.factories import write_keywords

pytestmark = pytest.mark.django_db


def library() -> dict[str, Tag]:
    """Three spellings of one tag on written (clean) images, plus an unrelated tag."""
    tags = {t.name: t for t in make_tags("t-shirt", "tshirt", "T_Shirts", "sky")}
    images = Image.objects.bulk_create([Image(path=f"/library/{i}.jpg", sha256=f"{i:064x}") for i in range(4)])
    for image, names in zip(images, [["t_shirt"], ["tshirt", "sky"], ["t_shirt", "t_shirts"], ["sky"]], strict=True):
        ImageTag.objects.bulk_create([ImageTag(image=image, tag=tags[name]) for name in names])
    from tagsite.services.tags import refresh_usage_counts

    refresh_usage_counts()
    held = writeback.held_fields([i.pk for i in images])
    for image in images:
        Image.objects.filter(pk=image.pk).update(metadata_fingerprint=writeback.fingerprint(held[image.pk]))
    return {t.name: t for t in Tag.objects.all()}


def proposal_for(space) -> MergeProposal:
    embed_all(space)
    (proposal,) = services.propose(services.find_clusters(space), space.producer)
    return proposal


def test_approve_merges_and_undo_restores(space, django_user_model):
    user = django_user_model.objects.create_user("mod", is_staff=True)
    tags = library()
    proposal = proposal_for(space)
    assert proposal.representative == tags["t_shirt"]  # most used, then shortest
    assert sorted(proposal.members.values_list("name", "reason")) == [
        ("t_shirt", "representative"),
        ("t_shirts", "lexical"),
        ("tshirt", "lexical"),
    ]
    outcome = decide(kind="mergeproposal", ids=[proposal.pk], status="approved", user=user, via="page")
    assert outcome.changed == [proposal.pk]
    assert set(TagAlias.objects.values_list("antecedent", "tag__name")) == {
        ("tshirt", "t_shirt"),
        ("t_shirts", "t_shirt"),
    }
    assert set(Tag.objects.values_list("name", "usage_count")) == {("t_shirt", 3), ("sky", 2)}
    # dirty: the image that had `tshirt` (now `t shirt`) and the one that had `t_shirts` too (one keyword less)
    assert len(writeback.all_dirty_ids()) == 2
    # undo from the audit: taking the approval back
    decide(kind="mergeproposal", ids=[proposal.pk], status="rejected", user=user, via="page")
    assert not TagAlias.objects.exists()
    assert set(Tag.objects.values_list("name", "usage_count")) == {
        ("t_shirt", 2),
        ("tshirt", 1),
        ("t_shirts", 1),
        ("sky", 2),
    }
    assert writeback.all_dirty_ids() == []
    assert Decision.objects.filter(kind="mergeproposal", object_id=proposal.pk).count() == 2


def test_edits_drop_and_representative_and_rejections_are_remembered(space, django_capture_on_commit_callbacks):
    tags = library()
    proposal = proposal_for(space)
    services.set_representative(proposal, tags["tshirt"].pk)
    services.drop_member(proposal, tags["t_shirts"].pk)
    assert MustNotMerge.objects.count() == 2  # t_shirts with each member still in
    decide(kind="mergeproposal", ids=[proposal.pk], status="approved", via="page")
    assert set(TagAlias.objects.values_list("antecedent", "tag__name")) == {("t_shirt", "tshirt")}
    assert MergeMember.objects.get(proposal=proposal, name="t_shirts").included is False
    assert services.find_clusters(space) == []  # the dropped member is never proposed with them again
    with pytest.raises(services.MergeError, match="only a pending proposal"):
        services.drop_member(proposal, tags["t_shirts"].pk)


def test_rejecting_a_merge_remembers_its_pairs(space, django_capture_on_commit_callbacks):
    library()
    proposal = proposal_for(space)
    with django_capture_on_commit_callbacks(execute=True):
        decide(kind="mergeproposal", ids=[proposal.pk], status="rejected", via="page")
    assert MustNotMerge.objects.count() == 2
    assert services.find_clusters(space) == []


def test_dedupe_tags_reports_and_proposes_once(space, tmp_path, capsys):
    library()
    report = tmp_path / "report.json"
    call_command("dedupe_tags", "--dry-run", "--report", str(report), "--similarity-threshold", "0.9")
    data = json.loads(report.read_text())
    assert data["clusters_found"] == 1 and data["similarity_threshold"] == 0.9
    cluster = data["clusters"][0]
    assert cluster["representative"] == "t_shirt"
    assert {m["tag"]: m["frequency"] for m in cluster["members"]} == {"t_shirt": 2, "tshirt": 1, "t_shirts": 1}
    assert cluster["affected_files"] == {"tshirt": ["/library/1.jpg"], "t_shirts": ["/library/2.jpg"]}
    assert not MergeProposal.objects.exists()
    call_command("dedupe_tags", "--report", str(report))
    call_command("dedupe_tags", "--report", str(report))  # the pending proposal is not proposed twice
    assert MergeProposal.objects.count() == 1
    assert "1 merge proposals to review" in capsys.readouterr().out


def test_writing_a_merge_changes_only_the_merged_names_in_the_files(space, image_folder, settings, django_user_model):
    """The files' own keywords (here one tagsite no longer holds for the image) stay; the merged-away name leaves
    and the representative takes its place, in XMP, IPTC and the hierarchy, read back by ExifTool."""
    settings.METADATA_DIR = image_folder.parent / "var-metadata"
    first, second, third = (image_folder / f"photo{i}.jpg" for i in range(3))
    write_keywords(first, subject=["Outdoor", "Beach", "Film Grain"], iptc=["Outdoor", "Beach", "Film Grain"])
    write_keywords(second, subject=["Outdoors"], iptc=["Outdoors"])
    write_keywords(third, subject=["Outdoors"], iptc=["Outdoors"])
    hierarchy = ["Film|Film Grain", "Places|Outdoor"]  # as tagsite wrote it when `outdoor` had its category
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", *[f"-XMP-lr:HierarchicalSubject={h}" for h in hierarchy], first],
        check=True,
    )
    import_folder(image_folder)
    ImageTag.objects.filter(image__path=str(first), tag__name="film_grain").delete()  # a human took it off
    places = ExtendedCategory.objects.create(code="99_Places", name="Places", description="where", group="scene")
    TagCategory.objects.create(tag=Tag.objects.get(name="outdoor"), category=places)
    proposal = proposal_for(space)
    assert proposal.representative.name == "outdoors"
    user = django_user_model.objects.create_user("mod", is_staff=True)
    decide(kind="mergeproposal", ids=[proposal.pk], status="approved", user=user, via="page")

    job = write_merged_files([proposal.pk], user)
    assert job.params["selection"] == {"ids": [Image.objects.get(path=str(first)).pk]}
    with run_job(job) as progress:
        writeback.run_write_job(job, progress)
    job.refresh_from_db()
    assert job.counts == {"written": 1}, job.errors

    found = metadata.read_fields([str(first)])[str(first)]
    assert found[metadata.SUBJECT] == ["Beach", "Film Grain", "Outdoors"]
    assert found[metadata.KEYWORDS] == ["Beach", "Film Grain", "Outdoors"]
    assert found[metadata.HIERARCHY] == ["Film|Film Grain", "Places|Outdoors"]


def test_undo_gives_each_member_back_its_category_suggestions_and_category_proposals(space, django_user_model):
    """What followed the merge to the representative goes back: the members' extended categories (the first one
    merged became the representative's, which had none; the other was deleted as a duplicate and is kept on the
    proposal), their tag suggestions and their category proposals."""
    tags = library()
    face, attire = (ExtendedCategory.objects.get(code=code) for code in ("03_Body_Face", "08_Attire_Acc"))
    TagCategory.objects.create(tag=tags["tshirt"], category=attire)
    TagCategory.objects.create(tag=tags["t_shirts"], category=face)
    chat = Producer.objects.get_or_create(kind=Producer.Kind.CHAT, name="m", prompt_version="v")[0]
    proposed = CategoryProposal.objects.create(tag=tags["t_shirts"], category=attire, confidence=0.8, producer=chat)
    model = MLModelVersion.objects.create(
        name="wd-test", version="v1", model_file="/m/model.onnx", labels_file="/m/labels.csv", sha256="0" * 64,
        input_size=448, label_count=2,
    )  # fmt: skip
    image = Image.objects.get(path="/library/1.jpg")
    suggestion = TagSuggestion.objects.create(
        image=image, tag=tags["tshirt"], model_version=model, producer=model.producer, external_tag="tshirt",
        confidence=0.7,
    )  # fmt: skip
    proposal = proposal_for(space)
    user = django_user_model.objects.create_user("mod", is_staff=True)
    decide(kind="mergeproposal", ids=[proposal.pk], status="approved", user=user, via="page")
    target = tags["t_shirt"]
    assert list(TagCategory.objects.values_list("tag", flat=True)) == [target.pk]  # one member's; the other's deleted
    assert TagSuggestion.objects.get(pk=suggestion.pk).tag == target
    assert CategoryProposal.objects.get(pk=proposed.pk).tag == target

    decide(kind="mergeproposal", ids=[proposal.pk], status="pending", user=user, via="page")
    restored = {t.name: t for t in Tag.objects.all()}
    assert dict(TagCategory.objects.values_list("tag__name", "category__code")) == {
        "tshirt": "08_Attire_Acc",
        "t_shirts": "03_Body_Face",
    }
    assert TagSuggestion.objects.get(pk=suggestion.pk).tag == restored["tshirt"]
    assert CategoryProposal.objects.get(pk=proposed.pk).tag == restored["t_shirts"]
