"""The VLM stages: a title, caption, keywords and description per image, each from its registry role under a
prompt profile, validated, re-asked once, and stored as proposals for review (texts as TextProposals, keywords as
tag suggestions through the same mappings as tagger labels).

Requests run on worker threads, as many as the endpoints have slots (each request also holds one of its server's
cross-process slots), the stages of one image side by side; the image is decoded, EXIF-rotated, downscaled and
encoded once for all its stages. Results are stored by the calling thread, image by image, as they complete.
"""

import json
import logging
import os
import queue
import re
import threading
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import QuerySet
from PIL import Image as PILImage

from suggestions.models import STAGES, TEXT_FIELDS, MLModelVersion, PromptProfile, TagSuggestion, TextProposal
from suggestions.profiles import BUILTIN_PROFILES, ensure_builtin_profiles
from suggestions.services.review import Candidate
from suggestions.services.run import propose_labels
from tagsite.ai.base import ChatBackend, EndpointConfig, LLMError, LLMInvalidOutput, LLMTruncated
from tagsite.ai.openai_compat import jpeg_bytes
from tagsite.ai.registry import CHECK_SCHEMA, check_endpoint, client_for, resolve_role
from tagsite.imaging import ImageDecodeError, open_image
from tagsite.models import AutoApproveRule, Image, ImageStage, LLMEndpoint, Producer, Proposal
from tagsite.review import services as review
from tagsite.services.ingest import record_stages
from tagsite.services.jobs import JobProgress, describe_error
from tagsite.services.tags import normalize_tag_name
from tagsite.services.writeback import WriteOptions, audit_folder, write_images

log = logging.getLogger(__name__)
IMAGE_STAGE = "describe"
RULE_NAME = "describe_images"
LATIN_LANGUAGES = {"en", "de", "fr", "es", "it", "nl", "pt", "sv", "da", "no", "nb", "fi", "pl", "cs", "ro", "hu"}
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "nl": "Dutch"}
TEXT_BOUNDS = {"title": (2, 120), "caption": (10, None), "description": (20, None)}
HIGHLIGHTS = 20
CHECK_IMAGE = jpeg_bytes(PILImage.new("RGB", (32, 32), (220, 30, 30)), 32)  # the preflight's image round trip


class StageFailed(LLMError):
    """A stage whose answer was still unusable after the re-ask."""


@dataclass
class DescribeOptions:
    """What a run does; the command's options and the task's params. Endpoint fields override every stage's
    resolved endpoint; `models` and `roles` are per stage."""

    profile: str = "default"
    stages: tuple[str, ...] = STAGES
    roles: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    model: str = ""
    base_url: str = ""
    backend: str = ""
    api_key: str = ""
    timeout: float | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_keywords: int | None = None
    max_workers: int | None = None
    long_side: int = 1280
    two_step: bool = False
    overwrite: bool = False
    dry_run: bool = False  # ask and audit, store nothing
    auto_approve: bool = False  # approve this run's proposals by the `describe_images` rule
    write_metadata: bool = True  # with auto_approve: write the files (False: --no-meta)
    backup_originals: bool = False
    overwrite_metadata: bool = False

    def __post_init__(self):
        unknown = set(self.stages) - set(STAGES) or set(self.models) - set(STAGES) or set(self.roles) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage {sorted(unknown)[0]!r}: stages are {', '.join(STAGES)}")
        self.stages = tuple(stage for stage in STAGES if stage in self.stages)  # keep the canonical order


@dataclass
class StageResult:
    stage: str
    model: str = ""
    value: str | list[str] | None = None
    error: str = ""
    attempts: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error


# Endpoints, producers, schemas and prompts


