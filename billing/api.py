"""REST API for billing: usage in, product and tenant mappings, runs (preview, sync, approve,
revert) and the account's billing settings. Views call services; PSA work goes to tasks."""

from __future__ import annotations

import re
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view, inline_serializer
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import selectors, services
from billing.models import (
    MAX_UNITS,
    PRODUCT_KEY_PATTERN,
    BillingItem,
    BillingMapping,
    BillingRun,
    BillingSettings,
    Mode,
    ProductMapping,
    Usage,
)
from hub.api import AccountScopedMixin, ApiKeyPrincipal, Conflict, Pagination, field_messages
from hub.routers import OptionalSlashRouter
from hub.models import Tenant
from integrations.models import CompanyMapping, Connection

BULK_MAX = 10_000
FUTURE_SKEW = timedelta(minutes=5)


def not_found(field: str, message: str) -> exceptions.NotFound:
    error = exceptions.NotFound(f"{field}: {message}")
    error.hub_fields = {field: [message]}
    return error


def refused(exc: services.BillingRefused) -> Conflict:
    error = Conflict(exc.message)
    error.hub_code = exc.code
    return error


def validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    if not serializer.is_valid():
        raise exceptions.ValidationError(field_messages(serializer.errors))
    return serializer.validated_data


def _tenant(request, external_id: str, field: str = "tenant") -> Tenant:
    tenant = Tenant.objects.for_account(request.account).filter(external_id=external_id).first()
    if tenant is None:
        raise not_found(field, f"No tenant with external_id {external_id!r} in this account.")
    return tenant


def _product(request, key: str, field: str = "product") -> ProductMapping:
    product = ProductMapping.objects.for_account(request.account).filter(key=key).first()
    if product is None:
        raise not_found(field, f"No product {key!r} in this account; add it with POST /api/v1/billing/products.")
    return product


def actor_label(request) -> str:
    user = request.user
    if isinstance(user, ApiKeyPrincipal):
        return f"API key “{user.key.name}”"
    return getattr(user, "email", "") or user.get_username()


def trigger_of(request) -> str:
    return BillingRun.Trigger.API if isinstance(request.user, ApiKeyPrincipal) else BillingRun.Trigger.MANUAL


# --- usage -------------------------------------------------------------------------------------------


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": MAX_UNITS})
class UnitsField(serializers.Field):
    """A unit count: a whole number from 0 to 10^7 (JSON number; "15" from forms)."""

    default_error_messages = {
        "invalid": "A whole number of units is required, e.g. 15.",
        "negative": "units cannot be negative.",
        "too_large": f"units cannot be more than {MAX_UNITS:,} (10^7).",
    }

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int):
            value = data
        elif isinstance(data, float) and data.is_integer():
            value = int(data)
        elif isinstance(data, str) and re.fullmatch(r"\s*-?\d{1,12}\s*", data):
            value = int(data)
        else:
            self.fail("invalid")
        if value < 0:
            self.fail("negative")
        if value > MAX_UNITS:
            self.fail("too_large")
        return value

    def to_representation(self, value):
        return value


class AsOfField(serializers.DateTimeField):
    def to_internal_value(self, value):
        moment = super().to_internal_value(value)
        if moment > timezone.now() + FUTURE_SKEW:
            raise serializers.ValidationError("as_of cannot be in the future.")
        return moment


class UsageWriteSerializer(serializers.Serializer):
    units = UnitsField(help_text=f"Billable units now: a whole number from 0 to {MAX_UNITS:,}")
    as_of = AsOfField(required=False, help_text="When the count was taken (default: now)")


class UsageSerializer(serializers.ModelSerializer):
    tenant = serializers.CharField(source="tenant.external_id")
    product = serializers.CharField(source="product_key")

    class Meta:
        model = Usage
        fields = ["tenant", "product", "units", "as_of", "received_at", "last_reported_at"]


