# The review core: producers of AI outputs, auto-approve rules and the decision audit of every review kind.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tagsite", "0006_llm_roles_from_apps"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Producer",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("onnx_tagger", "ONNX tagger"),
                            ("chat", "chat LLM/VLM"),
                            ("embedding", "embedding model"),
                            ("classifier", "local classifier"),
                            ("rule", "rule"),
                            ("human_import", "human import"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        help_text="The model's (or rule's) name, e.g. wd-vit-v3 or qwen2.5-vl.", max_length=255
                    ),
                ),
                ("version", models.CharField(blank=True, max_length=100)),
                (
                    "prompt_version",
                    models.CharField(blank=True, help_text="Chat models: the prompt/profile version.", max_length=32),
                ),
                ("model_file", models.TextField(blank=True, help_text="Local models: the file it ran.")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "endpoint",
                    models.ForeignKey(
                        blank=True,
                        help_text="The registry endpoint it ran on.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to="tagsite.llmendpoint",
                    ),
                ),
            ],
            options={
                "ordering": ["name", "version", "prompt_version"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("kind", "name", "version", "prompt_version"), name="unique_producer"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="AutoApproveRule",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
                (
                    "kind",
                    models.CharField(help_text="A review kind, e.g. tagsuggestion or categoryproposal.", max_length=64),
                ),
                ("min_confidence", models.FloatField(help_text="From 0 to 1.")),
                ("active", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "producer",
                    models.ForeignKey(
                        blank=True,
                        help_text="Empty: any producer of the kind.",
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="tagsite.producer",
                    ),
                ),
            ],
            options={
                "ordering": ["kind", "name"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("min_confidence__gte", 0), ("min_confidence__lte", 1)),
                        name="rule_confidence_in_range",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="Decision",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.CharField(max_length=64)),
                ("object_id", models.BigIntegerField()),
                (
                    "previous",
                    models.CharField(
                        choices=[
                            ("pending", "pending"),
                            ("approved", "approved"),
                            ("rejected", "rejected"),
                            ("auto_approved", "auto-approved"),
                        ],
                        help_text="Status before.",
                        max_length=16,
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "pending"),
                            ("approved", "approved"),
                            ("rejected", "rejected"),
                            ("auto_approved", "auto-approved"),
                        ],
                        help_text="Status asked for.",
                        max_length=16,
                    ),
                ),
                (
                    "applied",
                    models.BooleanField(help_text="False: the proposal was already in that state (nothing changed)."),
                ),
                (
                    "via",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("page", "page"),
                            ("api", "API"),
                            ("admin", "admin"),
                            ("command", "command"),
                            ("rule", "rule"),
                        ],
                        help_text="Empty: from before the audit.",
                        max_length=16,
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                (
                    "rule",
                    models.ForeignKey(
                        blank=True,
                        help_text="The rule that auto-approved it.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        to="tagsite.autoapproverule",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-id"],
                "indexes": [models.Index(fields=["kind", "object_id"], name="tagsite_dec_kind_0eed86_idx")],
            },
        ),
    ]
