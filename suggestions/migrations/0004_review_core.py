# Tag suggestions move onto the review core: every model version gets its producer, suggestions name it,
# decided_by/decided_at/via replace reviewed_by/reviewed_at, and ReviewDecision rows become Decision rows.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

PRODUCERS = """
INSERT INTO tagsite_producer (kind, name, version, prompt_version, model_file, created_at)
SELECT 'onnx_tagger', name, version, '', model_file, created_at FROM suggestions_mlmodelversion
ON CONFLICT DO NOTHING;
UPDATE suggestions_mlmodelversion m SET producer_id = p.id FROM tagsite_producer p
WHERE p.kind = 'onnx_tagger' AND p.name = m.name AND p.version = m.version AND p.prompt_version = '';
UPDATE suggestions_tagsuggestion s SET producer_id = m.producer_id FROM suggestions_mlmodelversion m
WHERE s.model_version_id = m.id;
UPDATE suggestions_tagsuggestion SET via = 'page' WHERE decided_at IS NOT NULL;
"""

# The old audit had no "before" status: it is the previous decision's, or pending for the first one.
DECISIONS = """
INSERT INTO tagsite_decision (kind, object_id, previous, status, applied, user_id, via, created_at)
SELECT 'tagsuggestion', suggestion_id,
       COALESCE(LAG(status) OVER (PARTITION BY suggestion_id ORDER BY created_at, id), 'pending'),
       status, true, user_id, LEFT(via, 16), created_at
FROM suggestions_reviewdecision ORDER BY created_at, id;
"""

STATUS_CHOICES = [
    ("pending", "pending"),
    ("approved", "approved"),
    ("rejected", "rejected"),
    ("auto_approved", "auto-approved"),
]
VIA_CHOICES = [("page", "page"), ("api", "API"), ("admin", "admin"), ("command", "command"), ("rule", "rule")]


class Migration(migrations.Migration):
    dependencies = [
        ("suggestions", "0003_review_turn_off_and_automatic_mappings"),
        ("tagsite", "0007_review_core"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="mlmodelversion",
            name="producer",
            field=models.OneToOneField(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="model_version",
                to="tagsite.producer",
            ),
        ),
        migrations.AddField(
            model_name="tagsuggestion",
            name="producer",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="tagsite.producer"
            ),
        ),
        migrations.AddField(
            model_name="tagsuggestion",
            name="job",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="tagsite.job"
            ),
        ),
        migrations.AddField(
            model_name="tagsuggestion",
            name="via",
            field=models.CharField(blank=True, choices=VIA_CHOICES, default="", max_length=16),
            preserve_default=False,
        ),
        migrations.RenameField(model_name="tagsuggestion", old_name="reviewed_by", new_name="decided_by"),
        migrations.RenameField(model_name="tagsuggestion", old_name="reviewed_at", new_name="decided_at"),
        migrations.AlterField(
            model_name="tagsuggestion",
            name="decided_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="tagsuggestion",
            name="status",
            field=models.CharField(choices=STATUS_CHOICES, default="pending", max_length=16),
        ),
        migrations.RunSQL(PRODUCERS, migrations.RunSQL.noop),
        migrations.RunSQL(DECISIONS, migrations.RunSQL.noop),
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="mlmodelversion",
            name="producer",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.PROTECT, related_name="model_version", to="tagsite.producer"
            ),
        ),
        migrations.AlterField(
            model_name="tagsuggestion",
            name="producer",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="tagsite.producer"
            ),
        ),
        migrations.DeleteModel(name="ReviewDecision"),
    ]