class BulkUsageItemSerializer(serializers.Serializer):
    tenant = serializers.CharField(max_length=200, help_text="The tenant's external_id")
    product = serializers.RegexField(PRODUCT_KEY_PATTERN, max_length=40, help_text="A product key, e.g. users",
                                     error_messages={"invalid": "Use a product key such as users, domains, devices, gb."})
    units = UnitsField()
    as_of = AsOfField(required=False)


class BulkUsageSerializer(serializers.Serializer):
    items = BulkUsageItemSerializer(many=True, allow_empty=False, max_length=BULK_MAX)


class UsageView(APIView):
    """PUT a tenant's count for a product; GET its history."""

    @extend_schema(
        summary="Report a tenant's unit count for a product",
        request=UsageWriteSerializer,
        responses={200: inline_serializer("UsageRecorded", {
            "tenant": serializers.CharField(), "product": serializers.CharField(), "units": serializers.IntegerField(),
            "as_of": serializers.DateTimeField(), "received_at": serializers.DateTimeField(),
            "changed": serializers.BooleanField(help_text="The latest count is different from before"),
        })},
    )  # fmt: skip
    def put(self, request, external_id: str, product: str):
        data = validated(UsageWriteSerializer, request.data)
        tenant = _tenant(request, external_id)
        product_row = _product(request, product)
        [result] = services.record_usage(
            request.account, [services.UsageReport(tenant, product_row.key, data["units"], data.get("as_of"))]
        )
        return Response({**UsageSerializer(result.usage).data, "changed": result.changed})

    @extend_schema(summary="A tenant's reported counts for a product, newest first", responses=UsageSerializer(many=True),
                   operation_id="v1_tenants_usage_history")  # fmt: skip
    def get(self, request, external_id: str, product: str):
        tenant = _tenant(request, external_id)
        product_row = _product(request, product)
        rows = selectors.usage_history(request.account, tenant, product_row.key).select_related("tenant")
        paginator = Pagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(UsageSerializer(page, many=True).data)


class TenantUsageView(APIView):
    @extend_schema(summary="A tenant's latest count per product", responses=UsageSerializer(many=True),
                   operation_id="v1_tenants_usage_latest")  # fmt: skip
    def get(self, request, external_id: str):
        tenant = _tenant(request, external_id)
        latest = selectors.latest_usage(request.account, [tenant.pk])
        rows = sorted(latest.values(), key=lambda usage: usage.product_key)
        for usage in rows:
            usage.tenant = tenant
        return Response(UsageSerializer(rows, many=True).data)


class BulkUsageView(APIView):
    @extend_schema(
        summary="Report many tenants' counts at once (all or nothing)",
        description="Every item is checked before any is stored: one bad item answers 400 naming "
        "`items[i].field`, an unknown tenant or product 404 naming `items[i].tenant` / `items[i].product`.",
        request=BulkUsageSerializer,
        responses={200: inline_serializer("BulkUsageRecorded", {
            "accepted": serializers.IntegerField(), "changed": serializers.IntegerField(),
        })},
    )  # fmt: skip
    def post(self, request):
        items = validated(BulkUsageSerializer, request.data)["items"]
        external_ids = {item["tenant"] for item in items}
        tenants = {t.external_id: t for t in Tenant.objects.for_account(request.account).filter(external_id__in=external_ids)}
        products = {p.key for p in ProductMapping.objects.for_account(request.account)}
        reports = []
        for index, item in enumerate(items):
            tenant = tenants.get(item["tenant"])
            if tenant is None:
                raise not_found(f"items[{index}].tenant", f"No tenant with external_id {item['tenant']!r} in this account.")
            if item["product"] not in products:
                raise not_found(f"items[{index}].product", f"No product {item['product']!r} in this account; add it with POST /api/v1/billing/products.")
            reports.append(services.UsageReport(tenant, item["product"], item["units"], item.get("as_of")))
        results = services.record_usage(request.account, reports)
        return Response({"accepted": len(results), "changed": sum(result.changed for result in results)})


# --- products -------------------------------------------------------------------------------------------


