"""The emotion app's tables match its models, and the data migration ships the seven labels with their synonyms."""

import pytest
from django.core.management import call_command

from emotion.models import EmotionLabel, EmotionSynonym

pytestmark = pytest.mark.django_db


def test_models_match_their_migrations():
    call_command("makemigrations", "emotion", check=True, dry_run=True, verbosity=0)


def test_the_seven_labels_and_their_synonyms_are_data(labels):
    assert EmotionLabel.objects.count() == 7
    assert dict(EmotionSynonym.objects.values_list("word", "label__name")) == {
        "serious": "neutral", "calm": "neutral", "blank": "neutral", "joy": "happy", "smiling": "happy",
        "laughing": "happy", "shocked": "surprise", "amazed": "surprise", "scared": "fear", "afraid": "fear",
        "mad": "angry", "furious": "angry", "disgusted": "disgust", "unhappy": "sad", "crying": "sad",
    }  # fmt: skip
