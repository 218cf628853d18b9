"""The `embed` role that tagsite's 0004 put on LM Studio's default address, untouched since, is removed: with no
row the role uses the local MiniLM model (tagsite.ai.registry.OFFLINE_DEFAULTS), so dedupe works offline."""

from django.db import migrations


def use_local_model(apps, schema_editor):
    LLMRole = apps.get_model("tagsite", "LLMRole")
    LLMRole.objects.filter(
        role="embed", model="", endpoint__name="local", endpoint__base_url="http://127.0.0.1:1234/v1"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("dedupe", "0001_initial"), ("tagsite", "0004_llm_registry")]

    operations = [migrations.RunPython(use_local_model, migrations.RunPython.noop)]
