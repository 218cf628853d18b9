"""The review core reads one producer's pending suggestions in id order (GET /api/review/tagsuggestion/?producer=,
the /review/ hub's capped counts): a partial index on (producer, id) of pending rows."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("suggestions", "0005_pending_suggestion_indexes")]

    operations = [
        migrations.AddIndex(
            model_name="tagsuggestion",
            index=models.Index(
                condition=models.Q(("status", "pending")), fields=["producer", "id"], name="suggestion_pending_producer"
            ),
        ),
    ]
