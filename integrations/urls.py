from django.urls import path

from integrations import api, views

urlpatterns = [
    path("", views.index, name="integrations"),
    path("status/", views.status, name="integration_status"),
    path("link/<slug:vendor>/", views.link, name="integration_link"),
    path("verify/", views.verify, name="integration_verify"),
    path("permissions/", views.permissions, name="integration_permissions"),
    path("refresh/", views.refresh_lists, name="integration_refresh"),
    path("pause/", views.pause, name="integration_pause"),
    path("remove/", views.remove, name="integration_remove"),
    path("import/", views.import_companies, name="integration_import"),
    path("work/<slug:kind>/", views.work_status, name="integration_work"),
    path("companies/", views.company_mapping, name="company_mapping"),
    path("companies/map/", views.map_tenants, name="map_tenants"),
    path("companies/search/", views.company_search, name="company_search"),
]

api_urlpatterns = [
    path("connection", api.ConnectionView.as_view(), name="api_connection"),
    path("connection/verify", api.VerifyView.as_view(), name="api_connection_verify"),
    path("connection/permissions", api.PermissionsView.as_view(), name="api_connection_permissions"),
    path("connection/picklists/<slug:kind>", api.PicklistView.as_view(), name="api_connection_picklist"),
    path("connection/pause", api.PauseView.as_view(), name="api_connection_pause"),
    path("connection/resume", api.ResumeView.as_view(), name="api_connection_resume"),
    path("tenants/<str:external_id>/company", api.TenantCompanyView.as_view(), name="api_tenant_company"),
    path("connection/health", api.HealthView.as_view(), name="api_connection_health"),
    path("logs", api.LogListView.as_view(), name="api_logs"),
    path("logs/<int:pk>", api.LogDetailView.as_view(), name="api_log"),
]
