"""A realistic demo library at scale (100k images, 1M suggestions), written with COPY in minutes.

For benchmarks and load tests: the Danbooru tag list with its real usage skew and aliases,
15-27 tags per image drawn by usage, two WD14 model versions with mostly pending suggestions
(true tags with high confidence, others lower), LLM category proposals and job records.

Columns come from the models' `_meta`: a field another app adds later is filled from its default
(or NULL, or empty text) without a change here; a required field without one is a clear error.
"""

import csv
import hashlib
import io
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.utils import timezone

from tagsite.models import Image, ImageTag, Job, Tag, TagAlias
from tagsite.services.accounts import ensure_moderators_group
from tagsite.services.tags import display_name_for, normalize_tag_name

DEMO_ROOT = "/demo-library/"
DEMO_USER = "demo_moderator"
TAGS_CSV = Path(settings.BASE_DIR).parent / "shared" / "data" / "danbooru_tags.csv"
MODEL_NAMES = ("wd-vit-tagger-v3", "wd-eva02-large-tagger-v3")
LABEL_COUNT = 10_000  # a WD14 model's general + character labels: the most used tags
THUMBNAILS = 32  # distinct demo thumbnails the images share


class DemoRefused(RuntimeError):
    """Seeding would mix demo rows into a real library (or into an earlier demo)."""


class DemoSchemaError(RuntimeError):
    """A model gained a required field the seeder does not know how to fill."""


class CopyTable:
    """COPY rows of a model: the given columns per row, every other concrete field from its default."""

    def __init__(self, model: type[models.Model], given: list[str]):
        fields = {field.attname: field for field in model._meta.concrete_fields}
        unknown = [name for name in given if name not in fields]
        if unknown:
            raise DemoSchemaError(
                f"{model.__name__} has no field {', '.join(unknown)}: update tagsite/services/demo.py"
            )
        self.model = model
        self.json = [i for i, name in enumerate(given) if isinstance(fields[name], models.JSONField)]
        constant = {name: _fill(model, field) for name, field in fields.items() if name not in given}
        constant = {name: value for name, value in constant.items() if value is not _OMIT}
        self.columns = [fields[name].column for name in [*given, *constant]]
        self.constant = tuple(constant.values())

    def copy(self, cursor, rows: Iterable[tuple]) -> int:
        columns = ", ".join(connection.ops.quote_name(column) for column in self.columns)
        count = 0
        with cursor.copy(f"COPY {connection.ops.quote_name(self.model._meta.db_table)} ({columns}) FROM STDIN") as copy:
            for row in rows:
                if self.json:
                    row = list(row)
                    for index in self.json:
                        row[index] = connection.ops.adapt_json_value(row[index], None)
                    row = tuple(row)
                copy.write_row(row + self.constant)
                count += 1
        return count


_OMIT = object()


def _fill(model: type[models.Model], field: models.Field):
    """What a column gets when the seeder does not set it; _OMIT leaves it to the database."""
    if field.primary_key and isinstance(field, models.AutoField) or field.generated:
        return _OMIT
    if getattr(field, "db_default", models.NOT_PROVIDED) is not models.NOT_PROVIDED:
        return _OMIT
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return timezone.now()
    if field.has_default():
        return field.get_db_prep_save(field.get_default(), connection)
    if field.null:
        return None
    if isinstance(field, models.CharField | models.TextField) and field.blank:
        return ""
    raise DemoSchemaError(
        f"{model.__name__}.{field.name} is required and has no default: tell tagsite/services/demo.py what to put there"
    )


def demo_state() -> tuple[int, int]:
    """(real images, demo images) in the database."""
    demo = Image.objects.filter(path__startswith=DEMO_ROOT).count()
    return Image.objects.count() - demo, demo


