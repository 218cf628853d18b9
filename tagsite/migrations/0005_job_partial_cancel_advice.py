import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("tagsite", "0004_llm_registry"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="job",
            options={"ordering": ["-id"], "permissions": [("cancel_job", "Can cancel a queued or running job")]},
        ),
        migrations.AddField(
            model_name="job",
            name="advice",
            field=models.TextField(
                blank=True, help_text="What to do about the errors, shown when the job did not succeed."
            ),
        ),
        migrations.AddField(
            model_name="job",
            name="cancel_requested_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="cancelled_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="job",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "queued"),
                    ("running", "running"),
                    ("succeeded", "succeeded"),
                    ("partial", "partial (some items failed)"),
                    ("failed", "failed"),
                    ("cancelled", "cancelled"),
                ],
                db_index=True,
                default="queued",
                max_length=16,
            ),
        ),
    ]