def stage_config(stage: str, options: DescribeOptions) -> EndpointConfig:
    """The endpoint a stage uses: its role's (or `--<stage>-role`'s) registry endpoint, or the command line's base URL,
    with the command line's model and sampling overrides on top."""
    if options.base_url:
        config = EndpointConfig(name="command-line", kind=options.backend or "openai", base_url=options.base_url)
    else:
        config = resolve_role(options.roles.get(stage, stage))
    changes = {
        "model": options.models.get(stage) or options.model or config.model,
        "api_key": options.api_key or config.api_key,
        "timeout": options.timeout or config.timeout,
        "max_tokens": options.max_new_tokens or config.max_tokens,
        "temperature": config.temperature if options.temperature is None else options.temperature,
        "top_p": config.top_p if options.top_p is None else options.top_p,
    }
    if options.backend:
        changes["kind"] = options.backend
    if not changes["model"]:
        raise LLMError(f"stage {stage}: no model; set the endpoint's model or pass --model / --{stage}-model")
    return replace(config, **changes)


def text_producer(config: EndpointConfig, profile: PromptProfile, create: bool = True) -> Producer | None:
    """The texts' producer (model + profile version); without `create` (a dry run) only an existing one."""
    key = {"kind": Producer.Kind.CHAT, "name": config.model, "version": "", "prompt_version": profile.label}
    if not create:
        return Producer.objects.filter(**key).first()
    endpoint = LLMEndpoint.objects.filter(name=config.name).first()
    producer, _ = Producer.objects.get_or_create(**key, defaults={"endpoint": endpoint})
    return producer


def keyword_model(config: EndpointConfig, profile: PromptProfile, create: bool = True) -> MLModelVersion | None:
    """Keywords are tag suggestions, so their producer is a model version (kind VLM, never active as a tagger)
    whose labels go through the `vlm` mappings. Without `create` (a dry run) only an existing one."""
    if not create:
        return MLModelVersion.objects.filter(name=config.model, version=profile.label).first()
    version, _ = MLModelVersion.objects.get_or_create(
        name=config.model,
        version=profile.label,
        defaults={
            "kind": MLModelVersion.Kind.VLM, "label_source": "vlm", "model_file": "", "labels_file": "", "sha256": "",
            "input_size": 0, "label_count": 0, "active": False, "source": f"{config.name} {config.base_url}",
        },
    )  # fmt: skip
    return version


def get_profile(name: str) -> PromptProfile:
    """A profile by name; a built-in one that was deleted comes back as shipped."""
    if name in BUILTIN_PROFILES:
        ensure_builtin_profiles()
    return PromptProfile.objects.get(name=name)


def max_keywords(profile: PromptProfile, options: DescribeOptions) -> int:
    return max(1, options.max_keywords or profile.max_keywords)


def stage_schema(stage: str, profile: PromptProfile, limit: int) -> dict:
    if stage == "keywords":
        items = {"type": "string", "minLength": 1, "maxLength": 64}
        prop = {"type": "array", "items": items, "minItems": 1, "maxItems": limit}
    else:
        low, high = TEXT_BOUNDS[stage]
        high = high or (profile.caption_max_chars if stage == "caption" else profile.description_max_chars)
        prop = {"type": "string", "minLength": low, "maxLength": high}
    return {"type": "object", "properties": {stage: prop}, "required": [stage], "additionalProperties": False}


def system_prompt(profile: PromptProfile) -> str:
    language = LANGUAGE_NAMES.get(profile.language, profile.language)
    tone = f" Tone: {profile.tone}." if profile.tone else ""
    return (
        f"You write metadata for the images of a photo library. Write in {language}.{tone} "
        "Describe only what is visible. Answer with JSON only."
    )


def stage_prompt(stage: str, profile: PromptProfile, limit: int, caption: str = "") -> str:
    prompt = getattr(profile, f"{stage}_prompt")
    if stage == "keywords":
        prompt += f" At most {limit} keywords."
    if caption:
        prompt += f"\nThe image's caption, for context: {caption}"
    return prompt


# Checking answers


