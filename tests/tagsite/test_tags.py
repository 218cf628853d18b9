import pytest

from tagsite.models import Image, ImageTag, Tag, TagAlias
from tagsite.services import tags as tag_service
from tagsite.services.tags import TagRuleError, normalize_tag_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Blue Eyes", "blue_eyes"),
        ("  blue-eyes ", "blue_eyes"),
        ("BLUE__EYES", "blue_eyes"),
        ("blue \t eyes", "blue_eyes"),
        ("ＢＬＵＥ　ＥＹＥＳ", "blue_eyes"),  # full-width letters and space (NFKC)
        ('"smile",', "smile"),
        ("'long hair.'", "long_hair"),
        ("saber_(fate)", "saber_(fate)"),
        ("^_^", "^_^"),
        ("0_0", "0_0"),
        ("o_o", "o_o"),
        (":d", ":d"),
        (";)", ";)"),
        ("-_-", "-_-"),
        (">_<", ">_<"),
        ("", ""),
    ],
)
def test_normalize_tag_name(raw, expected):
    assert normalize_tag_name(raw) == expected


@pytest.fixture
def image(db, tmp_path):
    return Image.objects.create(path=str(tmp_path / "a.jpg"), sha256="a" * 64)


@pytest.mark.django_db
def test_alias_rewrites_names_on_the_way_in(image):
    tag_service.create_alias("blond hair", "blonde_hair")
    tag_service.add_tags([image], ["Blond-Hair"])
    assert list(image.tags.values_list("name", flat=True)) == ["blonde_hair"]
    assert not Tag.objects.filter(name="blond_hair").exists()


@pytest.mark.django_db
def test_new_alias_repoints_older_aliases_instead_of_chaining():
    tag_service.create_alias("a", "b")
    tag_service.create_alias("b", "c")
    assert dict(TagAlias.objects.values_list("antecedent", "tag__name")) == {"a": "c", "b": "c"}


@pytest.mark.django_db
def test_alias_to_an_alias_follows_it_to_the_end():
    tag_service.create_alias("b", "c")
    alias = tag_service.create_alias("a", "b")
    assert alias.tag.name == "c"


@pytest.mark.django_db
def test_alias_cycle_is_rejected():
    tag_service.create_alias("a", "b")
    with pytest.raises(TagRuleError):
        tag_service.create_alias("b", "a")
    with pytest.raises(TagRuleError):
        tag_service.create_alias("c", "C")


@pytest.mark.django_db
def test_alias_merges_an_existing_tag_with_its_images(image):
    tag_service.add_tags([image], ["kitty"])
    tag_service.create_alias("kitty", "cat")
    assert list(image.tags.values_list("name", flat=True)) == ["cat"]
    assert Tag.objects.get(name="cat").usage_count == 1


@pytest.mark.django_db
def test_implied_tags_are_added_with_their_parents(image):
    tag_service.create_implication("cat_ears", "animal_ears")
    tag_service.create_implication("animal_ears", "animal_features")
    tag_service.add_tags([image], ["cat ears"], source=ImageTag.Source.MANUAL)
    sources = dict(image.image_tags.values_list("tag__name", "source"))
    assert sources == {"cat_ears": "manual", "animal_ears": "implied", "animal_features": "implied"}


@pytest.mark.django_db
def test_new_implication_applies_to_images_already_tagged(image):
    tag_service.add_tags([image], ["cat_ears"])
    tag_service.create_implication("cat_ears", "animal_ears")
    assert image.tags.filter(name="animal_ears").exists()


@pytest.mark.django_db
def test_implication_cycle_is_rejected():
    tag_service.create_implication("a", "b")
    tag_service.create_implication("b", "c")
    with pytest.raises(TagRuleError):
        tag_service.create_implication("c", "a")
    with pytest.raises(TagRuleError):
        tag_service.create_implication("a", "A")


@pytest.mark.django_db
def test_search_all_none_any(tmp_path):
    images = {}
    for name, tags in {"1": ["cat", "dog"], "2": ["cat"], "3": ["dog", "bird"], "4": ["fish"]}.items():
        images[name] = Image.objects.create(path=str(tmp_path / name), sha256=name * 64)
        tag_service.add_tags([images[name]], tags)

    def found(*args):
        return sorted(image.path.rsplit("/", 1)[1] for image in tag_service.search_images(*args))

    assert found(["cat"]) == ["1", "2"]
    assert found(["cat", "dog"]) == ["1"]
    assert found(["cat"], ["dog"]) == ["2"]
    assert found([], [], ["bird", "fish"]) == ["3", "4"]
    assert found(*tag_service.parse_query("dog -cat ~bird ~fish")) == ["3"]


@pytest.mark.django_db
def test_autocomplete_by_prefix_and_alias(tmp_path):
    image = Image.objects.create(path=str(tmp_path / "x"), sha256="x" * 64)
    tag_service.add_tags([image], ["blue_eyes", "blue_hair"])
    tag_service.create_alias("azure_eyes", "blue_eyes")
    assert [tag.name for tag in tag_service.autocomplete("Blue")] == ["blue_eyes", "blue_hair"]
    assert [tag.name for tag in tag_service.autocomplete("azu")] == ["blue_eyes"]


def test_query_prefixes_apply_only_to_names():
    assert tag_service.parse_query("-_- cat -hat ~dog ~_~") == (["-_-", "cat", "~_~"], ["hat"], ["dog"])


@pytest.mark.django_db
def test_tags_match_by_the_beginnings_of_their_words():
    tag_service.get_or_create_tags(["long_hair", "blue_eyes", "Küste", "sky", "skirt", "^_^", "hatsune_miku_(cosplay)"])

    def found(query):
        return sorted(Tag.objects.filter(tag_service.tags_matching(query)).values_list("name", flat=True))

    assert found("hair") == ["long_hair"]
    assert found("SK") == ["skirt", "sky"]
    assert found("blue ey") == found("blue_ey") == ["blue_eyes"]
    assert found("küs") == ["küste"]
    assert found("mik cos") == ["hatsune_miku_(cosplay)"]
    assert found("air") == []  # word beginnings, not any substring
    assert found("^_^") == ["^_^"]  # no letters: names containing it
    assert found("it's") == []  # quotes never reach the query syntax


@pytest.mark.django_db
def test_a_word_search_counts_its_matches_from_the_index():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table: make the planner show what it can use,
        cursor.execute("SET LOCAL enable_indexscan = off")  # not a walk of the usage order it may pick by chance
    assert "tag_words" in Tag.objects.filter(tag_service.tags_matching("sk")).values("pk").explain()
