from django.urls import path

from emotion import api, views

urlpatterns = [
    path("emotion/", views.review, name="emotion-review"),
    path("emotion/faces/<int:pk>/crop.jpg", views.face_crop, name="emotion-face-crop"),
    path("api/emotions/export.csv", api.ExportCSV.as_view(), name="api-emotion-export"),
    path("api/emotions/relabel/", api.Relabel.as_view(), name="api-emotion-relabel"),
    path("api/emotions/run/", api.Run.as_view(), name="api-emotion-run"),
]