# Short words every sentence of a language has; a text with more of another language's (that its own language
# does not share) than of its own is in that language. Keywords rarely have any, so they pass.
FUNCTION_WORDS = {
    "en": {"the", "a", "an", "and", "of", "in", "on", "with", "is", "are", "at", "by", "from", "to", "its"},
    "de": {"der", "die", "das", "und", "ein", "eine", "einem", "einer", "einen", "mit", "auf", "ist", "im", "von",
           "vor", "den", "dem", "des", "sich", "zu"},
    "fr": {"le", "la", "les", "un", "une", "et", "des", "du", "avec", "sur", "est", "dans", "au", "aux", "sous"},
    "es": {"el", "la", "los", "las", "un", "una", "y", "con", "en", "es", "del", "sobre", "por", "al"},
    "it": {"il", "lo", "la", "gli", "le", "un", "una", "e", "con", "di", "del", "della", "su", "nel", "sul"},
    "nl": {"de", "het", "een", "en", "met", "op", "is", "van", "in", "bij", "voor"},
}  # fmt: skip


def wrong_language(text: str, language: str) -> str:
    """Why a text is not in a Latin-script language it should be in: most of its letters are of another script,
    or (en, de, fr, es, it, nl) it has at least two function words of another of those and more of them than of
    its own. Other languages are not checked."""
    if language not in LATIN_LANGUAGES:
        return ""
    wrong = f"the answer is not in {LANGUAGE_NAMES.get(language, language)}"
    letters = [char for char in text if char.isalpha()]
    foreign = sum(1 for char in letters if not unicodedata.name(char, "").startswith("LATIN"))
    if letters and foreign / len(letters) > 0.3:
        return wrong
    if own := FUNCTION_WORDS.get(language):
        words = re.findall(r"\w+", text.lower())
        hits = sum(word in own for word in words)
        for other, common in FUNCTION_WORDS.items():
            theirs = sum(word in common - own for word in words)
            if other != language and theirs >= 2 and theirs > hits:
                return f"{wrong} (it reads as {LANGUAGE_NAMES[other]})"
    return ""


def clean_keywords(values, limit: int) -> tuple[list[str], list[str]]:
    """Keywords without blanks, non-strings and duplicates (by normalised name), at most `limit`; and notes."""
    seen, kept = set(), []
    for value in values if isinstance(values, list) else []:
        if not isinstance(value, str) or not (text := " ".join(value.split())[:64]):
            continue
        key = normalize_tag_name(text)
        if key and key not in seen:
            seen.add(key)
            kept.append(text)
    notes = [f"kept the first {limit} of {len(kept)} keywords"] if len(kept) > limit else []
    return kept[:limit], notes


def read_answer(stage: str, data, profile: PromptProfile, limit: int) -> tuple[str | list[str], list[str], str]:
    """(value, notes, problem) from a schema-valid answer; a problem means re-ask."""
    if stage == "keywords":
        keywords, notes = clean_keywords(data.get("keywords"), limit)
        if not keywords:
            return [], notes, "the keyword list is empty"
        problem = wrong_language(" ".join(keywords), profile.language)
        return keywords, notes, problem
    text = " ".join(str(data[stage]).split())
    if len(text) < TEXT_BOUNDS[stage][0]:
        return text, [], f"the {stage} is empty"
    return text, [], wrong_language(text, profile.language)


