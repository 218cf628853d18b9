from django.urls import include, path
from rest_framework.routers import SimpleRouter

from suggestions import api, views

router = SimpleRouter()
router.register("api/suggestions", api.TagSuggestionViewSet, basename="api-suggestion")
router.register("api/model-versions", api.MLModelVersionViewSet, basename="api-model-version")
router.register("api/unmapped-tags", api.UnmappedTagViewSet, basename="api-unmapped-tag")

urlpatterns = [
    path("suggestions/", views.review_queue, name="suggestions-review"),
    path("suggestions/unmapped/", views.unmapped, name="suggestions-unmapped"),
    path("suggestions/report/", views.report, name="suggestions-report"),
    path("suggestions/texts/", views.text_review, name="suggestions-texts"),
    path("api/text-proposals/accept/", api.TextAccept.as_view(), name="api-text-accept"),
    path("api/describe/", api.DescribeStart.as_view(), name="api-describe"),
    path("", include(router.urls)),
]
