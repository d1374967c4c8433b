from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing import api as billing_api
from hub import tenants_api, views
from hub.routers import OptionalSlashRouter
from integrations.urls import api_urlpatterns as integration_api
from ticketing.api import IncidentViewSet
from ticketing.urls import api_urlpatterns as ticketing_api
from ticketing.urls import hook_urlpatterns, incident_urlpatterns

router = OptionalSlashRouter()
router.register("tenants", tenants_api.TenantViewSet, basename="tenant")
router.register("incidents", IncidentViewSet, basename="incident")

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("no-account/", views.no_account, name="no_account"),
    path("accounts/switch/", views.switch_account, name="switch_account"),
    path("settings/integrations/", include("integrations.urls")),
    path("settings/ticketing/", include("ticketing.urls")),
    path("settings/incidents/", include(incident_urlpatterns)),
    path("hooks/", include(hook_urlpatterns)),
    path("settings/billing/", include("billing.urls")),
    path("settings/logs/", include("integrations.urls_logs")),
    path("settings/tenants/", views.tenant_list, name="tenants"),
    path("settings/tenants/new/", views.tenant_edit, name="tenant_new"),
    path("settings/tenants/<int:pk>/", views.tenant_edit, name="tenant_edit"),
    path("settings/tenants/<int:pk>/active/", views.tenant_set_active, name="tenant_set_active"),
    path("settings/api-keys/", views.api_keys, name="api_keys"),
    path("settings/api-keys/<int:pk>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("settings/system/", views.system, name="system"),
    path("settings/system/ping/", views.system_ping, name="system_ping"),
    path("settings/system/ping/<uuid:pk>/", views.system_ping_status, name="system_ping_status"),
    path("api/v1/", include(integration_api)),
    path("api/v1/", include(ticketing_api)),
    path("api/v1/", include(billing_api.api_urlpatterns)),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api_docs"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
]
