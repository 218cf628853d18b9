from django.urls import path

from categorization import views

urlpatterns = [
    path("tag_categorize", views.tag_categorize, name="tag-categorize"),
    path("tag_categorize/action", views.tag_categorize_action, name="tag-categorize-action"),
    path("tag_categorize/run", views.tag_categorize_run, name="tag-categorize-run"),
]
