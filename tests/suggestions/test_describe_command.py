"""`describe_images` (seed 003's run): folders in, proposals (or, with --auto-approve, written files) and the audit
out; preflight first."""

import json
import subprocess

import pytest
from django.core.management import CommandError, call_command

from suggestions.models import STAGES, MLModelVersion, TextProposal
from tagsite.models import AutoApproveRule, Decision, Image, Job, Producer
from tagsite.services.writeback import audit_folder
from tests.factories import make_jpeg
from tests.llm_server import OpenAITestServer, colour_rule, request_schema

pytestmark = pytest.mark.django_db


@pytest.fixture
def vlm():
    with OpenAITestServer(models=["vlm"]) as server:
        server.chat_rule = colour_rule
        yield server


def test_proposals_wait_for_review_and_the_audit_is_written(vlm, tmp_path, capsys):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    make_jpeg(tmp_path / "a" / "red.jpg", color=(220, 30, 30))
    make_jpeg(tmp_path / "a" / "sub" / "blue.jpg", color=(30, 30, 220))
    out = tmp_path / "out.jsonl"
    call_command(
        "describe_images", "--input-dir", str(tmp_path / "a"), "--base-url", vlm.url, "--model", "vlm",
        "--prompt-profile", "travel", "--output-jsonl", str(out), "--summary", str(tmp_path / "summary.md"),
    )  # fmt: skip
    assert TextProposal.objects.filter(status="pending").count() == 3  # not recursive: red.jpg only
    assert [image.filename for image in Image.objects.all()] == ["red.jpg"]  # sub/ is not even imported
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["path"].rsplit("/", 1)[1], r["status"], r["metadata"]) for r in records] == [
        ("red.jpg", "described", "awaiting review")
    ]
    assert records[0]["stages"]["caption"]["answer"].startswith("A red picture")
    summary = (tmp_path / "summary.md").read_text()
    assert "profile travel-v1" in summary and "| caption | 1 | 0 | 0 |" in summary and "## Highlights" in summary
    job = Job.objects.get(kind="describe_images")
    assert job.status == "succeeded" and (tmp_path / "out.jsonl").exists()
    assert "caption" in capsys.readouterr().out
    call_command("describe_images", "--input-dir", str(tmp_path / "a"), "--recursive", "--base-url", vlm.url,
                 "--model", "vlm", "--prompt-profile", "travel")  # fmt: skip
    assert TextProposal.objects.count() == 6  # blue.jpg now; red.jpg's stages were done
    call_command("describe_images", "--input-dir", str(tmp_path / "a"), "--base-url", vlm.url, "--model", "vlm")
    assert set(Image.objects.values_list("status", flat=True)) == {"ok"}  # sub/blue.jpg is not taken for missing


def test_a_run_of_several_jobs_writes_one_audit_and_one_table(vlm, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220)), ("green", (30, 180, 30))):
        make_jpeg(tmp_path / "in" / f"{name}.jpg", color=colour)
    call_command("describe_images", "--input-dir", str(tmp_path / "in"), "--base-url", vlm.url, "--model", "vlm",
                 "--stages", "caption", "--batch-size", "2", "--output-jsonl", str(tmp_path / "run.jsonl"),
                 "--summary", str(tmp_path / "run.md"), "--skip-preflight")  # fmt: skip
    assert Job.objects.filter(kind="describe_images").count() == 2
    summary = (tmp_path / "run.md").read_text()
    assert summary.count("# Describe run") == 1 and "3 images: 3 described" in summary
    assert "| caption | 3 | 0 | 0 |" in summary and f"| {tmp_path / 'in'} | 3 | 0 | 0 | 0 |" in summary
    assert len((tmp_path / "run.jsonl").read_text().splitlines()) == 3
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines() if line.startswith("caption")] == [
        ["caption", "3"]
    ]