def seed_demo(
    images: int,
    suggestions: int,
    reset: bool = False,
    force: bool = False,
    seed: int = 9,
    tags_csv: Path = TAGS_CSV,
    report: Callable[[str], None] = print,
) -> dict[str, int]:
    """Write a demo library; returns rows written per table."""
    real, demo = demo_state()
    if real and not force:
        raise DemoRefused(
            f"This database holds {real} real images: seeding would mix demo data into them "
            "(and --reset would delete them). Use a separate database, or --force if you mean it."
        )
    if demo and not reset:
        raise DemoRefused(f"{demo} demo images are already here: use --reset to replace them.")
    started = time.perf_counter()
    step = lambda text: report(f"{time.perf_counter() - started:6.1f}s  {text}")  # noqa: E731
    rng = np.random.default_rng(seed)
    if reset:
        _empty_library()
        step("emptied the library tables")
    plan = _Plan(rng, images, suggestions, tags_csv)
    step(f"planned {len(plan.tag_names)} tags, {plan.image_tag_count} image tags, {plan.suggestion_count} suggestions")
    counts = {}
    with transaction.atomic(), connection.cursor() as cursor:
        counts.update(plan.write(cursor, step))
    _reset_sequences()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    step("vacuumed and analysed")
    return counts


def _empty_library() -> None:
    tables = [Image, Tag, Job, apps.get_model("suggestions", "UnmappedTag")]
    names = ", ".join(connection.ops.quote_name(model._meta.db_table) for model in tables)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


def _reset_sequences() -> None:
    statements = connection.ops.sequence_reset_sql(no_style(), apps.get_models())
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def _read_tags(path: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray, list[list[str]]]:
    """Normalised names, display names, categories, post counts and aliases of the tag list."""
    names, displays, categories, counts, aliases, seen = [], [], [], [], [], set()
    known = set(Tag.DanbooruCategory.values)
    with open(path, newline="", encoding="utf-8") as handle:
        for raw, category, count, alias_text in csv.reader(handle):
            name = normalize_tag_name(raw)
            if not name or len(name) > 255 or name in seen or int(category) not in known:
                continue
            seen.add(name)
            names.append(name)
            displays.append(display_name_for(raw)[:255])
            categories.append(int(category))
            counts.append(max(int(count), 1))
            aliases.append([a for a in alias_text.split(",") if a])
    return names, displays, np.array(categories), np.array(counts, dtype=np.float64), aliases


