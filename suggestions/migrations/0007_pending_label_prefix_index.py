"""The review queue's tag filter matches a label prefix or-ed with resolved tag ids: a partial pattern index on
pending rows' labels lets PostgreSQL or the two index scans instead of walking 800k pending rows (issue 9)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("suggestions", "0006_pending_producer_index")]

    operations = [
        migrations.AddIndex(
            model_name="tagsuggestion",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["external_tag"],
                name="suggestion_pending_label",
                opclasses=["varchar_pattern_ops"],
            ),
        ),
    ]
