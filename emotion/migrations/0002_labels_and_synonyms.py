"""The seven labels of seed 004 with their confidence floors, and the synonyms of issue 13 (editable in admin)."""

from django.db import migrations

# name, floor: the local classifier is reliable on clear smiles (0.99+), much less on the rest.
LABELS = [
    ("happy", 0.5),
    ("surprise", 0.6),
    ("angry", 0.7),
    ("disgust", 0.7),
    ("fear", 0.7),
    ("neutral", 0.5),
    ("sad", 0.6),
]
SYNONYMS = {
    "neutral": ["serious", "calm", "blank"],
    "happy": ["joy", "smiling", "laughing"],
    "surprise": ["shocked", "amazed"],
    "fear": ["scared", "afraid"],
    "angry": ["mad", "furious"],
    "disgust": ["disgusted"],
    "sad": ["unhappy", "crying"],
}


def add(apps, schema_editor):
    label_model = apps.get_model("emotion", "EmotionLabel")
    synonym_model = apps.get_model("emotion", "EmotionSynonym")
    for position, (name, floor) in enumerate(LABELS):
        label, _ = label_model.objects.get_or_create(name=name, defaults={"position": position, "min_confidence": floor})
        for word in SYNONYMS[name]:
            synonym_model.objects.get_or_create(word=word, defaults={"label": label})


def remove(apps, schema_editor):
    apps.get_model("emotion", "EmotionSynonym").objects.filter(
        word__in=[word for words in SYNONYMS.values() for word in words]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("emotion", "0001_initial")]

    operations = [migrations.RunPython(add, remove)]
