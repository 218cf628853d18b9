"""Seed 001's descriptive rename: the sanitiser against path traversal and every other way a model's file name could
hurt, and the command end to end against the loopback VLM (copies verified, nothing overwritten)."""

import hashlib
import json
import os
import random
import re

import pytest
from django.core.management import CommandError, call_command

from suggestions.services.classifier import MAX_NAME, RESERVED, claim, safe_filename
from tests.factories import make_jpeg
from tests.llm_server import OpenAITestServer, colour_rule

SAFE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
ATTACKS = {
    "../../etc/passwd": "etc-passwd",
    "/etc/passwd": "etc-passwd",
    "..\\..\\windows\\system32\\config": "windows-system32-config",
    "~/.ssh/authorized_keys": "ssh-authorized-keys",
    "a/../../b": "a-b",
    "..": "image",
    "...": "image",
    ".bashrc": "bashrc",
    "evil\x00.jpg": "evil",
    "name.jpg\x00.php": "name-jpg-php",
    "CON": "con-image",
    "nul.txt": "nul-txt",
    "com1": "com1-image",
    "LPT9-printer": "lpt9-printer",
    "Çafé Crème Brûlée!": "cafe-creme-brulee",
    "Sunset over the HARBOUR.JPG": "sunset-over-the-harbour",
    "   ": "image",
    "": "image",
    "🙂🙂🙂": "image",
    "\u202egpj.exe": "gpj-exe",
    "file:///etc/shadow": "file-etc-shadow",
    "C:\\Windows\\win.ini": "c-windows-win-ini",
}


@pytest.mark.parametrize("answer", sorted(ATTACKS))
def test_the_sanitiser_keeps_every_name_inside_its_folder(answer):
    name, notes = safe_filename(answer)
    assert name == ATTACKS[answer]
    assert SAFE.match(name) and len(name) <= MAX_NAME and name not in RESERVED
    escaped = any(mark in answer for mark in ("/", "\\", "\x00", "..")) or answer.startswith(("~", "."))
    assert bool(notes) == (escaped or not re.search(r"[A-Za-z0-9]", answer))


def test_random_answers_always_sanitise_to_safe_names():
    rng = random.Random(11)
    alphabet = 'abcXYZ019 ./\\\x00-_~:*?"<>|é✓\u202e\n\t'
    for _ in range(3000):
        answer = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        name, _ = safe_filename(answer)
        assert SAFE.match(name) and len(name) <= MAX_NAME and name not in RESERVED, (answer, name)
        assert os.path.basename(name) == name and ".." not in name


def test_long_names_are_cut_at_a_word_and_fallback_uses_the_title():
    name, _ = safe_filename(" ".join(["harbour"] * 40))
    assert len(name) <= MAX_NAME and name.endswith("harbour")
    assert safe_filename("!!!", fallback="Boats at Dusk")[0] == "boats-at-dusk"


def test_claim_never_overwrites_and_numbers_collisions(tmp_path):
    (tmp_path / "boat.jpg").write_bytes(b"someone else's")
    (tmp_path / "boat-2.json").write_text("{}")
    stem, image_fd, json_fd = claim(tmp_path, "boat", ".jpg")
    os.close(image_fd)
    os.close(json_fd)
    assert stem == "boat-3"  # boat.jpg taken, boat-2.json taken
    assert (tmp_path / "boat.jpg").read_bytes() == b"someone else's" and not (tmp_path / "boat-2.jpg").exists()
    os.symlink(tmp_path / "elsewhere", tmp_path / "link.jpg")
    assert claim(tmp_path, "link", ".jpg")[0] == "link-2"  # a symlink is a taken name, never followed


@pytest.fixture
def vlm():
    with OpenAITestServer(models=["vlm"]) as server:
        server.chat_rule = colour_rule
        yield server


@pytest.mark.django_db
def test_the_command_copies_verified_images_with_their_json(vlm, tmp_path, capsys, caplog):
    original = make_jpeg(tmp_path / "IMG_0001.jpg", color=(220, 30, 30))
    make_jpeg(tmp_path / "IMG_0002.jpg", color=(30, 30, 220))
    before = hashlib.sha256(original.read_bytes()).hexdigest()
    answers = iter(["../../etc/passwd", "Blue Sky.JPG"])

    def rule(body):
        answer = colour_rule(body)
        return answer | {"filename": next(answers)} if "filename" in answer else answer

    vlm.chat_rule = rule
    call_command("image_classifier", str(tmp_path), "--api-url", vlm.url, "--model", "vlm")
    processed = tmp_path / "processed"
    assert sorted(p.name for p in processed.iterdir()) == ["blue-sky.jpg", "blue-sky.json", "etc-passwd.jpg",
                                                            "etc-passwd.json"]  # fmt: skip
    assert hashlib.sha256((processed / "etc-passwd.jpg").read_bytes()).hexdigest() == before
    assert hashlib.sha256(original.read_bytes()).hexdigest() == before  # the original is untouched
    record = json.loads((processed / "etc-passwd.json").read_text())
    assert record["source"] == str(original) and record["model"] == "vlm" and record["file"] == "etc-passwd.jpg"
    assert record["title"].startswith("A red picture") and record["keywords"] == ["red", "red picture"]
    assert "tried to leave the folder" in caplog.text and not (tmp_path.parent / "etc").exists()
    assert "2 classified, 0 failed" in capsys.readouterr().out

    answers = iter(["etc-passwd", "blue-sky"])
    call_command("image_classifier", str(tmp_path), "--api-url", vlm.url, "--model", "vlm")
    names = sorted(p.name for p in processed.iterdir())
    assert "etc-passwd-2.jpg" in names and "blue-sky-2.json" in names and len(names) == 8  # processed/ not re-read


@pytest.mark.django_db
def test_a_copy_that_fails_leaves_nothing_in_processed(vlm, tmp_path, capsys):
    source = make_jpeg(tmp_path / "IMG_0001.jpg", color=(220, 30, 30))

    def rule(body):
        source.unlink(missing_ok=True)  # the file goes between the answer and the copy
        return colour_rule(body)

    vlm.chat_rule = rule
    with pytest.raises(CommandError, match="no image was classified"):
        call_command("image_classifier", str(tmp_path), "--api-url", vlm.url, "--model", "vlm")
    assert list((tmp_path / "processed").iterdir()) == []  # neither the claimed image nor an empty JSON
    assert "IMG_0001.jpg: " in capsys.readouterr().err  # the reason, on the image's line


@pytest.mark.django_db
def test_a_processed_symlink_is_refused(vlm, tmp_path):
    make_jpeg(tmp_path / "a.jpg")
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "processed")
    with pytest.raises(CommandError, match="symbolic link"):
        call_command("image_classifier", str(tmp_path), "--api-url", vlm.url, "--model", "vlm")
    assert not list((tmp_path / "outside").iterdir())