class ProductMappingSerializer(serializers.ModelSerializer):
    key = serializers.RegexField(
        PRODUCT_KEY_PATTERN, max_length=40,
        help_text="The hub product key usage is reported for: users, domains, devices, gb...",
        error_messages={"invalid": "Use lower-case letters, digits, '-' and '_' (e.g. users)."},
    )  # fmt: skip
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=4, min_value=0, required=False, allow_null=True,
                                          help_text="Optional override of the PSA product's price (seed 003)")
    unit_cost = serializers.DecimalField(max_digits=12, decimal_places=4, min_value=0, required=False, allow_null=True,
                                         help_text="Optional override of the PSA product's cost (seed 003)")

    class Meta:
        model = ProductMapping
        fields = [
            "key", "name", "vendor", "psa_product_id", "psa_product_name", "invoice_description", "unit_price",
            "unit_cost", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["vendor", "created_at", "updated_at"]
        extra_kwargs = {
            "psa_product_id": {"help_text": "ConnectWise catalog item / Autotask service / Halo item id"},
            "invoice_description": {"help_text": "Optional invoice description for new lines (seed 003)"},
        }


class ProductMappingUpdateSerializer(ProductMappingSerializer):
    """A product's key cannot change: usage is reported under it."""

    class Meta(ProductMappingSerializer.Meta):
        read_only_fields = ["key", *ProductMappingSerializer.Meta.read_only_fields]

    key = serializers.CharField(read_only=True)


@extend_schema_view(
    list=extend_schema(summary="Product mappings: hub product → PSA product"),
    create=extend_schema(summary="Add a product mapping"),
    retrieve=extend_schema(summary="A product mapping"),
    update=extend_schema(summary="Change a product mapping", request=ProductMappingUpdateSerializer),
    partial_update=extend_schema(summary="Change some of a product mapping's fields", request=ProductMappingUpdateSerializer),
    destroy=extend_schema(summary="Remove a product mapping (and its tenant mappings; usage history stays)"),
)
class ProductViewSet(AccountScopedMixin, viewsets.ModelViewSet):
    model = ProductMapping
    serializer_class = ProductMappingSerializer
    lookup_field = "key"
    lookup_value_regex = "[^/]+"
    pagination_class = None

    def get_queryset(self):
        return self.scoped().order_by("key")

    def get_object(self):
        return _product(self.request, self.kwargs["key"], field="key")

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        key = data.pop("key")
        try:
            with transaction.atomic():
                serializer.instance = services.save_product(self.request.account, key, data)
        except IntegrityError:
            error = Conflict(f"key: a product {key!r} already exists in this account.")
            error.hub_fields = {"key": ["A product with this key already exists in this account."]}
            raise error from None

    def get_serializer_class(self):
        return ProductMappingUpdateSerializer if self.action in ("update", "partial_update") else ProductMappingSerializer

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = services.save_product(self.request.account, serializer.instance.key, data, product=serializer.instance)

    def perform_destroy(self, instance):
        services.delete_product(instance)


# --- tenant billing mappings ---------------------------------------------------------------------------


class BillingMappingSerializer(serializers.ModelSerializer):
    product = serializers.CharField(source="product.key", help_text="A product key, e.g. users")
    mode = serializers.ChoiceField(choices=[("", "The account's mode"), *Mode.choices], required=False, allow_blank=True)

    class Meta:
        model = BillingMapping
        fields = [
            "product", "company_id", "company_name", "agreement_id", "agreement_name", "line_id", "line_name",
            "psa_product_id", "mode", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["updated_at"]
        extra_kwargs = {
            "company_id": {"help_text": "Blank: the tenant's company mapping"},
            "agreement_id": {"help_text": "ConnectWise agreement id / Autotask contract id"},
            "line_id": {"help_text": "Autotask contract service id / Halo licence id (blank: find or create)"},
            "psa_product_id": {"help_text": "Blank: the product mapping's (Autotask: the contract service's Service id)"},
        }


class TenantBillingSerializer(serializers.Serializer):
    mappings = BillingMappingSerializer(many=True, max_length=200)


class TenantBillingView(APIView):
    def _body(self, request, tenant: Tenant) -> dict:
        company = CompanyMapping.objects.for_account(request.account).filter(tenant=tenant).first()
        return {
            "tenant": tenant.external_id,
            "company": {"id": company.company_id, "name": company.company_name} if company else None,
            "mappings": BillingMappingSerializer(selectors.tenant_mappings(request.account, tenant), many=True).data,
        }

    @extend_schema(
        summary="The tenant's billing mapping per product",
        responses=inline_serializer("TenantBilling", {
            "tenant": serializers.CharField(),
            "company": inline_serializer("TenantBillingCompany", {"id": serializers.CharField(), "name": serializers.CharField()}, allow_null=True),
            "mappings": BillingMappingSerializer(many=True),
        }),
    )  # fmt: skip
    def get(self, request, external_id: str):
        return Response(self._body(request, _tenant(request, external_id)))

    @extend_schema(
        summary="Replace the tenant's billing mappings",
        description="The tenant's mappings become exactly those sent: products left out are unmapped.",
        request=TenantBillingSerializer,
        responses=OpenApiTypes.OBJECT,
    )
    def put(self, request, external_id: str):
        tenant = _tenant(request, external_id)
        rows, seen = [], set()
        for index, row in enumerate(validated(TenantBillingSerializer, request.data)["mappings"]):
            key = row.pop("product")["key"]
            if key in seen:
                raise exceptions.ValidationError({f"mappings[{index}].product": [f"Product {key!r} is listed twice."]})
            seen.add(key)
            rows.append((_product(request, key, field=f"mappings[{index}].product"), row))
        services.replace_tenant_mappings(request.account, tenant, rows)
        return Response(self._body(request, tenant))


# --- runs ----------------------------------------------------------------------------------------------


class RunItemSerializer(serializers.ModelSerializer):
    tenant = serializers.CharField(source="tenant.external_id")
    tenant_name = serializers.CharField(source="tenant.name")
    product = serializers.CharField(source="product_key")
    usage = serializers.SerializerMethodField()
    mapping = serializers.JSONField(source="mapping_snapshot", help_text="The target and names the plan used")

    class Meta:
        model = BillingItem
        fields = [
            "id", "tenant", "tenant_name", "product", "action", "state", "reason", "error", "mode", "line_id",
            "line_label", "current_quantity", "new_quantity", "before_quantity", "after_quantity", "usage", "mapping",
            "approved_by", "approved_at", "applied_at", "retryable", "attempts", "next_attempt_at",
        ]  # fmt: skip

    def get_usage(self, item) -> dict | None:
        if item.usage_units is None:
            return None
        return {"units": item.usage_units, "as_of": item.usage_as_of}


class RunSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by_label")
    reverts = serializers.IntegerField(source="reverts_id", allow_null=True)
    progress = serializers.SerializerMethodField()
    tenants = serializers.SerializerMethodField()

    class Meta:
        model = BillingRun
        fields = [
            "id", "trigger", "requested_by", "apply", "mode", "vendor", "state", "message", "progress", "counts",
            "tenants", "reverts", "created_at", "started_at", "planned_at", "finished_at",
        ]  # fmt: skip

    def get_progress(self, run) -> dict:
        return {"total": run.total_items, "done": run.processed_items, "percent": run.progress_percent}

    def get_tenants(self, run) -> list[str] | None:
        if run.tenant_ids is None:
            return None
        return list(Tenant.objects.filter(account_id=run.account_id, pk__in=run.tenant_ids).values_list("external_id", flat=True))


class RunDetailSerializer(RunSerializer):
    items = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "items"]

    def get_items(self, run) -> list[dict]:
        params = self.context.get("filters") or {}
        return RunItemSerializer(selectors.run_items(run, **params), many=True).data


class RunCreateSerializer(serializers.Serializer):
    apply = serializers.BooleanField(default=False, help_text="false: preview (plan only); true: sync now")
    tenants = serializers.ListField(child=serializers.CharField(max_length=200), required=False, allow_empty=False,
                                    max_length=BULK_MAX, help_text="external_ids; default: every tenant")


class ApproveSerializer(serializers.Serializer):
    tenants = serializers.ListField(child=serializers.CharField(max_length=200), required=False, allow_empty=False,
                                    max_length=BULK_MAX, help_text="external_ids; default: the whole run")


def _tenants(request, external_ids: list[str] | None) -> list[Tenant] | None:
    if external_ids is None:
        return None
    found = {t.external_id: t for t in Tenant.objects.for_account(request.account).filter(external_id__in=external_ids)}
    for index, external_id in enumerate(external_ids):
        if external_id not in found:
            raise not_found(f"tenants[{index}]", f"No tenant with external_id {external_id!r} in this account.")
    return [found[external_id] for external_id in dict.fromkeys(external_ids)]


@extend_schema_view(
    list=extend_schema(summary="Billing runs, newest first"),
    retrieve=extend_schema(
        summary="A run: its state, progress and per-tenant lines",
        parameters=[
            OpenApiParameter("tenant", str, description="Only this tenant's lines (external_id)"),
            OpenApiParameter("state", str, enum=[c for c, _ in BillingItem.State.choices]),
            OpenApiParameter("action", str, enum=[c for c, _ in BillingItem.Action.choices]),
        ],
    ),
    create=extend_schema(
        summary="Preview (apply=false) or sync now (apply=true); planned in the background",
        request=RunCreateSerializer,
        responses={202: RunSerializer},
    ),
)
class RunViewSet(AccountScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                 viewsets.GenericViewSet):  # fmt: skip
    model = BillingRun
    queryset = BillingRun.objects.none()  # for the schema only; get_queryset scopes to the account
    serializer_class = RunSerializer

    def get_queryset(self):
        return selectors.runs(self.request.account)

    def get_serializer_class(self):
        return RunDetailSerializer if self.action == "retrieve" else RunSerializer

    def get_object(self):
        run = self.get_queryset().filter(pk=self.kwargs["pk"]).first() if str(self.kwargs["pk"]).isdigit() else None
        if run is None:
            raise exceptions.NotFound(f"No billing run {self.kwargs['pk']} in this account.")
        return run

    def retrieve(self, request, *args, **kwargs):
        run = self.get_object()
        filters = {}
        params = request.query_params
        if params.get("tenant"):
            filters["tenant"] = _tenant(request, params["tenant"])
        for name, choices in (("state", BillingItem.State), ("action", BillingItem.Action)):
            value = params.get(name)
            if value:
                if value not in choices.values:
                    raise exceptions.ValidationError({name: [f"{value!r} is not valid; use one of: {', '.join(choices.values)}."]})
                filters[name] = value
        return Response(RunDetailSerializer(run, context={"filters": filters}).data)

    def create(self, request, *args, **kwargs):
        data = validated(RunCreateSerializer, request.data)
        tenants = _tenants(request, data.get("tenants"))
        user = request.user if not isinstance(request.user, ApiKeyPrincipal) else None
        try:
            run = services.start_run(
                request.account, trigger=trigger_of(request), apply=data["apply"], tenants=tenants,
                requested_by=user, label=actor_label(request),
            )  # fmt: skip
        except services.BillingRefused as exc:
            raise refused(exc) from None
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Approve the run's plan (whole, or some tenants) and write it", request=ApproveSerializer,
                   responses={202: RunSerializer})  # fmt: skip
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        run = self.get_object()
        tenants = _tenants(request, validated(ApproveSerializer, request.data).get("tenants"))
        try:
            services.approve_run(run, by=actor_label(request), tenants=tenants)
        except services.BillingRefused as exc:
            raise refused(exc) from None
        run.refresh_from_db()
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Revert the run: a new run writes back each changed line's previous quantity", request=None,
                   responses={202: RunSerializer})  # fmt: skip
    @action(detail=True, methods=["post"])
    def revert(self, request, pk=None):
        run = self.get_object()
        user = request.user if not isinstance(request.user, ApiKeyPrincipal) else None
        try:
            revert = services.revert_run(run, by=actor_label(request), requested_by=user)
        except services.BillingRefused as exc:
            raise refused(exc) from None
        return Response(RunSerializer(revert).data, status=status.HTTP_202_ACCEPTED)