class _Plan:
    """Every row, decided in memory (numpy), before anything is written."""

    def __init__(self, rng: np.random.Generator, images: int, suggestions: int, tags_csv: Path):
        self.rng = rng
        self.now = timezone.now()
        names, self.displays, self.categories, posts, self.alias_lists = _read_tags(tags_csv)
        self.tag_names = names
        existing = dict(Tag.objects.values_list("name", "id"))
        next_id = (Tag.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
        self.tag_ids = np.empty(len(names), dtype=np.int64)
        self.new_tags = []
        for index, name in enumerate(names):
            if name in existing:
                self.tag_ids[index] = existing[name]
            else:
                self.tag_ids[index] = next_id
                self.new_tags.append(index)
                next_id += 1
        self.image_start = (Image.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
        self.images = images
        # 15-27 distinct tags per image, drawn by real usage (so 1girl is on ~40 % of images).
        weights = posts / posts.sum()
        wanted = rng.integers(15, 28, images)
        draws = rng.choice(len(names), size=(images, 60), p=weights)
        self.image_tags = []
        for row, k in zip(draws, wanted, strict=True):
            unique = np.unique(row)
            self.image_tags.append(unique if len(unique) <= k else rng.choice(unique, k, replace=False))
        self.image_tag_count = sum(len(tags) for tags in self.image_tags)
        # The models' labels: the most used general and character tags.
        labelled = np.flatnonzero(np.isin(self.categories, [0, 4]))
        self.labels = labelled[np.argsort(-posts[labelled], kind="stable")[:LABEL_COUNT]]
        label_weights = posts[self.labels] / posts[self.labels].sum()
        self.is_label = np.zeros(len(names), dtype=bool)
        self.is_label[self.labels] = True
        # Suggestions: the first model saw every image, the second 60 %; mostly the image's own tags.
        shares = np.array([0.6, 0.4]) * suggestions
        self.suggestions = []  # (image index, tag index, model index, confidence)
        for model_index, share in enumerate(shares):
            seen_by = images if model_index == 0 else max(int(images * 0.6), 1)
            per_image = rng.multinomial(int(round(share)), np.full(seen_by, 1 / seen_by))
            for image, count in enumerate(per_image):
                if not count:
                    continue
                own = self.image_tags[image][self.is_label[self.image_tags[image]]]
                true = own[: int(count * 0.7)]
                extra = rng.choice(self.labels, count - len(true) + 4, p=label_weights)
                chosen = list(dict.fromkeys([*true, *extra]))[:count]
                for position, tag in enumerate(chosen):
                    confidence = rng.uniform(0.6, 1.0) if position < len(true) else rng.uniform(0.35, 0.7)
                    self.suggestions.append((image, tag, model_index, round(float(confidence), 4)))
        self.suggestion_count = len(self.suggestions)

    def write(self, cursor, step: Callable[[str], None]) -> dict[str, int]:
        counts = {}
        user = self._moderator()
        image_times = self._image_times()
        counts["tags"] = CopyTable(Tag, ["id", "name", "display_name", "danbooru_category", "created_at"]).copy(
            cursor,
            (
                (int(self.tag_ids[i]), self.tag_names[i], self.displays[i], int(self.categories[i]), self.now)
                for i in self.new_tags
            ),
        )
        counts["aliases"] = self._aliases(cursor)
        step(f"{counts['tags']} tags, {counts['aliases']} aliases")
        counts["images"] = self._images(cursor, image_times)
        step(f"{counts['images']} images")
        counts["image tags"] = CopyTable(ImageTag, ["image_id", "tag_id", "source", "created_at"]).copy(
            cursor,
            (
                (self.image_start + image, int(self.tag_ids[tag]), "file", image_times[image])
                for image, tags in enumerate(self.image_tags)
                for tag in tags
            ),
        )
        cursor.execute(
            f"UPDATE {Tag._meta.db_table} t SET usage_count = c.n FROM (SELECT tag_id, count(*) n FROM "
            f"{ImageTag._meta.db_table} GROUP BY tag_id) c WHERE t.id = c.tag_id"
        )
        step(f"{counts['image tags']} image tags, usage counts")
        counts.update(self._suggestions(cursor, user, image_times))
        step(f"{counts['suggestions']} suggestions, {counts['decisions']} decisions, {counts['mappings']} mappings")
        counts["jobs"], categorisation_jobs = self._jobs(cursor, user)
        counts.update(self._categories(cursor, user, categorisation_jobs))
        step(f"{counts['jobs']} jobs, {counts['category proposals']} category proposals")
        return counts

    def _moderator(self):
        user, created = get_user_model().objects.get_or_create(
            username=DEMO_USER, defaults={"is_staff": True, "email": "demo@example.invalid"}
        )
        if created:
            user.set_unusable_password()
            user.save()
        user.groups.add(ensure_moderators_group())
        return user

    def _image_times(self) -> list:
        """Import times over the last two years, in id order."""
        offsets = np.sort(self.rng.uniform(0, 730 * 86400, self.images))[::-1]
        return [self.now - timedelta(seconds=float(s)) for s in offsets]

    def _aliases(self, cursor) -> int:
        taken = set(self.tag_names) | set(TagAlias.objects.values_list("antecedent", flat=True))
        rows = []
        for index, alias_list in enumerate(self.alias_lists):
            for raw in alias_list:
                antecedent = normalize_tag_name(raw)
                if antecedent and len(antecedent) <= 255 and antecedent not in taken:
                    taken.add(antecedent)
                    rows.append((antecedent, int(self.tag_ids[index]), self.now))
        return CopyTable(TagAlias, ["antecedent", "tag_id", "created_at"]).copy(cursor, rows)

    def _images(self, cursor, image_times: list) -> int:
        self._thumbnails()
        rng = self.rng
        statuses = rng.choice(["ok", "missing", "failed", "duplicate"], self.images, p=[0.96, 0.02, 0.01, 0.01])
        ratings = rng.choice(["general", "sensitive", "questionable", "explicit"], self.images, p=[0.5, 0.3, 0.1, 0.1])
        sizes = rng.integers(200_000, 6_000_000, self.images)
        widths = rng.choice([1024, 1200, 2048, 3000], self.images)
        given = ["id", "path", "sha256", "size", "mtime", "format", "width", "height", "rating", "thumbnail"]
        given += ["status", "error", "created_at", "updated_at"]

        def rows():
            for i in range(self.images):
                pk = self.image_start + i
                failed = statuses[i] == "failed"
                yield (
                    pk,
                    f"{DEMO_ROOT}{pk // 1000:03d}/{pk:07d}.jpg",
                    "" if failed else hashlib.sha256(f"demo-{pk}".encode()).hexdigest(),
                    int(sizes[i]),
                    image_times[i].timestamp(),
                    "" if failed else "JPEG",
                    None if failed else int(widths[i]),
                    None if failed else int(widths[i]) * 3 // 4,
                    ratings[i],
                    "" if failed else f"thumbs/demo/{pk % THUMBNAILS:02d}.jpg",
                    str(statuses[i]),
                    "image file is truncated" if failed else "",
                    image_times[i],
                    image_times[i],
                )

        return CopyTable(Image, given).copy(cursor, rows())

    def _thumbnails(self) -> None:
        from PIL import Image as PILImage

        folder = Path(settings.MEDIA_ROOT) / "thumbs" / "demo"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(THUMBNAILS):
            path = folder / f"{index:02d}.jpg"
            if not path.exists():
                hue = PILImage.new("HSV", (320, 240), (index * 8, 120, 200)).convert("RGB")
                buffer = io.BytesIO()
                hue.save(buffer, "JPEG", quality=80)
                path.write_bytes(buffer.getvalue())

    def _suggestions(self, cursor, user, image_times: list) -> dict[str, int]:
        MLModelVersion = apps.get_model("suggestions", "MLModelVersion")
        TagMapping = apps.get_model("suggestions", "TagMapping")
        ImageRun = apps.get_model("suggestions", "ImageRun")
        TagSuggestion = apps.get_model("suggestions", "TagSuggestion")
        versions = []
        for name in MODEL_NAMES:
            version, _ = MLModelVersion.objects.update_or_create(
                name=name,
                version="demo",
                defaults={
                    "model_file": f"/demo-models/{name}/model.onnx",
                    "labels_file": f"/demo-models/{name}/selected_tags.csv",
                    "sha256": hashlib.sha256(name.encode()).hexdigest(),
                    "input_size": 448,
                    "label_count": LABEL_COUNT,
                    "source": "seed_demo",
                },
            )
            versions.append(version)
        mapped = set(TagMapping.objects.filter(source="danbooru").values_list("external_tag", flat=True))
        mappings = CopyTable(TagMapping, ["source", "external_tag", "tag_id", "created_at"]).copy(
            cursor,
            (
                ("danbooru", self.tag_names[i], int(self.tag_ids[i]), self.now)
                for i in self.labels
                if self.tag_names[i] not in mapped
            ),
        )
        runs = sorted({(image, model) for image, _, model, _ in self.suggestions})
        CopyTable(ImageRun, ["image_id", "model_version_id", "created_at"]).copy(
            cursor, ((self.image_start + image, versions[model].pk, image_times[image]) for image, model in runs)
        )
        # The oldest 14 % of images are reviewed (true tags approved, most others rejected); the rest wait.
        reviewed_below = int(self.images * 0.14)
        start = (TagSuggestion.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
        statuses, decided = [], []
        for number, (image, _, _, confidence) in enumerate(self.suggestions):
            if image >= reviewed_below:
                statuses.append("pending")
                continue
            status = "approved" if confidence >= 0.6 or self.rng.random() < 0.2 else "rejected"
            statuses.append(status)
            decided.append((start + number, status, image_times[image] + timedelta(days=3)))
        given = ["id", "image_id", "tag_id", "model_version_id", "external_tag", "category", "confidence", "status"]
        given += ["created_at", *_decision_fields(TagSuggestion)]
        producers = [_producer(TagSuggestion, version=version) for version in versions]
        given += ["producer_id"] if producers[0] else []

        def rows():
            for number, (image, tag, model, confidence) in enumerate(self.suggestions):
                status = statuses[number]
                yield (
                    start + number, self.image_start + image, int(self.tag_ids[tag]), versions[model].pk,
                    self.tag_names[tag], int(self.categories[tag]), confidence, status,
                    image_times[image] + timedelta(minutes=5),
                    *_decided(TagSuggestion, status, user, image_times[image] + timedelta(days=3)),
                    *((producers[model],) if producers[model] else ()),
                )  # fmt: skip

        suggestions = CopyTable(TagSuggestion, given).copy(cursor, rows())
        decisions = _audit(cursor, TagSuggestion, user, decided)
        return {"mappings": mappings, "image runs": len(runs), "suggestions": suggestions, "decisions": decisions}

    def _jobs(self, cursor, user) -> tuple[int, list[int]]:
        """Finished imports, tagging runs and categorisation runs; some with their 200 first errors."""
        start = (Job.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
        kinds = ["import_images", "suggest_tags", "llm_categorize"]
        rows = []
        for number in range(min(300, self.images)):  # one job per image in tiny demos
            kind = kinds[number % 3]
            failures = int(self.rng.choice([0, 0, 0, 3, 200]))
            errors = [
                {"item": f"{DEMO_ROOT}{number:03d}/broken{e:04d}.jpg", "error": "image file is truncated"}
                for e in range(failures)
            ]
            when = self.now - timedelta(hours=300 - number)
            total = int(self.rng.integers(100, 5000))
            rows.append(
                (
                    start + number, kind, "failed" if failures == 200 else "succeeded",
                    {"path": f"{DEMO_ROOT}{number:03d}"} if kind == "import_images" else {"limit": total},
                    total, total, {"imported": total - failures, "failed": failures}, errors, failures,
                    user.pk, when, when, when + timedelta(minutes=7),
                )
            )  # fmt: skip
        given = ["id", "kind", "status", "params", "current", "total", "counts", "errors", "error_count"]
        given += ["created_by_id", "created_at", "started_at", "finished_at"]
        count = CopyTable(Job, given).copy(cursor, rows)
        return count, [row[0] for row in rows if row[1] == "llm_categorize"]

    def _categories(self, cursor, user, jobs: list[int]) -> dict[str, int]:
        """LLM proposals for the 30,000 most used tags: two thirds pending; accepted ones categorise their tag."""
        ExtendedCategory = apps.get_model("categorization", "ExtendedCategory")
        CategoryProposal = apps.get_model("categorization", "CategoryProposal")
        categories = list(ExtendedCategory.objects.values_list("id", flat=True))
        if not categories:
            return {"category proposals": 0}
        busy = set(CategoryProposal.objects.filter(status="pending").values_list("tag_id", flat=True))
        candidates = [i for i in self.new_tags[:30_000] if int(self.tag_ids[i]) not in busy]
        chosen = self.rng.choice(categories, len(candidates))
        accept = "approved" if "approved" in CategoryProposal.Status.values else "accepted"
        states = self.rng.choice(["pending", accept, "rejected"], len(candidates), p=[0.67, 0.25, 0.08])
        model, prompt = "qwen2.5-7b-instruct", "v1"
        producer = _producer(CategoryProposal, name=model, prompt_version=prompt)
        job = lambda: int(self.rng.choice(jobs)) if jobs else None  # noqa: E731
        given = ["tag_id", "category_id", "confidence", "status", "job_id", "created_at"]
        given += [*_decision_fields(CategoryProposal), *(["producer_id"] if producer else [])]
        given += [name for name in ("model", "prompt_version") if _has(CategoryProposal, name)]
        named = [
            value for name, value in (("model", model), ("prompt_version", prompt)) if _has(CategoryProposal, name)
        ]
        proposals = CopyTable(CategoryProposal, given).copy(
            cursor,
            (
                (
                    int(self.tag_ids[i]), int(category), round(float(self.rng.uniform(0.5, 1.0)), 3), str(state),
                    job(), self.now, *_decided(CategoryProposal, str(state), user, self.now),
                    *((producer,) if producer else ()), *named,
                )
                for i, category, state in zip(candidates, chosen, states, strict=True)
            ),
        )  # fmt: skip
        accepted = [
            (int(self.tag_ids[i]), int(category))
            for i, category, state in zip(candidates, chosen, states, strict=True)
            if state == accept
        ]
        return {"category proposals": proposals, "categorised tags": self._categorise(cursor, accepted)}

    def _categorise(self, cursor, pairs: list[tuple[int, int]]) -> int:
        """Where a tag's category lives: `categorization.TagCategory`, or the older `Tag.extended_category`."""
        try:
            TagCategory = apps.get_model("categorization", "TagCategory")
        except LookupError:
            cursor.execute("CREATE TEMP TABLE demo_category (tag_id bigint, category_id bigint) ON COMMIT DROP")
            with cursor.copy("COPY demo_category FROM STDIN") as copy:
                for pair in pairs:
                    copy.write_row(pair)
            cursor.execute(
                f"UPDATE {Tag._meta.db_table} t SET extended_category_id = d.category_id FROM demo_category d "
                "WHERE t.id = d.tag_id"
            )
            return len(pairs)
        return CopyTable(TagCategory, ["tag_id", "category_id"]).copy(cursor, pairs)


def _has(model: type[models.Model], name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def _decision_fields(model: type[models.Model]) -> list[str]:
    """Who decided a proposal and when: the review core's fields, or the app's older ones."""
    for who, when, *via in (
        ("decided_by_id", "decided_at", "via"),
        ("reviewed_by_id", "reviewed_at"),
        ("reviewer_id", "reviewed_at"),
    ):
        if _has(model, who.removesuffix("_id")):
            return [who, when, *[name for name in via if _has(model, name)]]
    return []


def _decided(model: type[models.Model], status: str, user, when) -> tuple:
    """Values for `_decision_fields`: empty for a pending proposal."""
    fields = _decision_fields(model)
    if status == "pending":
        return tuple("" if name == "via" else None for name in fields)
    return tuple({"via": "page"}.get(name, user.pk if name.endswith("_id") else when) for name in fields)


def _producer(model: type[models.Model], version=None, name: str = "", prompt_version: str = "") -> int | None:
    """The `Producer` row a proposal names, where the review core has them (None before it)."""
    if not _has(model, "producer"):
        return None
    if version is not None and getattr(version, "producer_id", None):
        return version.producer_id
    Producer = model._meta.get_field("producer").related_model
    kind = "onnx_tagger" if version is not None else "chat"
    producer, _ = Producer.objects.get_or_create(
        kind=kind, name=version.name if version else name, version=version.version if version else "",
        prompt_version=prompt_version,
    )  # fmt: skip
    return producer.pk


def _audit(cursor, model: type[models.Model], user, decided: list[tuple[int, str, object]]) -> int:
    """One audit row per decided proposal: the review core's `Decision`, or the older `ReviewDecision`."""
    try:
        Decision = apps.get_model("tagsite", "Decision")
    except LookupError:
        ReviewDecision = apps.get_model("suggestions", "ReviewDecision")
        return CopyTable(ReviewDecision, ["suggestion_id", "status", "user_id", "via", "created_at"]).copy(
            cursor, ((pk, status, user.pk, "page", when) for pk, status, when in decided)
        )
    kind = model._meta.model_name
    given = ["kind", "object_id", "previous", "status", "applied", "user_id", "via", "created_at"]
    return CopyTable(Decision, given).copy(
        cursor, ((kind, pk, "pending", status, True, user.pk, "page", when) for pk, status, when in decided)
    )
