from django.urls import path

from tagsite.review import api, views

urlpatterns = [
    path("review/", views.hub, name="review-hub"),
    path("api/review/<str:kind>/", api.ReviewList.as_view(), name="api-review"),
    path("api/review/<str:kind>/decide/", api.ReviewDecide.as_view(), name="api-review-decide"),
]