# --- settings -------------------------------------------------------------------------------------------


class BillingSettingsSerializer(serializers.ModelSerializer):
    time_zone = serializers.CharField(source="account.time_zone", read_only=True,
                                      help_text="The account's time zone: scheduled times are in it")
    paused = serializers.BooleanField(required=False, help_text="Billing sync paused (the connection's billing pause)")
    integration_paused = serializers.BooleanField(read_only=True, help_text="The whole integration is paused")
    paused_reason = serializers.CharField(read_only=True, help_text="Why billing cannot run now ('' when it can)")
    last_run = serializers.IntegerField(source="last_run_id", read_only=True, allow_null=True)
    running_run = serializers.IntegerField(source="running_run_id", read_only=True, allow_null=True)

    class Meta:
        model = BillingSettings
        fields = [
            "mode", "max_change_percent", "max_change_units", "schedule", "time_of_day", "day_of_month", "time_zone",
            "auto_sync", "auto_sync_delay_minutes", "paused", "integration_paused", "paused_reason", "next_run_at",
            "last_run_at", "last_run", "running_run", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["next_run_at", "last_run_at", "updated_at"]


class SettingsView(APIView):
    admin_only = True  # mode, guardrails and pause are for admins; every role reads them

    def _body(self, request) -> dict:
        settings_row = services.get_settings(request.account)
        connection = Connection.objects.for_account(request.account).first()
        settings_row.paused = bool(connection and connection.billing_paused)
        settings_row.integration_paused = bool(connection and connection.paused)
        settings_row.paused_reason = services.paused_reason(connection)
        return BillingSettingsSerializer(settings_row).data

    @extend_schema(summary="The account's billing settings", responses=BillingSettingsSerializer)
    def get(self, request):
        return Response(self._body(request))

    @extend_schema(summary="Change billing settings (mode, guardrails, schedule, auto sync, pause)",
                   request=BillingSettingsSerializer, responses=BillingSettingsSerializer)  # fmt: skip
    def put(self, request):
        return self._write(request, partial=False)

    @extend_schema(summary="Change some billing settings", request=BillingSettingsSerializer, responses=BillingSettingsSerializer)
    def patch(self, request):
        return self._write(request, partial=True)

    def _write(self, request, *, partial: bool):
        settings_row = services.get_settings(request.account)
        # Fields left out keep their values, for PUT too: settings are one row, never recreated.
        payload = BillingSettingsSerializer(settings_row, data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        try:
            services.update_settings(request.account, dict(payload.validated_data), by=actor_label(request))
        except services.BillingRefused as exc:
            raise refused(exc) from None
        return Response(self._body(request))


# --- wiring (hub/urls.py includes these under api/v1/ and registers the viewsets) ------------------------

_router = OptionalSlashRouter()
_router.register("billing/products", ProductViewSet, basename="billing-product")
_router.register("billing/runs", RunViewSet, basename="billing-run")

api_urlpatterns = [
    path("billing/settings", SettingsView.as_view(), name="api_billing_settings"),
    path("usage", BulkUsageView.as_view(), name="api_usage_bulk"),
    path("tenants/<str:external_id>/billing", TenantBillingView.as_view(), name="api_tenant_billing"),
    path("tenants/<str:external_id>/usage", TenantUsageView.as_view(), name="api_tenant_usage"),
    path("tenants/<str:external_id>/usage/<str:product>", UsageView.as_view(), name="api_tenant_usage_product"),
    *_router.urls,
]
