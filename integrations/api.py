"""REST API for the PSA link: everything the Integrations pages do, for scripts and hosts."""

from __future__ import annotations

from django.conf import settings
from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from hub.api import Conflict
from hub.models import Tenant
from integrations import registry, services
from integrations.models import CompanyMapping, Connection, Picklist, PsaCompany


class PermissionCheckSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    feature = serializers.CharField()
    ok = serializers.BooleanField()
    message = serializers.CharField()
    fix = serializers.CharField()


class ConnectionSerializer(serializers.ModelSerializer):
    secrets = serializers.SerializerMethodField(help_text="Each secret field: 'set' or 'not set'. Values are never returned.")
    permissions = PermissionCheckSerializer(source="permission_report", many=True, read_only=True)

    class Meta:
        model = Connection
        fields = [
            "vendor", "status", "last_error", "config", "secrets", "verified_at", "paused", "billing_paused",
            "permissions", "permissions_checked_at", "companies_imported_at", "created_at", "updated_at",
        ]

    def get_secrets(self, connection) -> dict[str, str]:
        names = registry.get(connection.vendor).provider.secret_fields
        return {name: "set" if name in connection.secrets_set else "not set" for name in names}


class ConnectionWriteSerializer(serializers.Serializer):
    vendor = serializers.ChoiceField(choices=list(registry.VENDORS), help_text="connectwise, autotask or halo")
    credentials = serializers.DictField(
        help_text="The link form's fields, e.g. ConnectWise: company_id, site, public_key, private_key. "
        "Secret fields are write-only; leave one out on an update to keep the stored value."
    )


def _connection(request) -> Connection:
    connection = Connection.objects.for_account(request.account).first()
    if connection is None:
        raise exceptions.NotFound("No PSA is linked to this account. PUT /api/v1/connection to link one.")
    return connection


