from django.urls import include, path
from rest_framework.routers import SimpleRouter

from dedupe import api, views

router = SimpleRouter()
router.register("api/merge-proposals", api.MergeProposalViewSet, basename="api-merge-proposal")

urlpatterns = [
    path("api/tags/<int:pk>/similar/", api.SimilarTagsView.as_view(), name="api-tag-similar"),
    path("api/tags/did-you-mean/", api.DidYouMeanView.as_view(), name="api-tag-did-you-mean"),
    path("dedupe/", views.merges, name="dedupe-review"),
    path("dedupe/<int:pk>/", views.merge_action, name="dedupe-action"),
    path("", include(router.urls)),
]
