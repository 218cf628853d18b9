from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from tagsite import access, api, views, writeback_web

router = DefaultRouter()
router.register("images", api.ImageViewSet, basename="api-image")
router.register("tags", api.TagViewSet, basename="api-tag")
router.register("aliases", api.TagAliasViewSet, basename="api-alias")
router.register("implications", api.TagImplicationViewSet, basename="api-implication")
router.register("jobs", api.JobViewSet, basename="api-job")

urlpatterns = [
    path("", views.library, name="library"),
    path("upload/", views.upload, name="upload"),
    path("import/", views.import_server_folder, name="import-folder"),
    path("jobs/", views.jobs, name="jobs"),
    path("jobs/<int:pk>/", views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<int:pk>/audit/<str:name>", views.job_audit, name="job-audit"),
    path("images/<int:pk>/", views.image_detail, name="image-detail"),
    path("images/<int:pk>/thumbnail.jpg", views.image_thumbnail, name="image-thumbnail"),
    path("images/<int:pk>/file", views.image_file, name="image-file"),
    path("accounts/login/", access.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("tagsite.review.urls")),
    path("", include("categorization.urls")),
    path("", include("emotion.urls")),
    path("", include("dedupe.urls")),  # before the router: /api/tags/<id>/similar/
    path("admin/", admin.site.urls),
    path("", include("suggestions.urls")),
    path("metadata/write/", writeback_web.write_page, name="metadata-write"),
    path("api/metadata/write/", writeback_web.write_metadata, name="api-metadata-write"),
    path("api/images/<int:pk>/metadata/", writeback_web.image_metadata, name="api-image-metadata"),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

handler403 = "tagsite.access.forbidden_page"
