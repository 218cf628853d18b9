# Category proposals move onto the review core: the free-text model (and prompt version) becomes a producer,
# statuses are the core's (accepted -> approved, auto -> auto_approved, the latter named by the auto-apply
# setting's rule), reviewer/reviewed_at become decided_by/decided_at, and past decisions get Decision rows.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

PRODUCERS = """
INSERT INTO tagsite_producer (kind, name, version, prompt_version, model_file, created_at)
SELECT DISTINCT 'chat', model, '', prompt_version, '', now() FROM categorization_categoryproposal
ON CONFLICT DO NOTHING;
UPDATE categorization_categoryproposal c SET producer_id = p.id FROM tagsite_producer p
WHERE p.kind = 'chat' AND p.name = c.model AND p.version = '' AND p.prompt_version = c.prompt_version;
"""

STATUSES = """
UPDATE categorization_categoryproposal SET status = 'approved' WHERE status = 'accepted';
UPDATE categorization_categoryproposal SET status = 'auto_approved', via = 'rule' WHERE status = 'auto';
INSERT INTO tagsite_autoapproverule (name, kind, min_confidence, active, created_at)
SELECT 'TAGSITE_CATEGORIZE_AUTO_APPLY', 'categoryproposal', 0, false, now()
WHERE EXISTS (SELECT 1 FROM categorization_categoryproposal WHERE status = 'auto_approved')
ON CONFLICT DO NOTHING;
INSERT INTO tagsite_decision (kind, object_id, previous, status, applied, user_id, via, rule_id, created_at)
SELECT 'categoryproposal', c.id, 'pending', c.status, true, c.decided_by_id, c.via,
       CASE WHEN c.status = 'auto_approved' THEN r.id END, COALESCE(c.decided_at, c.created_at)
FROM categorization_categoryproposal c
LEFT JOIN tagsite_autoapproverule r ON r.name = 'TAGSITE_CATEGORIZE_AUTO_APPLY'
WHERE c.status <> 'pending' ORDER BY COALESCE(c.decided_at, c.created_at), c.id;
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
        ("categorization", "0003_tagcategory"),
        ("tagsite", "0007_review_core"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="categoryproposal",
            name="producer",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="tagsite.producer"
            ),
        ),
        migrations.AddField(
            model_name="categoryproposal",
            name="via",
            field=models.CharField(blank=True, choices=VIA_CHOICES, default="", max_length=16),
            preserve_default=False,
        ),
        migrations.RenameField(model_name="categoryproposal", old_name="reviewer", new_name="decided_by"),
        migrations.RenameField(model_name="categoryproposal", old_name="reviewed_at", new_name="decided_at"),
        migrations.AlterField(
            model_name="categoryproposal",
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
            model_name="categoryproposal",
            name="job",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="tagsite.job"
            ),
        ),
        migrations.AlterField(
            model_name="categoryproposal",
            name="status",
            field=models.CharField(choices=STATUS_CHOICES, default="pending", max_length=16),
        ),
        migrations.AlterField(
            model_name="categoryproposal",
            name="confidence",
            field=models.FloatField(default=1.0),
        ),
        migrations.RunSQL(PRODUCERS, migrations.RunSQL.noop),
        migrations.RunSQL(STATUSES, migrations.RunSQL.noop),
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="categoryproposal",
            name="producer",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="tagsite.producer"
            ),
        ),
        migrations.RemoveField(model_name="categoryproposal", name="model"),
        migrations.RemoveField(model_name="categoryproposal", name="prompt_version"),
        migrations.AlterModelOptions(
            name="categoryproposal",
            options={
                "ordering": ["-id"],
                "permissions": [("review_categoryproposal", "Can approve or reject category proposals")],
            },
        ),
        migrations.AddIndex(
            model_name="categoryproposal",
            index=models.Index(fields=["status", "producer"], name="categorizat_status_faec50_idx"),
        ),
    ]
