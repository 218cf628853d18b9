"""The emotion review screen: face crops grouped by proposed label, with their probabilities; approve, change
the label or reject, one by one, per label group, or in bulk (the core's review script); and the face crops."""

from collections import defaultdict
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render

from emotion import services
from emotion.models import EmotionLabel, EmotionProposal, Face
from tagsite import imaging
from tagsite.access import permission_required
from tagsite.models import Producer, Proposal
from tagsite.review import get_kind
from tagsite.review.services import capped_label
from tagsite.services.lists import IMAGE_LIST_DEFER, related_defer

PAGE_SIZE = 120
CROP_SIDE = 160


def number(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() else None


@permission_required("emotion.view_emotionproposal")
def review(request):
    """Pending faces by default, oldest first in keyset pages of 120 (`?after=<id>`), grouped by label."""
    state = request.GET.get("status", Proposal.Status.PENDING)
    label = request.GET.get("label", "")
    producer = number(request.GET.get("producer", ""))
    labels = list(EmotionLabel.objects.all())
    proposals = (
        EmotionProposal.objects.select_related("face", "image", "label", "proposed_label", "producer")
        .defer(*related_defer("image", IMAGE_LIST_DEFER))  # sidecars, metadata...: the screen shows the file name
        .order_by("pk")
    )
    if state in Proposal.Status.values:
        proposals = proposals.filter(status=state)
    if label:  # the name resolved to its id among the few labels, not joined into the big query
        proposals = proposals.filter(label_id=next((row.pk for row in labels if row.name == label), None))
    if producer is not None:
        proposals = proposals.filter(producer_id=producer)
    after = number(request.GET.get("after", ""))
    page = list((proposals.filter(pk__gt=after) if after else proposals)[: PAGE_SIZE + 1])
    more, page = len(page) > PAGE_SIZE, page[:PAGE_SIZE]
    grouped: dict[int, list] = defaultdict(list)
    for proposal in page:
        top = sorted(proposal.face.probabilities.items(), key=lambda item: -item[1])[:3]
        grouped[proposal.label_id].append({"proposal": proposal, "top": top})
    query = request.GET.copy()
    query.pop("after", None)
    return render(
        request,
        "emotion/review.html",
        {
            "groups": [(label_row, grouped[label_row.pk]) for label_row in labels if grouped[label_row.pk]],
            "labels": labels,
            "statuses": Proposal.Status.choices,
            "producers": Producer.objects.filter(kind__in=[Producer.Kind.CLASSIFIER, Producer.Kind.CHAT]),
            "filters": {"status": state, "label": label, "producer": producer},
            "pending": capped_label(EmotionProposal.objects.filter(status=Proposal.Status.PENDING)),
            "next_after": page[-1].pk if more else None,
            "query": query.urlencode(),
            "can_review": request.user.has_perm(get_kind(services.KIND).permission),
        },
    )


@permission_required("emotion.view_emotionproposal")
def face_crop(request, pk: int):
    """A face's crop as the classifier saw it (square, margin, EXIF orientation applied), made once and kept
    under the media folder by the image's content hash and the box."""
    face = get_object_or_404(Face.objects.select_related("image"), pk=pk)
    image = face.image
    path = Path(settings.MEDIA_ROOT) / "faces" / f"{image.sha256}-{face.x}-{face.y}-{face.width}-{face.height}.jpg"
    if not path.is_file():
        try:
            picture, factor = services.decode(image.path)
        except (imaging.ImageDecodeError, OSError) as exc:
            raise Http404(f"cannot read the image: {exc}") from exc
        box = tuple(round(value / factor) for value in face.box)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(imaging.thumbnail_jpeg(services.face_crop(picture, box), CROP_SIDE))
        temporary.replace(path)
    response = FileResponse(path.open("rb"), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=31536000, immutable"  # the name holds the content hash and box
    return response
