"""/emotion/ and the CSV export at scale: the same queries for 5 and 50 faces, names resolved to ids first, no heavy
image columns, and the export chosen and sorted in SQL (one row per image, its largest face's newest label)."""

import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from emotion import services
from emotion.models import EmotionLabel, EmotionProposal, Face, ImageEmotion
from tagsite.models import Image, Producer

pytestmark = pytest.mark.django_db


def faces(count: int, status: str = "pending", label: str = "happy", start: int = 0) -> list[EmotionProposal]:
    """One image per face, the largest (index 0), labelled `label`, paths in reverse order of creation."""
    producer = Producer.objects.get_or_create(kind=Producer.Kind.CLASSIFIER, name="fer")[0]
    chosen = EmotionLabel.objects.get(name=label)
    made = []
    for n in range(start, start + count):
        image = Image.objects.create(path=f"/library/{9999 - n:04}.jpg", sha256=f"{n:064}", sidecars={"big": "x" * 50})
        run = ImageEmotion.objects.create(image=image, producer=producer, outcome="labelled")
        face = Face.objects.create(
            run=run, image=image, index=0, x=0, y=0, width=9, height=9, detection_confidence=0.9, probabilities={}
        )
        made.append(
            EmotionProposal.objects.create(
                face=face, image=image, label=chosen, proposed_label=chosen, producer=producer, status=status
            )
        )
    return made


def queries(client, url: str) -> tuple[int, list[str], bytes]:
    with CaptureQueriesContext(connection) as captured:
        answer = client.get(url)
        assert answer.status_code == 200
        body = b"".join(answer.streaming_content) if answer.streaming else answer.content
    return len(captured), [query["sql"] for query in captured], body


@pytest.mark.parametrize(
    "url",
    ["/emotion/", "/emotion/?label=happy", "/api/emotions/export.csv?all=1", "/api/review/emotion/?status=pending"],
)
def test_the_same_queries_for_5_and_50_faces_without_heavy_image_columns(admin_client, url):
    faces(5)
    few, _, _ = queries(admin_client, url)
    faces(45, start=5)
    many, sql, body = queries(admin_client, url)
    assert few == many and b"9999.jpg" in body
    assert not [query for query in sql if '"sidecars"' in query]
    assert not [query for query in sql if "emotion_emotionproposal" in query and '"name" =' in query]


def test_the_export_is_each_images_largest_faces_newest_label_by_path(admin_client):
    first, _, third = faces(3, status="approved")
    faces(1, status="pending", start=3)
    EmotionProposal.objects.create(  # a newer run's label of the first image's largest face
        face=Face.objects.create(
            run=ImageEmotion.objects.create(
                image=first.image, producer=Producer.objects.create(kind=Producer.Kind.CHAT, name="vlm"), outcome="ok"
            ),
            image=first.image,
            index=0,
            x=0,
            y=0,
            width=9,
            height=9,
            detection_confidence=0.9,
        ),
        image=first.image,
        label=EmotionLabel.objects.get(name="sad"),
        proposed_label=EmotionLabel.objects.get(name="sad"),
        producer=first.producer,
        status="approved",
        confidence=0.25,
    )
    expected = [
        ["filename", "path", "emotion", "confidence"],
        ["9997.jpg", "/library/9997.jpg", "happy", "1.0000"],
        ["9998.jpg", "/library/9998.jpg", "happy", "1.0000"],
        ["9999.jpg", "/library/9999.jpg", "sad", "0.2500"],
    ]
    body = b"".join(admin_client.get("/api/emotions/export.csv").streaming_content).decode()
    assert list(csv.reader(io.StringIO(body))) == expected
    assert list(services.csv_rows(services.image_labels(image_ids=[first.image_id, third.image_id]))) == [
        expected[0],
        expected[1],
        expected[3],
    ]


@pytest.mark.parametrize("model", ["emotionproposal", "face", "imageemotion"])
def test_admin_searches_find_the_images_first(admin_client, model):
    faces(3)
    with CaptureQueriesContext(connection) as captured:
        answer = admin_client.get(f"/admin/emotion/{model}/", {"q": "/9998."})
    assert answer.status_code == 200 and answer.context["cl"].result_count == 1
    assert not [query["sql"] for query in captured if "emotion_" in query["sql"] and "LIKE" in query["sql"]]
    assert admin_client.get(f"/admin/emotion/{model}/", {"q": "nowhere"}).context["cl"].result_count == 0
