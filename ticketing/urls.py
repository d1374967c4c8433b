from django.urls import path

from ticketing import api, views
from ticketing.sync import api as sync_api
from ticketing.sync import views as sync_views
from ticketing.sync import webhooks

# Mounted at /settings/ticketing/.
urlpatterns = [
    path("", views.settings_page, name="ticketing"),
    path("fields/", views.config_fields, name="ticketing_fields"),
    path("refresh/", views.refresh_lists, name="ticketing_refresh"),
    path("companies/", views.company_options, name="ticketing_companies"),
    path("tenants/", views.tenant_options, name="ticketing_tenants"),
    path("preview/", views.preview, name="ticketing_preview"),
    path("test-ticket/", views.test_ticket, name="ticketing_test_ticket"),
    path("test-ticket/<int:pk>/", views.test_ticket_status, name="ticketing_test_ticket_status"),
    path("webhook/", sync_views.webhook_page, name="ticketing_webhook"),
]

# Mounted at /hooks/: calls from the PSAs (two-way sync), authenticated by secrets the hub made.
hook_urlpatterns = [
    # The vendor's status-sync capability says whether its secret is the token segment.
    path("<slug:vendor>/<uuid:connection_id>/", webhooks.receive, name="hook"),
    path("<slug:vendor>/<uuid:connection_id>/<str:token>/", webhooks.receive, name="hook_with_token"),
]

# Mounted at /settings/incidents/.
incident_urlpatterns = [
    path("", views.incident_list, name="incidents"),
    path("<int:pk>/", views.incident_detail, name="incident_detail"),
    path("<int:pk>/sync/", views.incident_sync, name="incident_sync"),
    path("<int:pk>/retry/", views.incident_retry, name="incident_retry"),
]

# Mounted at /api/v1/.
api_urlpatterns = [
    path("ticketing/config", api.TicketingConfigView.as_view(), name="api_ticketing_config"),
    path("ticketing/preview", api.TicketingPreviewView.as_view(), name="api_ticketing_preview"),
    path("ticketing/webhook", sync_api.HostWebhookView.as_view(), name="api_ticketing_webhook"),
]