def test_auto_approve_writes_the_files_through_the_writer(vlm, tmp_path):
    make_jpeg(tmp_path / "green.jpg", color=(30, 180, 30))
    call_command("describe_images", "--input-dir", str(tmp_path), "--base-url", vlm.url, "--model", "vlm",
                 "--auto-approve", "--skip-preflight")  # fmt: skip
    image = Image.objects.get()
    assert image.title.startswith("A green picture") and image.caption and image.description
    assert AutoApproveRule.objects.get(name="describe_images").active is False
    assert Decision.objects.filter(rule__name="describe_images").count() == 3
    found = subprocess.run(
        ["exiftool", "-j", "-XMP-dc:Title", "-XMP-dc:Subject", str(tmp_path / "green.jpg")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    fields = json.loads(found.stdout)[0]
    assert fields["Title"].startswith("A green picture") and "green" in fields["Subject"]


def test_write_options_of_a_run_that_writes_nothing_are_named_and_stages_keep_their_order(vlm, tmp_path, capsys):
    make_jpeg(tmp_path / "red.jpg", color=(220, 30, 30))
    vlm.latency = 0.05
    call_command("describe_images", "--input-dir", str(tmp_path), "--base-url", vlm.url, "--model", "vlm",
                 "--backup-originals", "--overwrite-metadata", "--summary", str(tmp_path / "s.md"),
                 "--output-jsonl", str(tmp_path / "a.jsonl"), "--skip-preflight")  # fmt: skip
    out, err = capsys.readouterr()
    assert "note: --backup-originals, --overwrite-metadata ignored: this run writes no file" in err
    rows = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in STAGES]
    assert rows == list(STAGES)
    summary = (tmp_path / "s.md").read_text()
    assert [summary.index(f"| {stage} |") for stage in STAGES] == sorted(summary.index(f"| {s} |") for s in STAGES)
    assert list(json.loads((tmp_path / "a.jsonl").read_text())["stages"]) == list(STAGES)
    call_command("describe_images", "--input-dir", str(tmp_path), "--base-url", vlm.url, "--model", "vlm",
                 "--auto-approve", "--backup-originals", "--skip-preflight")  # fmt: skip
    assert "note:" not in capsys.readouterr().err


def test_model_and_sampling_options_reach_each_stages_requests(tmp_path):
    make_jpeg(tmp_path / "red.jpg", color=(220, 30, 30))
    with OpenAITestServer(models=["vlm", "captioner"]) as server:
        server.chat_rule = colour_rule
        call_command("describe_images", "--input-dir", str(tmp_path), "--base-url", server.url, "--model", "vlm",
                     "--caption-model", "captioner", "--temperature", "0.3", "--top-p", "0.8",
                     "--max-new-tokens", "300", "--max-keywords", "5", "--skip-preflight")  # fmt: skip
        bodies = {next(iter(request_schema(body)["properties"])): body for body in server.chat_requests()}
    assert {stage: body["model"] for stage, body in bodies.items()} == {
        "title": "vlm", "caption": "captioner", "keywords": "vlm", "description": "vlm"
    }  # fmt: skip
    assert {(body["temperature"], body["top_p"], body["max_tokens"]) for body in bodies.values()} == {(0.3, 0.8, 300)}
    assert request_schema(bodies["keywords"])["properties"]["keywords"]["maxItems"] == 5
    assert TextProposal.objects.get(field="caption").producer.name == "captioner"


def test_preflight_stops_a_run_against_a_server_that_is_down(tmp_path):
    make_jpeg(tmp_path / "red.jpg")
    with pytest.raises(CommandError, match="preflight failed"):
        call_command("describe_images", "--input-dir", str(tmp_path), "--base-url", "http://127.0.0.1:9/v1",
                     "--model", "vlm")  # fmt: skip
    assert not TextProposal.objects.exists()


def test_an_unknown_profile_or_stage_is_a_usage_error(vlm, tmp_path):
    with pytest.raises(CommandError, match="no prompt profile 'nope'"):
        call_command("describe_images", "--input-dir", str(tmp_path), "--prompt-profile", "nope")
    with pytest.raises(CommandError, match="unknown stage 'mood'"):
        call_command("describe_images", "--input-dir", str(tmp_path), "--stages", "caption,mood")


def test_the_job_page_offers_the_runs_audit(vlm, tmp_path, admin_client):
    make_jpeg(tmp_path / "red.jpg", color=(220, 30, 30))
    call_command("describe_images", "--input-dir", str(tmp_path), "--base-url", vlm.url, "--model", "vlm",
                 "--stages", "caption", "--skip-preflight")  # fmt: skip
    job = Job.objects.get(kind="describe_images")
    assert audit_folder(job.pk) == tmp_path / "metadata" / f"job-{job.pk}"  # this test's own, not var/'s
    page = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Audit of this run" in page and "summary.md" in page
    jsonl = b"".join(admin_client.get(f"/jobs/{job.pk}/audit/audit.jsonl").streaming_content)
    assert json.loads(jsonl)["stages"]["caption"]["answer"].startswith("A red picture")


def test_preflight_refuses_a_text_model_that_cannot_see_images(vlm, tmp_path):
    make_jpeg(tmp_path / "red.jpg")
    vlm.vision = False
    with pytest.raises(CommandError, match="image round trip: .*does not take images.*mmproj"):
        call_command("describe_images", "--input-dir", str(tmp_path), "--base-url", vlm.url, "--model", "vlm")
    assert len(vlm.chat_requests()) == 2  # the text round trip, then one image: not retried


def test_a_passing_fault_in_the_preflights_image_round_trip_is_retried(vlm, tmp_path):
    make_jpeg(tmp_path / "red.jpg", color=(220, 30, 30))
    vlm.retry_after = 0
    vlm.inject("ok", "ok", "429")  # the model listing, the text round trip, then the image round trip
    call_command("describe_images", "--input-dir", str(tmp_path), "--base-url", vlm.url, "--model", "vlm",
                 "--stages", "caption")  # fmt: skip
    assert TextProposal.objects.get().text.startswith("A red picture")


def test_a_dry_run_asks_and_audits_but_leaves_the_library_as_it_was(vlm, tmp_path):
    (tmp_path / "sub").mkdir()
    make_jpeg(tmp_path / "red.jpg", color=(220, 30, 30))
    make_jpeg(tmp_path / "sub" / "blue.jpg", color=(30, 30, 220))
    out = tmp_path / "dry.jsonl"
    call_command("describe_images", "--input-dir", str(tmp_path), "--base-url", vlm.url, "--model", "vlm",
                 "--dry-run", "--auto-approve", "--output-jsonl", str(out), "--skip-preflight")  # fmt: skip
    record = json.loads(out.read_text())
    assert record["path"] == str(tmp_path / "red.jpg") and record["status"] == "described"  # not recursive
    assert record["metadata"] == "dry run: nothing stored" and record["stages"]["title"]["answer"]
    assert len(vlm.chat_requests()) == 4
    # nothing imported, proposed, approved, nor any producer made: only the run's job and its audit
    assert not Image.objects.exists() and not TextProposal.objects.exists() and not Decision.objects.exists()
    assert not Producer.objects.exists() and not MLModelVersion.objects.exists()
    assert Job.objects.get(kind="describe_images").status == "succeeded"
    call_command("describe_images", "--input-dir", str(tmp_path), "--base-url", vlm.url, "--model", "vlm",
                 "--stages", "caption", "--skip-preflight")  # fmt: skip
    (image,) = Image.objects.all()  # red.jpg: not recursive
    call_command("describe_images", "--input-dir", str(tmp_path), "--base-url", vlm.url, "--model", "vlm",
                 "--stages", "caption", "--dry-run", "--output-jsonl", str(out), "--skip-preflight")  # fmt: skip
    record = json.loads(out.read_text())  # a file in the library: its pending caption is skipped, as a run would
    assert (record["image"], record["status"]) == (image.pk, "skipped") and len(vlm.chat_requests()) == 5
