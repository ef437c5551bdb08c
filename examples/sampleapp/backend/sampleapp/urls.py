from django.urls import path
from notes import views

urlpatterns = [
    path("api/health/", views.health),
    path("api/notes/", views.notes),
]
