"""The review hub: pending work per kind and per producer, with a link to each kind's screen."""

from django.shortcuts import render

from tagsite.review import all_kinds
from tagsite.review import services as review
from tagsite.review.api import can_view


def hub(request):
    """Counts are capped (COUNT_CAP, shown as "1,000+"): a million pending rows cost what a thousand do."""
    kinds = [kind for kind in all_kinds() if can_view(request.user, kind)]
    rows = [
        {
            "kind": counts.kind,
            "pending": counts.pending,
            "capped": counts.capped,
            "url": counts.kind.screen_url(),
            "can_decide": request.user.has_perm(counts.kind.permission),
            "producers": [
                {"producer": producer, "pending": n, "capped": capped, "url": counts.kind.screen_url(producer)}
                for producer, n, capped in counts.producers
            ],
        }
        for counts in review.pending_counts(kinds)
    ]
    return render(request, "tagsite/review_hub.html", {"rows": rows})
