"""A custom theme model: any ONNX with its own label file, its labels mapped to internal tags under its own source."""

import io

import pytest
from django.core.management import call_command

from suggestions import services
from suggestions.models import MLModelVersion, TagMapping, TagSuggestion, UnmappedTag
from tagsite.services.tags import get_or_create_tags
from tests.suggestions.conftest import add_image
from tests.suggestions.wd14 import build_theme_model

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def suggested(image) -> dict[str, float]:
    return dict(TagSuggestion.objects.filter(image=image).values_list("tag__name", "confidence"))


@pytest.mark.django_db
def test_a_custom_theme_model_suggests_its_mapped_internal_tags(models_dir, tmp_path, settings):
    folder = build_theme_model(tmp_path / "theme-src")
    call_command("install_model", "theme", "--from", str(folder), "--kind", "custom", stdout=io.StringIO())
    model = MLModelVersion.objects.get(name="theme")
    assert (model.kind, model.label_source, model.input_size, model.label_count) == ("custom", "theme", 224, 5)
    assert model.labels_file.endswith("/labels.csv")

    get_or_create_tags(["sunset", "wrong"])
    mappings = tmp_path / "theme.csv"
    mappings.write_text("danbooru_tag,internal_tag_title,action\nWarm Light,Sunset,map\nFilm Grain,,ignore\n")
    out = io.StringIO()
    call_command("import_tag_mappings", str(mappings), "--source", "theme", stdout=out)
    assert "2 created" in out.getvalue()
    services.set_mapping("danbooru", "Warm Light", get_or_create_tags(["wrong"])["wrong"])  # another source

    settings.SUGGESTIONS_UNMAPPED = "worklist"
    red, green = add_image(tmp_path / "lib", "red.png", RED), add_image(tmp_path / "lib", "green.png", GREEN)
    counts = services.suggest_tags(model, services.images_to_tag(model))
    assert counts == {"images": 2, "suggestions": 1, "held": 1, "failed": 0}
    assert suggested(red) == {"sunset": 1.0}  # Film Grain (0.7) is ignored, Night Sky (0.1) is below 0.35
    assert suggested(green) == {}
    waiting = services.worklist("theme").get()
    assert (waiting.external_tag, waiting.waiting) == ("Lush Greenery", 1)
    services.resolve_worklist([waiting], "map", "forest")
    assert suggested(green) == {"forest": 1.0}
    assert TagMapping.objects.get(source="theme", external_tag="Lush Greenery").tag.name == "forest"

    settings.SUGGESTIONS_UNMAPPED = "create"
    blue = add_image(tmp_path / "lib", "blue.png", BLUE)
    services.suggest_tags(model, [blue])
    assert suggested(blue) == {"deep_sea": 1.0}  # a tag of the label's normalised name
    assert TagMapping.objects.get(source="theme", external_tag="Deep Sea").tag.name == "deep_sea"
    assert not UnmappedTag.objects.exists()
    assert set(TagSuggestion.objects.values_list("external_tag", flat=True)) == {
        "Warm Light",
        "Lush Greenery",
        "Deep Sea",
    }


@pytest.mark.django_db
def test_a_label_file_may_name_its_categories(models_dir, tmp_path):
    folder = build_theme_model(tmp_path / "theme-src")
    labels = folder / "labels.csv"
    labels.write_text(
        "name,category\nWarm Light,general\nLush Greenery,Character\nDeep Sea,4\nFilm Grain,\nNight Sky,rating\n"
    )
    model = services.install_model("theme", folder, kind=MLModelVersion.Kind.CUSTOM)
    assert services.read_labels(model.labels_file).categories.tolist() == [0, 4, 4, 0, 9]
    labels.write_text(labels.read_text().replace("rating", "mood"))
    with pytest.raises(services.ModelInstallError, match="unknown category 'mood'"):
        services.install_model("theme", folder, kind=MLModelVersion.Kind.CUSTOM, version="v2")
