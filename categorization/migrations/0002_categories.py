from django.db import migrations

# Seed 000's 22 extended categories: (code, description, group). The name is the code without its number.
CATEGORIES = [
    ("00_Subject_Count", "Count & Gender", "identity"),
    ("01_Body_Physique", "Body traits", "identity"),
    ("02_Body_Hair", "Hair properties", "identity"),
    ("03_Body_Face", "Eyes & face", "identity"),
    ("04_Body_Genitalia", "NSFW anatomy", "identity"),
    ("05_Attire_Main", "Main clothing", "context"),
    ("06_Attire_Inner", "Underwear/swimwear", "context"),
    ("07_Attire_Legwear", "Socks & hosiery", "context"),
    ("08_Attire_Acc", "Accessories", "context"),
    ("09_Action", "Active verbs", "context"),
    ("10_Pose", "Body position", "context"),
    ("11_Expression", "Emotions", "context"),
    ("12_Sexual_Act", "NSFW interactions", "context"),
    ("13_Object", "Props", "context"),
    ("14_Setting", "Location/background", "context"),
    ("15_Framing", "Camera angle", "technical"),
    ("16_Focus", "Part focus", "technical"),
    ("17_Style_Art", "Art style", "technical"),
    ("18_Style_Tech", "Visual effects", "technical"),
    ("19_Meta_Attributes", "Metadata", "technical"),
    ("20_Meta_Text", "Text & UI", "technical"),
    ("21_Status", "State of being", "context"),
]


def create_categories(apps, schema_editor):
    ExtendedCategory = apps.get_model("categorization", "ExtendedCategory")
    for code, description, group in CATEGORIES:
        ExtendedCategory.objects.update_or_create(
            code=code,
            defaults={"name": code.split("_", 1)[1].replace("_", " "), "description": description, "group": group},
        )


def delete_categories(apps, schema_editor):
    apps.get_model("categorization", "ExtendedCategory").objects.filter(code__in=[c[0] for c in CATEGORIES]).delete()


class Migration(migrations.Migration):
    dependencies = [("categorization", "0001_initial")]

    operations = [migrations.RunPython(create_categories, delete_categories)]