class ConnectionView(APIView):
    admin_only = True  # writing credentials is for admins; reading is for every role

    @extend_schema(summary="The account's PSA connection", responses=ConnectionSerializer)
    def get(self, request):
        return Response(ConnectionSerializer(_connection(request)).data)

    @extend_schema(
        summary="Link or update the PSA connection (verification is queued)",
        request=ConnectionWriteSerializer,
        responses={202: ConnectionSerializer},
    )
    def put(self, request):
        payload = ConnectionWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        vendor = payload.validated_data["vendor"]
        existing = Connection.objects.for_account(request.account).first()
        stored = services.stored_secret_names(existing) if existing and existing.vendor == vendor else set()
        data = QueryDict(mutable=True)
        for key, value in payload.validated_data["credentials"].items():
            data[key] = "" if value is None else str(value)
        form = registry.get(vendor).form(data, existing_secrets=stored, allow_private=settings.PSA_ALLOW_PRIVATE_HOSTS)
        if not form.is_valid():
            raise exceptions.ValidationError({f"credentials.{k}": v for k, v in form.errors.items()})
        config, secrets = form.config_and_secrets()
        refused = services.refused_hosts(vendor, config)
        if refused:
            first_field_per_message = {message: name for name, message in reversed(refused.items())}
            raise exceptions.ValidationError({f"credentials.{name}": [message] for message, name in first_field_per_message.items()})
        try:
            connection = services.save_connection(request.account, vendor, config, secrets)
        except services.LinkRefused as exc:
            raise Conflict(f"vendor: {exc}") from None
        return Response(ConnectionSerializer(connection).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Remove the integration (credentials, mappings and cached PSA data)", responses={204: None})
    def delete(self, request):
        services.remove_connection(_connection(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class VerifyView(APIView):
    admin_only = True

    @extend_schema(summary="Verify the connection again (queued)", request=None, responses={202: ConnectionSerializer})
    def post(self, request):
        connection = _connection(request)
        services.queue_verification(connection, services.new_correlation_id())
        connection.refresh_from_db()
        return Response(ConnectionSerializer(connection).data, status=status.HTTP_202_ACCEPTED)


class PermissionsView(APIView):
    @extend_schema(
        summary="The last permission report",
        responses=inline_serializer("PermissionReport", {
            "checked_at": serializers.DateTimeField(allow_null=True),
            "ok": serializers.BooleanField(),
            "missing": PermissionCheckSerializer(many=True),
            "checks": PermissionCheckSerializer(many=True),
        }),
    )
    def get(self, request):
        return Response(self._report(_connection(request)))

    @extend_schema(summary="Check permissions in the PSA (queued; GET shows the report)", request=None, responses={202: OpenApiTypes.OBJECT})
    def post(self, request):
        connection = _connection(request)
        services.queue_permission_check(connection)
        return Response({**self._report(connection), "queued": True}, status=status.HTTP_202_ACCEPTED)

    @staticmethod
    def _report(connection: Connection) -> dict:
        checks = connection.permission_report or []
        missing = [check for check in checks if not check["ok"]]
        return {"checked_at": connection.permissions_checked_at, "ok": bool(checks) and not missing, "missing": missing, "checks": checks}


class PicklistView(APIView):
    @extend_schema(
        summary="A cached PSA list (companies, boards or queues, statuses, priorities, types, products…)",
        parameters=[
            OpenApiParameter("parent", str, description="The board/queue/ticket type/company/contract the list belongs to"),
            OpenApiParameter("refresh", bool, description="1 queues a refresh from the PSA"),
        ],
        responses=inline_serializer("Picklist", {
            "kind": serializers.CharField(),
            "parent": serializers.CharField(),
            "fetched_at": serializers.DateTimeField(allow_null=True),
            "refreshing": serializers.BooleanField(),
            "error": serializers.CharField(),
            "items": serializers.ListField(child=serializers.DictField()),
        }),
    )
    def get(self, request, kind: str):
        connection = _connection(request)
        parent = request.query_params.get("parent", "")
        if kind == "companies":
            items = [
                {"id": c.company_id, "name": c.name, "identifier": c.identifier, "active": c.active}
                for c in PsaCompany.objects.filter(connection=connection).order_by("name")
            ]
            return Response({"kind": kind, "parent": "", "fetched_at": connection.companies_imported_at,
                             "refreshing": False, "error": "", "items": items})
        kinds = registry.get(connection.vendor).provider.picklist_kinds
        if kind not in kinds:
            raise exceptions.NotFound(f"{connection.get_vendor_display()} has no list {kind!r}; known lists: companies, {', '.join(kinds)}.")
        if kinds[kind] and not parent:
            raise exceptions.ValidationError({"parent": [f"The {kind} list belongs to a {kinds[kind]}: pass ?parent=<its id>."]})
        refresh = request.query_params.get("refresh") in ("1", "true")
        if refresh:
            services.queue_picklist_refresh(connection, kinds=[(kind, parent)])
        entry = services.picklist(connection, kind, parent) or Picklist(kind=kind, parent_id=parent)
        return Response({
            "kind": kind, "parent": parent, "fetched_at": entry.fetched_at,
            "refreshing": refresh or entry.fetched_at is None, "error": entry.error, "items": entry.items,
        })


class PauseSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=["integration", "billing"], default="integration",
                                    help_text="integration: tickets, billing and imports; billing: billing sync only")


class PauseView(APIView):
    admin_only = True
    paused = True

    @extend_schema(summary="Pause (or resume) the integration or billing only", request=PauseSerializer, responses=ConnectionSerializer)
    def post(self, request):
        payload = PauseSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        connection = services.set_paused(
            _connection(request), paused=self.paused, billing_only=payload.validated_data["scope"] == "billing"
        )
        return Response(ConnectionSerializer(connection).data)


class ResumeView(PauseView):
    paused = False


class CompanyMappingSerializer(serializers.Serializer):
    company_id = serializers.CharField(allow_blank=True, help_text="The PSA company id; empty to unmap")
    company_name = serializers.CharField(read_only=True)


class TenantCompanyView(APIView):
    def _tenant(self, request, external_id: str) -> Tenant:
        tenant = Tenant.objects.for_account(request.account).filter(external_id=external_id).first()
        if tenant is None:
            raise exceptions.NotFound(f"No tenant with external_id {external_id!r} in this account.")
        return tenant

    @extend_schema(summary="The tenant's PSA company mapping", responses=CompanyMappingSerializer)
    def get(self, request, external_id: str):
        tenant = self._tenant(request, external_id)
        mapping = CompanyMapping.objects.for_account(request.account).filter(tenant=tenant).first()
        if mapping is None:
            raise exceptions.NotFound(f"Tenant {external_id!r} is not mapped to a PSA company.")
        return Response({"company_id": mapping.company_id, "company_name": mapping.company_name})

    @extend_schema(summary="Map the tenant to a PSA company", request=CompanyMappingSerializer, responses=CompanyMappingSerializer)
    def put(self, request, external_id: str):
        tenant = self._tenant(request, external_id)
        connection = _connection(request)
        payload = CompanyMappingSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        company_id = payload.validated_data["company_id"].strip()
        company = PsaCompany.objects.filter(connection=connection, company_id=company_id).first()
        if company_id and company is None:
            raise exceptions.ValidationError(
                {"company_id": [f"No imported {connection.get_vendor_display()} company has id {company_id!r}; import customers first."]}
            )
        mapping = services.map_tenant(request.account, tenant, company_id, company.name if company else "")
        if mapping is None:
            return Response({"company_id": "", "company_name": ""})
        return Response({"company_id": mapping.company_id, "company_name": mapping.company_name})


# --- the integration log and connection health (integrations/logs.py, integrations/health.py) ---

from django.urls import reverse as _reverse  # noqa: E402

from integrations import health as _health  # noqa: E402
from integrations import logs as _logs  # noqa: E402
from integrations.models import IntegrationLog  # noqa: E402

LOG_FILTER_PARAMETERS = [
    OpenApiParameter("account", str, description="Vendor staff only: an account id, or `all`. Anyone else: their own "
                     "account id or nothing (another account is a 404)."),
    OpenApiParameter("range", str, enum=list(_logs.RANGES), description="Entries of the last hour, day, week..."),
    OpenApiParameter("since", str, description="From this date or date-time (ISO 8601, UTC unless an offset is given)"),
    OpenApiParameter("until", str, description="Before this date (the whole day is included) or date-time"),
    OpenApiParameter("tenant", str, description="The tenant's external_id"),
    OpenApiParameter("group", str, enum=list(_logs.GROUPS), description="The action group: the action's prefix"),
    OpenApiParameter("action", str, description="One action, e.g. `connection.verify` (or a group)"),
    OpenApiParameter("outcome", str, enum=list(_logs.OUTCOMES)),
    OpenApiParameter("status", int, description="The PSA's HTTP status of a request entry, e.g. 401"),
    OpenApiParameter("q", str, description=f"Words in the message ({_logs.SEARCH_MIN}–{_logs.SEARCH_MAX} characters)"),
    OpenApiParameter("level", str, enum=list(_logs.LEVELS), description="Actions, PSA requests, or both (default)"),
    OpenApiParameter("cursor", str, description="From `next` of the previous page"),
    OpenApiParameter("page_size", int, description=f"1–{_logs.MAX_PAGE_SIZE} (default {_logs.PAGE_SIZE})"),
]


class LogRequestSerializer(serializers.Serializer):
    method = serializers.CharField(source="http_method")
    path = serializers.CharField(source="http_path")
    status = serializers.IntegerField(source="http_status", allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)


class LogEntrySerializer(serializers.ModelSerializer):
    account = serializers.SerializerMethodField()
    tenant = serializers.SerializerMethodField()
    group = serializers.CharField(source="action_group")
    doing = serializers.SerializerMethodField(help_text="What the hub was doing")
    request = serializers.SerializerMethodField(help_text="The PSA request of a request entry; null for an action")
    subject_url = serializers.SerializerMethodField(help_text="The page of the incident or billing run concerned")
    url = serializers.SerializerMethodField()

    class Meta:
        model = IntegrationLog
        fields = ["id", "created_at", "account", "tenant", "action", "group", "outcome", "error_kind", "message", "doing",
                  "request", "correlation_id", "subject", "subject_url", "url"]

    def get_account(self, entry) -> dict:
        return {"id": entry.account_id, "name": entry.account.name}

    def get_tenant(self, entry) -> dict | None:
        if not entry.tenant_id:
            return None
        return {"external_id": entry.tenant.external_id, "name": entry.tenant.name}

    def get_doing(self, entry) -> str:
        return _logs.describe(entry)

    def get_request(self, entry) -> dict | None:
        return LogRequestSerializer(entry).data if entry.is_request else None

    def get_subject_url(self, entry) -> str:
        return _logs.subject_url(entry.subject)

    def get_url(self, entry) -> str:
        request = self.context.get("request")
        path = _reverse("api_log", args=[entry.pk])
        return request.build_absolute_uri(path) if request else path


class LogRequestDetailSerializer(LogEntrySerializer):
    request_excerpt = serializers.CharField(help_text="Redacted when it was written")
    response_excerpt = serializers.CharField(help_text="Redacted when it was written")

    class Meta(LogEntrySerializer.Meta):
        fields = LogEntrySerializer.Meta.fields + ["request_excerpt", "response_excerpt"]


class LogDetailSerializer(LogRequestDetailSerializer):
    requests = serializers.SerializerMethodField(help_text="Every PSA request of this action (same correlation id)")
    related = serializers.SerializerMethodField(help_text="The other action entries with the same correlation id")

    class Meta(LogRequestDetailSerializer.Meta):
        fields = LogRequestDetailSerializer.Meta.fields + ["requests", "related"]

    def _rows(self, entry):
        if not hasattr(self, "_related_rows"):
            self._related_rows = _logs.related(entry)
        return self._related_rows

    def get_requests(self, entry) -> list[dict]:
        rows = [row for row in self._rows(entry) if row.is_request]
        for row in rows:
            row.account = entry.account
        return LogRequestDetailSerializer(rows, many=True, context=self.context).data

    def get_related(self, entry) -> list[dict]:
        rows = [row for row in self._rows(entry) if not row.is_request and row.pk != entry.pk]
        for row in rows:
            row.account = entry.account
        return LogEntrySerializer(rows, many=True, context=self.context).data


class LogListView(APIView):
    @extend_schema(
        operation_id="logs_list",
        summary="The integration log, newest first (keyset pages: follow `next`)",
        description="Filters that cannot be used are ignored and named in `warnings`; they never fail the request.",
        parameters=LOG_FILTER_PARAMETERS,
        responses=inline_serializer("LogPage", {
            "results": LogEntrySerializer(many=True),
            "next": serializers.CharField(allow_null=True, help_text="The URL of the next (older) page"),
            "warnings": serializers.ListField(child=serializers.CharField()),
        }),
    )
    def get(self, request):
        filters = _logs.parse_filters(request.query_params, user=request.user, account=request.account,
                                      page_size_param="page_size")
        rows, cursor = _logs.page(filters)
        next_url = None
        if cursor:
            next_url = request.build_absolute_uri(f"{request.path}?{filters.querystring(cursor=cursor)}"
                                                  + (f"&page_size={filters.page_size}" if filters.page_size != _logs.PAGE_SIZE else ""))
        return Response({
            "results": LogEntrySerializer(rows, many=True, context={"request": request}).data,
            "next": next_url,
            "warnings": filters.warnings,
        })


class LogDetailView(APIView):
    admin_only = True  # reading is for every role; deleting for admins

    @extend_schema(operation_id="logs_retrieve", summary="One log entry with every PSA request of its action",
                   responses=LogDetailSerializer)
    def get(self, request, pk: int):
        entry = _logs.entry_for(request.user, request.account, pk)
        return Response(LogDetailSerializer(entry, context={"request": request}).data)

    @extend_schema(operation_id="logs_destroy", summary="Delete one entry of this account (admins; the deletion is logged)",
                   responses={204: None})
    def delete(self, request, pk: int):
        from integrations.views_logs import delete_entry

        delete_entry(_logs.entry_for(None, request.account, pk), request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class FixSerializer(serializers.Serializer):
    title = serializers.CharField()
    text = serializers.CharField()
    url = serializers.CharField()


class HealthEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    message = serializers.CharField()
    error_kind = serializers.CharField()


class HealthKindSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="tickets, billing or verification")
    label = serializers.CharField()
    last_success = HealthEntrySerializer(allow_null=True)
    last_failure = HealthEntrySerializer(allow_null=True)
    failures_24h = serializers.IntegerField()
    failures_url = serializers.CharField(help_text="The logs page filtered to these failures")


class ExpirySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    source = serializers.CharField(help_text="psa: the PSA gave the date; age: the keys reach the maximum age")
    days_left = serializers.IntegerField()
    warn = serializers.BooleanField()
    message = serializers.CharField()


class HealthSerializer(serializers.Serializer):
    state = serializers.CharField(help_text="healthy, degraded, broken or credentials_rejected")
    state_label = serializers.CharField()
    since = serializers.DateTimeField(allow_null=True)
    checked_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(help_text="The last error behind a state other than healthy")
    fix = FixSerializer(allow_null=True, source="state_fix")
    kinds = HealthKindSerializer(many=True)
    streaks = serializers.ListField(child=serializers.DictField(), help_text="Kinds whose last actions all failed")
    expiry = ExpirySerializer(allow_null=True)
    expiry_warnings = ExpirySerializer(many=True)


class HealthView(APIView):
    @extend_schema(operation_id="connection_health_retrieve",
                   summary="The connection's health: state, last success and failure per kind, expiry warnings",
                   responses=HealthSerializer)
    def get(self, request):
        overview = _health.overview(_connection(request))
        overview["streaks"] = [{**s, "fix": vars(s["fix"])} for s in overview["streaks"]]
        return Response(HealthSerializer(overview).data)
