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
