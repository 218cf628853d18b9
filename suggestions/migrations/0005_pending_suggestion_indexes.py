"""Partial indexes on pending suggestions: the review queue reads only those (issue 9)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("suggestions", "0004_review_core")]

    operations = [
        migrations.AddIndex(
            model_name="tagsuggestion",
            index=models.Index(condition=models.Q(("status", "pending")), fields=["id"], name="suggestion_pending_id"),
        ),
        migrations.AddIndex(
            model_name="tagsuggestion",
            index=models.Index(
                condition=models.Q(("status", "pending")), fields=["tag", "image"], name="suggestion_pending_tag"
            ),
        ),
        migrations.AddIndex(
            model_name="tagsuggestion",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["model_version", "image"],
                name="suggestion_pending_model",
            ),
        ),
    ]