def shorten(text: str, limit: int = 300) -> str:
    """A validation message quotes the answer: a 5,000-character one would fill the job page."""
    text = re.sub(r"'([^']{40})[^']{20,}'", r"'\1…'", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ask_validated(
    client: ChatBackend,
    system: str,
    prompt: str,
    schema: dict,
    image: bytes,
    read: Callable[[dict], tuple[object, list[str], str]],
    *,
    name: str,
    salvage: Callable[[object], tuple[object, list[str]] | None] = lambda data: None,
) -> tuple[object, list[str], int]:
    """Ask for a JSON answer about an image; `read(data)` gives (value, notes, problem). An answer that is not JSON,
    off the schema, cut off, or has a problem is asked again once, saying what was wrong; `salvage(data)` may keep
    a usable part of an off-schema answer. Returns (value, notes, attempts); raises StageFailed after two."""
    problem = ""
    for attempt in (1, 2):
        asked = prompt if not problem else f"{prompt}\n\nYour last answer was not usable: {problem}. Answer again."
        try:
            data = client.chat_json(system, asked, schema, name=name, images=[image])
        except LLMTruncated:
            problem = "it was cut off at the token limit; answer shorter"
            continue
        except LLMInvalidOutput as exc:
            if (kept := salvage(exc.data)) is not None:
                return kept[0], kept[1], attempt
            problem = shorten(str(exc))
            continue
        except LLMError as exc:  # the server's, after the client's retries: how many times the stage was asked
            exc.attempts = attempt
            raise
        value, notes, problem = read(data)
        if not problem:
            return value, notes, attempt
    failed = StageFailed(f"{problem} (asked twice)")
    failed.attempts = 2
    raise failed


def ask_stage(
    client: ChatBackend, stage: str, image: bytes, profile: PromptProfile, limit: int, caption: str = ""
) -> StageResult:
    """One stage of one image; a server error (after the client's retries) or a second unusable answer is its
    error, with the attempts and seconds it took."""

    def salvage(data):  # e.g. 500 keywords: keep the first `limit`
        if stage != "keywords" or not isinstance(data, dict):
            return None
        keywords, notes = clean_keywords(data.get("keywords"), limit)
        return (keywords, notes) if keywords and not wrong_language(" ".join(keywords), profile.language) else None

    result = StageResult(stage, model=client.config.model)
    started = time.monotonic()
    try:
        result.value, result.notes, result.attempts = ask_validated(
            client, system_prompt(profile), stage_prompt(stage, profile, limit, caption),
            stage_schema(stage, profile, limit), image, lambda data: read_answer(stage, data, profile, limit),
            name=stage, salvage=salvage,
        )  # fmt: skip
    except LLMError as exc:
        result.error, result.attempts = describe_error(exc), getattr(exc, "attempts", 1)
    finally:
        result.seconds = time.monotonic() - started
    return result


# The run


@dataclass
class ImageWork:
    image: Image
    stages: list[str]
    results: dict[str, StageResult] = field(default_factory=dict)
    jpeg: bytes | None = None
    error: str = ""

    def problem(self) -> str:
        """Why the image, or which of its stages, failed ("" when nothing did)."""
        return self.error or "; ".join(f"{r.stage}: {r.error}" for r in self.results.values() if r.error)


@dataclass
class Summary:
    images: int = 0
    described: int = 0
    partial: int = 0  # some stages failed
    failed: int = 0  # every stage failed, or the image could not be read
    skipped: int = 0
    stages: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    stored: Counter = field(default_factory=Counter)
    written: dict[str, int] = field(default_factory=dict)

    def add(self, other: "Summary") -> None:
        """Another job's counts: a command run of several jobs (batches) reports once."""
        for name in ("images", "described", "partial", "failed", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for stage, counts in other.stages.items():
            self.stages[stage].update(counts)
            self.seconds[stage] += other.seconds[stage]
        self.stored.update(other.stored)
        for status, count in other.written.items():
            self.written[status] = self.written.get(status, 0) + count


def stages_to_do(images: list[Image], stages: tuple[str, ...], producers: dict, overwrite: bool) -> dict[int, list]:
    """Per image, the stages still to run: not those with an approved result, nor those this producer already has
    pending, unless `overwrite`."""
    todo = {image.pk: list(stages) for image in images}
    if overwrite:
        return todo
    ids = list(todo)
    done: set[tuple[int, str]] = set()
    texts = TextProposal.objects.filter(image_id__in=ids)
    for image_id, name, status, producer_id in texts.values_list("image_id", "field", "status", "producer_id"):
        if status in Proposal.APPLIED or producer_id == producers.get(name):
            done.add((image_id, name))
    if "keywords" in stages:
        keywords = TagSuggestion.objects.filter(image_id__in=ids, model_version__kind=MLModelVersion.Kind.VLM)
        for image_id, status, producer_id in keywords.values_list("image_id", "status", "producer_id"):
            if status in Proposal.APPLIED or producer_id == producers.get("keywords"):
                done.add((image_id, "keywords"))
    return {pk: [stage for stage in stages if (pk, stage) not in done] for pk, stages in todo.items()}


def preflight(options: DescribeOptions) -> list[str]:
    """`llm_check` for every endpoint the run needs: the problems, each with what to fix (empty: ready)."""
    problems, seen = [], set()
    for stage in options.stages:
        try:
            config = stage_config(stage, options)
        except LLMError as exc:
            problems.append(f"{stage}: {exc}")
            continue
        if (config.base_url, config.model) in seen:
            continue
        seen.add((config.base_url, config.model))
        checks = check_endpoint(config, options.roles.get(stage, stage))
        problems += [f"{stage} ({config.name}, {config.model}): {c.name}: {c.detail}" for c in checks if not c.ok]
        if all(check.ok for check in checks):
            try:  # a text model answers the text round trip but not a stage: one small image tells (a refusal of
                # images is never retried; a passing 429 or 500 is, as in a run)
                with client_for(config, "chat") as client:
                    client.chat_json("Answer in JSON.", "Is this image red?", CHECK_SCHEMA, images=[CHECK_IMAGE])
            except LLMError as exc:
                problems.append(f"{stage} ({config.name}, {config.model}): image round trip: {exc}")
    return problems


def describe_images(
    images: list[Image] | QuerySet,
    options: DescribeOptions,
    progress: JobProgress | None = None,
    *,
    audit_dir: Path | None = None,
    on_image: Callable[[dict], None] | None = None,
) -> Summary:
    """Run the stages over the images and store the answers as proposals (nothing with `dry_run`); with
    `auto_approve`, approve them by the `describe_images` rule and write the files (unless `write_metadata` is
    off). A JSONL record per image and a Markdown summary go to `audit_dir`."""
    profile = get_profile(options.profile)
    limit = max_keywords(profile, options)
    configs = {stage: stage_config(stage, options) for stage in options.stages}
    create = not options.dry_run  # a dry run changes nothing in the library, not even its producers
    producers = {
        stage: text_producer(config, profile, create) for stage, config in configs.items() if stage in TEXT_FIELDS
    }
    vlm = keyword_model(configs["keywords"], profile, create) if "keywords" in configs else None
    producer_ids = {stage: producer.pk for stage, producer in producers.items() if producer}
    if vlm is not None:
        producer_ids["keywords"] = vlm.producer_id
    images = [image for image in images if image.status == Image.Status.OK]
    todo = stages_to_do(images, options.stages, producer_ids, options.overwrite)
    summary = Summary(images=len(images))
    if progress:
        progress.set_total(len(images))
    clients: dict[EndpointConfig, ChatBackend] = {}  # stages with the same configuration share a client
    for config in configs.values():
        if config not in clients:
            clients[config] = client_for(config, "chat", image_long_side=options.long_side)
    stage_client = {stage: clients[config] for stage, config in configs.items()}
    # Twice the servers' slots: a thread preparing its next request or waiting out a Retry-After leaves its slot to
    # another; the slots themselves (advisory locks) keep the requests in flight at the cap.
    slots = {c.base_url: c.max_parallel for c in configs.values()}
    workers = options.max_workers or max(1, 2 * sum(slots.values()))
    audit = DescribeAudit(audit_dir, options, profile) if audit_dir else None
    job_id = progress.job.pk if progress and progress.job.pk else None
    runner = Runner(stage_client, profile, limit, options.two_step, workers)
    try:
        for work in runner.run([ImageWork(image, list(todo[image.pk])) for image in images]):
            record = finish_image(work, options, producers, vlm, summary, job_id)
            if audit:
                audit.record(record)
            if on_image:
                on_image(record)
            if progress:
                if problem := work.problem():
                    progress.error(work.image.path, problem)
                progress.advance(1, **{record["status"]: 1})  # described, partial, failed, skipped: live on the job
        runner.stop()
        if options.auto_approve and not options.dry_run:  # only a run that went through (not a cancelled one)
            summary.stored["auto_approved"] = approve_run(job_id, [image.pk for image in images], producer_ids)
            if options.write_metadata:
                write = WriteOptions(backup=options.backup_originals, overwrite=options.overwrite_metadata)
                run = f"{audit_dir.name}-write" if audit_dir else None
                summary.written = write_images([image.pk for image in images], write, run=run)
    finally:
        runner.stop()  # a cancelled or failed run sends no further requests
        for client in clients.values():
            client.close()
        if audit:
            audit.close(summary)
    return summary


class Runner:
    """Worker threads that take (image, stage) requests from one queue; an image's finished work comes back in the
    calling thread. At most `2 * workers` images are open at once (their JPEGs in memory)."""

    def __init__(
        self, clients: dict[str, ChatBackend], profile: PromptProfile, limit: int, two_step: bool, workers: int
    ):
        self.clients, self.profile, self.limit, self.two_step = clients, profile, limit, two_step
        self.requests: queue.Queue = queue.Queue()
        self.finished: queue.Queue = queue.Queue()
        self.threads = [threading.Thread(target=self.work, daemon=True) for _ in range(workers)]
        self.lock = threading.Lock()
        self.window = 2 * workers

    def run(self, works: list[ImageWork]):
        for thread in self.threads:
            thread.start()
        pending = iter(works)
        open_count = 0
        for work in pending:
            if not work.stages:
                yield work
                continue
            self.start(work)
            open_count += 1
            if open_count >= self.window:
                yield self.finished.get()
                open_count -= 1
        while open_count:
            yield self.finished.get()
            open_count -= 1

    def start(self, work: ImageWork) -> None:
        long_side = self.clients[work.stages[0]].image_long_side
        try:  # EXIF-rotated, JPEG draft mode to the size sent, encoded once for every stage
            picture = open_image(work.image.path, max_pixels=settings.MAX_IMAGE_PIXELS, draft_size=long_side).image
            work.jpeg = jpeg_bytes(picture, long_side)
        except (ImageDecodeError, OSError) as exc:
            work.error = f"cannot read the image: {describe_error(exc)}"
            self.finished.put(work)
            return
        first = ["caption"] if self.two_step and "caption" in work.stages else work.stages
        for stage in first:
            self.requests.put((work, stage))

    def work(self) -> None:
        try:
            while (item := self.requests.get()) is not None:
                work, stage = item
                caption = work.results.get("caption") if stage in ("keywords", "title") else None
                try:
                    result = ask_stage(
                        self.clients[stage],
                        stage,
                        work.jpeg,
                        self.profile,
                        self.limit,
                        caption.value if caption else "",
                    )
                except Exception as exc:  # noqa: BLE001 - one stage's failure is that stage's result, never the run's
                    result = StageResult(stage, model=self.clients[stage].config.model, error=describe_error(exc))
                self.done(work, result)
        finally:
            connections.close_all()  # this thread's connection (the request slots' advisory locks)

    def done(self, work: ImageWork, result: StageResult) -> None:
        with self.lock:
            work.results[result.stage] = result
            follow = []
            if self.two_step and result.stage == "caption":
                follow = [stage for stage in work.stages if stage != "caption"]
                if not result.ok:
                    follow = [stage for stage in follow if stage == "description"]
                    for stage in work.stages:
                        if stage not in ("caption", "description"):
                            work.results[stage] = StageResult(stage, error="not asked: the caption failed (two-step)")
            complete = len(work.results) == len(work.stages) and not follow
        for stage in follow:
            self.requests.put((work, stage))
        if complete:
            work.jpeg = None
            self.finished.put(work)

    def stop(self) -> None:
        """Drop the requests not yet sent and end the threads once their requests in flight return (idempotent)."""
        with self.requests.mutex:
            self.requests.queue.clear()
        for thread in self.threads:
            if thread.is_alive():
                self.requests.put(None)
        for thread in self.threads:
            if thread.is_alive():
                thread.join()


def finish_image(work: ImageWork, options: DescribeOptions, producers: dict, vlm, summary: Summary, job_id) -> dict:
    """Store one image's answers (one transaction) and say what happened: its audit record."""
    image = work.image
    for stage, result in work.results.items():
        summary.stages[stage]["ok" if result.ok else "failed"] += 1
        summary.stages[stage]["re-asked"] += result.attempts > 1
        summary.seconds[stage] += result.seconds
    failed = [r for r in work.results.values() if not r.ok]
    if not work.stages:
        summary.skipped += 1
        status = "skipped"
    elif work.error or failed:
        status = "failed" if work.error or len(failed) == len(work.stages) else "partial"
        setattr(summary, status, getattr(summary, status) + 1)
    else:
        summary.described += 1
        status = "described"
    if not options.dry_run and work.stages:
        with transaction.atomic():
            store_answers(work, producers, vlm, summary, job_id)
            error = work.problem()
            record_stages(IMAGE_STAGE, [(image, ImageStage.Status.FAILED if error else ImageStage.Status.DONE, error)])
    if options.dry_run:
        meta = "dry run: nothing stored"
    elif options.auto_approve:
        meta = "auto-approved; written after the run" if options.write_metadata else "auto-approved (--no-meta)"
    else:
        meta = "awaiting review"
    return {
        "image": image.pk,
        "path": image.path,
        "status": status,
        "error": work.error,
        "stages": {
            stage: {
                "model": r.model, "answer": r.value, "status": "ok" if r.ok else "failed", "error": r.error,
                "attempts": r.attempts, "seconds": round(r.seconds, 3), "notes": r.notes,
            }
            for stage, r in sorted(work.results.items(), key=lambda item: STAGES.index(item[0]))
        },
        "metadata": meta if work.stages else "nothing asked (every stage done before; --overwrite asks again)",
    }  # fmt: skip


def store_answers(work: ImageWork, producers: dict, vlm, summary: Summary, job_id) -> None:
    for stage, result in work.results.items():
        if not result.ok:
            continue
        if stage == "keywords":
            n = len(result.value)
            candidates = [Candidate(word, 0, round(1 - 0.5 * i / n, 3)) for i, word in enumerate(result.value)]
            stored, held = propose_labels(vlm, [(work.image, candidates)], job_id)
            summary.stored["keyword suggestions"] += stored
            summary.stored["keywords held (unmapped)"] += held
            continue
        producer = producers[stage]
        pending = TextProposal.objects.filter(
            image=work.image, field=stage, producer=producer, status=Proposal.Status.PENDING
        )
        if not pending.update(text=result.value, model_text=result.value, job_id=job_id):
            try:
                with transaction.atomic():  # one pending proposal per image, field and producer
                    TextProposal.objects.create(
                        image=work.image, field=stage, producer=producer, job_id=job_id, text=result.value,
                        model_text=result.value,
                    )  # fmt: skip
            except IntegrityError:  # another run stored one meanwhile: this answer replaces its text
                pending.update(text=result.value, model_text=result.value, job_id=job_id)
        summary.stored[f"{stage} proposals"] += 1
    review.auto_approve("textproposal", TextProposal.objects.filter(image=work.image, status=Proposal.Status.PENDING))


def run_rule() -> AutoApproveRule:
    """The rule `--auto-approve` approves by, named in every Decision; inactive, so it never acts elsewhere."""
    rule, _ = AutoApproveRule.objects.update_or_create(
        name=RULE_NAME, defaults={"kind": "textproposal", "producer": None, "min_confidence": 0.0, "active": False}
    )
    return rule


def approve_run(job_id: int | None, image_ids: list[int], producer_ids: dict[str, int]) -> int:
    """Approve the run's pending proposals (texts and keywords of its producers) by the explicit rule."""
    producers = set(producer_ids.values())
    rule = run_rule()
    pending = {"image_id__in": image_ids, "producer_id__in": producers, "status": Proposal.Status.PENDING}
    texts = TextProposal.objects.filter(**pending)
    approved = len(review.decide(kind="textproposal", ids=list(texts.values_list("pk", flat=True)),
                                 status=Proposal.Status.AUTO_APPROVED, via=Proposal.Via.RULE, rule=rule))  # fmt: skip
    keyword_rule, _ = AutoApproveRule.objects.update_or_create(
        name=f"{RULE_NAME}_keywords",
        defaults={"kind": "tagsuggestion", "producer": None, "min_confidence": 0.0, "active": False},
    )
    keywords = TagSuggestion.objects.filter(**pending).values_list("pk", flat=True)
    approved += len(review.decide(kind="tagsuggestion", ids=list(keywords), status=Proposal.Status.AUTO_APPROVED,
                                  via=Proposal.Via.RULE, rule=keyword_rule))  # fmt: skip
    return approved


# Audit (seed 003): a JSONL record per image and a Markdown summary per run


class DescribeAudit:
    def __init__(self, folder: Path, options: DescribeOptions, profile: PromptProfile):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.options, self.profile = options, profile
        self.jsonl = open(folder / "audit.jsonl", "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.folders: dict[str, Counter] = defaultdict(Counter)
        self.failures: list[str] = []
        self.highlights: list[str] = []

    def record(self, record: dict) -> None:
        self.jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.folders[os.path.dirname(record["path"])][record["status"]] += 1
        problems = [record["error"]] + [f"{s}: {r['error']}" for s, r in record["stages"].items() if r["error"]]
        if record["status"] in ("failed", "partial") and len(self.failures) < 500:
            self.failures.append(f"{record['path']}: {'; '.join(p for p in problems if p)}")
        caption = record["stages"].get("caption", {}).get("answer") or record["stages"].get("title", {}).get("answer")
        if caption and len(self.highlights) < HIGHLIGHTS:
            self.highlights.append(f"{os.path.basename(record['path'])}: {caption}")

    def close(self, summary: Summary) -> None:
        self.jsonl.close()
        statuses = ["described", "partial", "failed", "skipped"]
        lines = [
            f"# Describe run (profile {self.profile.label}{', dry run' if self.options.dry_run else ''})",
            "",
            f"{summary.images} images: {summary.described} described, {summary.partial} partial (some stages "
            f"failed), {summary.failed} failed, "
            f"{summary.skipped} skipped (done before).",
            "",
            "## Stages",
            "",
            "| stage | ok | failed | re-asked | mean seconds |",
            "|---|---|---|---|---|",
        ]
        for stage in (stage for stage in STAGES if stage in summary.stages):
            counts = summary.stages[stage]
            runs = counts["ok"] + counts["failed"]
            mean = summary.seconds[stage] / runs if runs else 0
            lines.append(f"| {stage} | {counts['ok']} | {counts['failed']} | {counts['re-asked']} | {mean:.2f} |")
        lines += ["", "## Per folder", "", "| folder | " + " | ".join(statuses) + " |", "|---" * 5 + "|"]
        for folder, counts in sorted(self.folders.items()):
            lines.append(f"| {folder} | " + " | ".join(str(counts[s]) for s in statuses) + " |")
        if summary.stored:
            lines += ["", "Stored: " + ", ".join(f"{n} {what}" for what, n in summary.stored.items())]
        if summary.written:
            lines += ["", "Metadata written: " + ", ".join(f"{n} {s}" for s, n in sorted(summary.written.items()))]
        if self.failures:
            lines += ["", "## Failures", ""] + [f"- {line}" for line in self.failures]
        if self.highlights:
            lines += ["", "## Highlights", ""] + [f"- {line}" for line in self.highlights]
        (self.folder / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def files_as_images(paths: list[str]) -> list[Image]:
    """A dry run's files as images without importing them: the library's row where it has the file (so stages
    done before are skipped as a real run would), else an unsaved one that only names the file."""
    rows = {row.path: row for row in Image.objects.filter(path__in=paths, status=Image.Status.OK)}
    return [rows.get(path) or Image(path=path) for path in paths]


def run_describe_job(job, progress: JobProgress, on_image=None) -> Summary:
    """A job's run (task or command): params hold the image ids (or, for a dry run, the files' `paths`) and the
    options; the audit goes to the job's folder (downloadable from its page)."""
    options = DescribeOptions(**job.params["options"])
    if job.params.get("paths"):
        images = files_as_images(job.params["paths"])
    else:
        images = Image.objects.filter(pk__in=job.params["image_ids"]).order_by("pk")
    summary = describe_images(images, options, progress, audit_dir=audit_folder(job.pk), on_image=on_image)
    progress.job.message = (
        f"{summary.described} described, {summary.partial} partial, {summary.failed} failed, {summary.skipped} skipped"
        + "".join(f", {n} {what}" for what, n in summary.stored.items())
    )
    return summary
