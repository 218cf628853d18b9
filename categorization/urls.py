from django.urls import include, path
from rest_framework.routers import SimpleRouter

from categorization import api, views

router = SimpleRouter()
router.register("api/categories", api.ExtendedCategoryViewSet, basename="api-category")
router.register("api/tag-categories", api.TagCategoryViewSet, basename="api-tag-category")
router.register("api/category-proposals", api.CategoryProposalViewSet, basename="api-category-proposal")

urlpatterns = [
    path("tag_categorize", views.tag_categorize, name="tag-categorize"),
    path("tag_categorize/action", views.tag_categorize_action, name="tag-categorize-action"),
    path("tag_categorize/run", views.tag_categorize_run, name="tag-categorize-run"),
    path("", include(router.urls)),
]
