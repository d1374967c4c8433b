"""Settings → Logs (mounted at settings/logs/ by hub/urls.py)."""

from django.urls import path

from integrations import views_logs

urlpatterns = [
    path("", views_logs.log_list, name="logs"),
    path("copy/", views_logs.log_copy, name="log_copy"),
    path("export.csv", views_logs.log_export, name="log_export"),
    path("<int:pk>/", views_logs.log_entry, name="log_entry"),
    path("<int:pk>/delete/", views_logs.log_delete, name="log_delete"),
]
