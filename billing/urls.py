from django.urls import path

from billing import views

# Mounted at /settings/billing/.
urlpatterns = [
    path("", views.billing_page, name="billing"),
    path("settings/", views.save_settings, name="billing_settings"),
    path("pause/", views.set_pause, name="billing_pause"),
    path("refresh/", views.refresh_lists, name="billing_refresh"),
    path("products/", views.product_save, name="billing_product_add"),
    path("products/picker/", views.product_picker, name="billing_product_picker"),
    path("products/<int:pk>/", views.product_save, name="billing_product"),
    path("products/<int:pk>/delete/", views.product_delete, name="billing_product_delete"),
    path("tenants/", views.tenants_table, name="billing_tenants"),
    path("tenants/<int:pk>/", views.tenant_page, name="billing_tenant"),
    path("tenants/<int:pk>/refresh/", views.tenant_refresh, name="billing_tenant_refresh"),
    path("tenants/<int:pk>/products/<int:product_pk>/", views.tenant_mapping_save, name="billing_tenant_mapping"),
    path("tenants/<int:pk>/products/<int:product_pk>/fields/", views.tenant_fields, name="billing_tenant_fields"),
    path("companies/", views.company_options, name="billing_companies"),
    path("runs/", views.runs, name="billing_runs"),
    path("runs/active/", views.runs_section, name="billing_runs_section"),
    path("runs/<int:pk>/", views.run_page, name="billing_run"),
    path("runs/<int:pk>/body/", views.run_body, name="billing_run_body"),
    path("runs/<int:pk>/approve/", views.run_approve, name="billing_run_approve"),
    path("runs/<int:pk>/revert/", views.run_revert, name="billing_run_revert"),
]
