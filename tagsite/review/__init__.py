"""The review core: every kind of AI output awaiting a human is a `Proposal` table plus a small kind class.

Feature apps register their kinds by dotted path in their `AppConfig.ready` (the core imports none of
them); a kind is imported the first time it is asked for. `tagsite.review.services.decide` decides
every kind the same way, and `/api/review/<kind>/` and `/review/` serve them all.
"""

from collections.abc import Iterable
from typing import ClassVar

from django.db.models import QuerySet
from django.urls import reverse
from django.utils.module_loading import import_string

from tagsite.models import Producer, Proposal

_PATHS: dict[str, str] = {}
_LOADED: dict[str, "ReviewKind"] = {}


class UnknownKind(LookupError):
    """A kind nobody registered."""


class ReviewKind:
    """What the core needs to know about one kind of proposal. Subclasses set `model` and `label` and
    say what approving does (`apply`) and what taking an approval back undoes (`revert`)."""

    model: ClassVar[type[Proposal]]
    label: ClassVar[str] = ""
    screen: ClassVar[str] = ""  # URL name of the kind's own review screen, if it has one
    related: ClassVar[tuple[str, ...]] = ()  # select_related for decisions and listings
    listed: ClassVar[tuple[str, ...] | None] = None  # the API listing's, where `describe` reads less than decisions
    deferred: ClassVar[tuple[str, ...]] = ()  # big columns of those rows that neither reads (decoded per row)
    subject_fields: ClassVar[tuple[str, ...]] = ()  # foreign keys the `subject` filter matches (tag, image ...)
    decided_fields: ClassVar[tuple[str, ...]] = ()  # fields `apply`/`revert` set on the rows, saved with the status

    def __init__(self, name: str):
        self.name = name

    @property
    def permission(self) -> str:
        """`<app>.review_<kind>`: declared in the model's Meta, held by the moderators group."""
        return f"{self.model._meta.app_label}.review_{self.name}"

    def apply(self, proposals: list[Proposal], user) -> None:
        """Make approved proposals take effect. Called inside the decision's transaction, rows locked."""

    def revert(self, proposals: list[Proposal], user) -> None:
        """Undo what `apply` did for proposals whose approval is taken back."""

    def refuse(self, proposals: list[Proposal], status: str) -> dict[int, str]:
        """Proposals that may not move to `status` now (id -> why, for a person): decide skips them."""
        return {}

    def screen_url(self, producer: Producer | None = None) -> str:
        """The kind's review screen (filtered to one producer's proposals), else its API listing."""
        if self.screen:
            return reverse(self.screen) + (f"?producer={producer.pk}" if producer else "")
        return self.api_url(producer)

    def api_url(self, producer: Producer | None = None) -> str:
        """The review API's listing of pending proposals (of one producer)."""
        return (
            reverse("api-review", args=[self.name])
            + "?status=pending"
            + (f"&producer={producer.pk}" if producer else "")
        )

    def queryset(self) -> QuerySet:
        return self.model.objects.select_related("producer", *self.related).defer(*self.deferred)

    def describe(self, proposal: Proposal) -> dict:
        """Kind-specific fields of a proposal for the generic API (what it proposes, about what)."""
        return {}

    def summary(self, proposal: Proposal) -> str:
        """What a proposal says, in a line for a person (the image page); by default its described fields."""
        what = {key: value for key, value in self.describe(proposal).items() if key != "image"}
        return ", ".join(f"{key} {value}" for key, value in what.items())


def register(name: str, dotted_path: str) -> None:
    """Called by a feature app's AppConfig.ready: `register("tagsuggestion", "suggestions.review.TagSuggestions")`."""
    if _PATHS.get(name, dotted_path) != dotted_path:
        raise ValueError(f"review kind {name!r} is already registered as {_PATHS[name]}")
    _PATHS[name] = dotted_path


def unregister(name: str) -> None:
    _PATHS.pop(name, None)
    _LOADED.pop(name, None)


def get_kind(name: str) -> ReviewKind:
    if name not in _PATHS:
        raise UnknownKind(f"no review kind {name!r} (known: {', '.join(sorted(_PATHS)) or 'none'})")
    if name not in _LOADED:
        _LOADED[name] = import_string(_PATHS[name])(name)
    return _LOADED[name]


def kind_names() -> list[str]:
    return sorted(_PATHS)


def all_kinds() -> Iterable[ReviewKind]:
    return [get_kind(name) for name in kind_names()]


def permissions() -> list[str]:
    """Every kind's review permission (and its model's view permission), and reading the core's producers, rules
    and audit: what the moderators group holds."""
    found = ["tagsite.view_producer", "tagsite.view_autoapproverule", "tagsite.view_decision"]
    for kind in all_kinds():
        meta = kind.model._meta
        found += [kind.permission, f"{meta.app_label}.view_{meta.model_name}"]
    return found
