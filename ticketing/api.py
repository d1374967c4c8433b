"""REST API for incidents: the host product reports them, reads back their PSA ticket."""

from __future__ import annotations

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from hub.api import AccountScopedMixin
from hub.models import Tenant
from ticketing import services
from ticketing.models import SEVERITIES, STATUSES, Incident

DETAILS_MAX = 1_000_000  # the PSA limits are far lower; adapters truncate with a note


def _choice(name: str, choices: list[str], **kwargs) -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=choices,
        error_messages={"invalid_choice": f"{{input}} is not a valid {name}; use one of: {', '.join(choices)}."},
        **kwargs,
    )


class TicketRefSerializer(serializers.Serializer):
    id = serializers.CharField(source="ticket_id")
    number = serializers.CharField()
    url = serializers.CharField()
    closed = serializers.SerializerMethodField()

    def get_closed(self, ticket) -> bool:
        return ticket.closed_at is not None


class IncidentSerializer(serializers.ModelSerializer):
    tenant = serializers.CharField(source="tenant.external_id", help_text="The tenant's external_id")
    severity = _choice("severity", SEVERITIES)
    status = _choice("status", STATUSES, default="Open")
    details = serializers.CharField(allow_blank=True, required=False, max_length=DETAILS_MAX, help_text="Plain text or Markdown")
    ticket = TicketRefSerializer(read_only=True, allow_null=True)
    sync = serializers.SerializerMethodField()

    class Meta:
        model = Incident
        fields = [
            "id", "tenant", "title", "details", "severity", "status", "dedupe_key", "contact_email", "source_url",
            "occurrences", "last_seen_at", "ticket", "sync", "status_source", "created_at", "updated_at",
        ]
        read_only_fields = ["occurrences", "last_seen_at", "status_source", "created_at", "updated_at"]

    def get_sync(self, incident) -> dict:
        return {
            "state": incident.sync_state,
            "error": incident.sync_error,
            "attempts": incident.sync_attempts,
            "synced_at": incident.synced_at,
        }


class IncidentChangeSerializer(serializers.Serializer):
    status = _choice("status", STATUSES, required=False)
    severity = _choice("severity", SEVERITIES, required=False)
    details = serializers.CharField(allow_blank=True, required=False, max_length=DETAILS_MAX,
                                    help_text="New details; once the ticket exists they are added to it as a note")

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Send at least one of status, severity or details.")
        return attrs


class NoteSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=DETAILS_MAX)


@extend_schema_view(
    list=extend_schema(
        summary="List incidents",
        parameters=[
            OpenApiParameter("tenant", str, description="external_id of a tenant"),
            OpenApiParameter("status", str, enum=STATUSES),
            OpenApiParameter("severity", str, enum=SEVERITIES),
            OpenApiParameter("sync_state", str, enum=[c for c, _ in Incident.Sync.choices]),
            OpenApiParameter("changed_since", str, description="ISO 8601 time: incidents updated after it"),
        ],
    ),
    retrieve=extend_schema(summary="An incident with its PSA ticket and sync state"),
    create=extend_schema(
        summary="Report an incident (stored at once; the ticket is made in the background)",
        responses={201: IncidentSerializer, 200: IncidentSerializer},
        description="A repeat with the same dedupe_key while its ticket is open adds a note to that ticket "
        "and answers 200 with the existing incident.",
    ),
    partial_update=extend_schema(summary="Change status, severity or details", request=IncidentChangeSerializer),
)
class IncidentViewSet(
    AccountScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    model = Incident
    queryset = Incident.objects.none()  # for the schema's id type; requests use get_queryset()
    serializer_class = IncidentSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        incidents = self.scoped().select_related("tenant", "ticket")
        params = self.request.query_params
        if params.get("tenant"):
            incidents = incidents.filter(tenant__external_id=params["tenant"])
        for field, allowed in (("status", STATUSES), ("severity", SEVERITIES), ("sync_state", [c for c, _ in Incident.Sync.choices])):
            value = params.get(field)
            if value:
                if value not in allowed:
                    raise exceptions.ValidationError({field: [f"{value!r} is not valid; use one of: {', '.join(allowed)}."]})
                incidents = incidents.filter(**{field: value})
        if params.get("changed_since"):
            since = parse_datetime(params["changed_since"])
            if since is None:
                raise exceptions.ValidationError({"changed_since": ["Use an ISO 8601 time, e.g. 2026-01-31T12:00:00Z."]})
            incidents = incidents.filter(updated_at__gt=since).order_by("updated_at", "id")
        return incidents

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        external_id = data.pop("tenant")["external_id"]
        tenant = Tenant.objects.for_account(request.account).filter(external_id=external_id).first()
        if tenant is None:
            raise exceptions.NotFound(f"tenant: no tenant with external_id {external_id!r} in this account; create it first with PUT /api/v1/tenants/{external_id}.")
        incident, created = services.accept_incident(request.account, tenant, data)
        body = {**self.get_serializer(incident).data, "deduplicated": not created}
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def partial_update(self, request, *args, **kwargs):
        changes = IncidentChangeSerializer(data=request.data)
        changes.is_valid(raise_exception=True)
        incident = services.change_incident(self.get_object(), changes.validated_data, source="api")
        return Response(self.get_serializer(incident).data)

    @extend_schema(summary="Add a note to the incident's ticket", request=NoteSerializer, responses={202: IncidentSerializer})
    @action(detail=True, methods=["post"])
    def notes(self, request, pk=None):
        payload = NoteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        incident = self.get_object()
        services.add_note(incident, payload.validated_data["text"])
        incident.refresh_from_db()
        return Response(self.get_serializer(incident).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Try a failed incident again", request=None, responses={202: IncidentSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        incident = self.get_object()
        services.retry_incident(incident)
        incident.refresh_from_db()
        return Response(self.get_serializer(incident).data, status=status.HTTP_202_ACCEPTED)


# --- Ticketing settings and the routing preview -------------------------------------------------------
# GET/PUT /api/v1/ticketing/config and POST /api/v1/ticketing/preview: the Ticketing page for
# scripts, validated with the page's own form (ticketing.forms) against the cached picklists.
# Imported here so the incident API above stays as it is.

from drf_spectacular.utils import inline_serializer  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from hub.api import AccountRolePermission, Conflict  # noqa: E402
from integrations.models import Connection  # noqa: E402
from ticketing import forms as ticketing_forms  # noqa: E402
from ticketing.fields import VENDOR_TICKETING  # noqa: E402


def _optional_id(help_text: str = "") -> serializers.CharField:
    return serializers.CharField(required=False, allow_blank=True, max_length=64, help_text=help_text)


TicketingStatusMapSerializer = type("TicketingStatusMapSerializer", (serializers.Serializer,), {
    **{status_: _optional_id(f"PSA status id for incidents in status {status_}") for status_ in STATUSES},
    "new": _optional_id("Autotask only: the status new tickets are created with (empty: Open's)"),
})
TicketingPriorityMapSerializer = type("TicketingPriorityMapSerializer", (serializers.Serializer,), {
    severity: _optional_id(f"PSA priority id for severity {severity}") for severity in SEVERITIES
})


# The vendor settings kept in TicketingConfig.extra, from ticketing.fields ("extra.<key>").
TicketingExtraSerializer = type("TicketingExtraSerializer", (serializers.Serializer,), {
    field_.name.split(".", 1)[1]: _optional_id(f"{vendor_.capitalize() if vendor_ != 'connectwise' else 'ConnectWise'}: {field_.label}")
    for vendor_, spec_ in VENDOR_TICKETING.items() for field_ in spec_.fields if field_.name.startswith("extra.")
})


class TicketingConfigWriteSerializer(serializers.Serializer):
    board_id = _optional_id("ConnectWise Service Board / Autotask Queue / Halo Ticket Type")
    status_map = TicketingStatusMapSerializer(required=False)
    priority_map = TicketingPriorityMapSerializer(required=False)
    default_priority_id = _optional_id("ConnectWise: priority for severities without one")
    type_id = _optional_id("ConnectWise Type / Autotask Ticket Type")
    subtype_id = _optional_id("ConnectWise Subtype")
    item_id = _optional_id("ConnectWise Item")
    source_id = _optional_id("ConnectWise / Autotask Source")
    team_id = _optional_id("Halo Team")
    extra = TicketingExtraSerializer(required=False)
    default_company_id = _optional_id("Imported PSA company for tenants that are not mapped")
    reopen_within_hours = serializers.IntegerField(
        required=False, min_value=0, max_value=ticketing_forms.REOPEN_MAX_HOURS,
        help_text="A repeated incident reopens its ticket if that was closed less than this many hours ago",
    )


class TicketingFieldSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Where the value goes in this document, e.g. status_map.Open")
    label = serializers.CharField()
    list = serializers.CharField(help_text="The picklist kind: GET /api/v1/connection/picklists/{list}?parent=")
    parent = serializers.CharField(help_text="The id the list belongs to (a board...), empty when none")
    parent_field = serializers.CharField(help_text="The field whose value is the parent, empty when none")
    required = serializers.BooleanField()
    list_state = serializers.ChoiceField(choices=["ready", "loading", "error", "needs_parent"])
    list_error = serializers.CharField()


class TicketingConfigSerializer(TicketingConfigWriteSerializer):
    vendor = serializers.CharField(help_text="The linked PSA: connectwise, autotask or halo")
    configured = serializers.BooleanField(help_text="Whether settings were saved for this PSA")
    board_name = serializers.CharField()
    default_company_name = serializers.CharField()
    missing_statuses = serializers.ListField(child=serializers.CharField(), help_text="Incident statuses with no PSA status")
    missing_priorities = serializers.ListField(child=serializers.CharField(), help_text="Severities with no PSA priority")
    warnings = serializers.ListField(child=serializers.CharField(), help_text="E.g. a ConnectWise board without a Default Team")
    fields = TicketingFieldSerializer(many=True, help_text="What this PSA asks for, and the cached list of each")
    updated_at = serializers.DateTimeField(allow_null=True)


def _ticketing_connection(request) -> Connection:
    connection = Connection.objects.for_account(request.account).first()
    if connection is None:
        raise Conflict("No PSA is linked to this account: link one first (PUT /api/v1/connection); ticketing is "
                       "configured from its boards, statuses and priorities.")
    if connection.status != Connection.Status.CONNECTED:
        raise Conflict(f"{connection.get_vendor_display()} is linked but not connected ({connection.get_status_display()}"
                       f"{': ' + connection.last_error if connection.last_error else ''}). Ticketing is configured from "
                       "its lists once the connection is verified.")
    return connection


def _config_document(form: ticketing_forms.TicketingForm) -> dict:
    config = form.config
    values = ticketing_forms.config_values(config, form.spec)
    rows = {row.api: row for row in form.rows}
    status_keys = STATUSES + (["new"] if form.spec.new_status else [])
    document = {
        "vendor": form.vendor,
        "configured": config is not None,
        "board_id": values.get("board_id", ""),
        "board_name": config.board_name if config else "",
        "status_map": {key: values.get(f"status_{key}", "") for key in status_keys},
        "priority_map": {severity: values.get(f"priority_{severity}", "") for severity in SEVERITIES},
        "default_company_id": values.get("default_company_id", ""),
        "default_company_name": config.default_company_name if config else "",
        "reopen_within_hours": values.get("reopen_within_hours", 24),
        "missing_statuses": config.missing_statuses() if config else list(STATUSES),
        "missing_priorities": config.missing_priorities() if config else list(SEVERITIES),
        "warnings": form.warnings,
        "fields": [
            {"name": row.api, "label": row.label, "list": row.kind, "parent": row.parent_id,
             "parent_field": next((r.api for r in form.rows if r.name == row.parent), ""), "required": row.required,
             "list_state": row.state, "list_error": row.error}
            for row in form.rows
        ],
        "updated_at": config.updated_at if config else None,
    }
    extra = {}
    for api_name in rows:
        if api_name.startswith("extra."):
            extra[api_name.split(".", 1)[1]] = values.get(ticketing_forms.html_name(api_name), "")
        elif "." not in api_name and api_name != "board_id":
            document[api_name] = values.get(api_name, "")
    if extra:
        document["extra"] = extra
    return document


def _form_values(data: dict) -> dict[str, str]:
    """The API document's values under the form's field names ("status_map.Open" -> "status_Open")."""
    values: dict[str, str] = {}
    for key, value in data.items():
        if key in ("status_map", "priority_map"):
            prefix = "status_" if key == "status_map" else "priority_"
            values.update({f"{prefix}{name}": inner for name, inner in value.items()})
        elif key == "extra":
            values.update({f"extra_{name}": inner for name, inner in value.items()})
        else:
            values[key] = value
    return values


def _api_name(form_name: str) -> str:
    for prefix, group in (("status_", "status_map."), ("priority_", "priority_map."), ("extra_", "extra.")):
        if form_name.startswith(prefix):
            return group + form_name.removeprefix(prefix)
    return form_name


class TicketingConfigView(APIView):
    """The Ticketing page's settings. Reading is for every role, changing for operators and admins."""

    @extend_schema(summary="The ticketing settings (board/queue, status and priority mapping, defaults)",
                   responses=TicketingConfigSerializer)
    def get(self, request):
        connection = _ticketing_connection(request)
        form = ticketing_forms.TicketingForm(connection=connection, config=ticketing_forms.config_for(request.account))
        return Response(_config_document(form))

    @extend_schema(
        summary="Change the ticketing settings",
        description="Each value is checked against the connection's cached lists (GET "
        "/api/v1/connection/picklists/{kind}). Keys left out keep their current value; send \"\" to clear one. "
        "When the board (queue, ticket type) changes, its statuses must be mapped again: saved values that are "
        "not in the new board's list are cleared unless sent. An incomplete status mapping is saved and listed "
        "in missing_statuses. Setting a default company sends the incidents that waited for one.",
        request=TicketingConfigWriteSerializer,
        responses=TicketingConfigSerializer,
    )
    def put(self, request):
        connection = _ticketing_connection(request)
        payload = TicketingConfigWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        config = ticketing_forms.config_for(request.account)
        current = ticketing_forms.TicketingForm(connection=connection, config=config, queue_refresh=False)
        given = _form_values(payload.validated_data)
        known = {row.name for row in current.rows} | {"default_company_id", "reopen_within_hours"}
        unknown = {_api_name(name): [f"{current.psa} has no such setting; leave {_api_name(name)} out."]
                   for name, value in given.items() if name not in known and value not in ("", None)}
        if unknown:
            raise exceptions.ValidationError(unknown)
        values = {**ticketing_forms.config_values(current.config, current.spec),
                  **{name: value for name, value in given.items() if name in known}}
        form = ticketing_forms.TicketingForm(
            values, connection=connection, config=config, drop_stale={name for name in known if name not in given},
        )
        if not form.is_valid():
            raise exceptions.ValidationError(form.api_errors())
        form.save(request.account)
        saved = ticketing_forms.TicketingForm(connection=connection, config=ticketing_forms.config_for(request.account))
        return Response(_config_document(saved))


class TicketingPreviewRequestSerializer(serializers.Serializer):
    tenant = serializers.CharField(help_text="The tenant's external_id")
    severity = _choice("severity", SEVERITIES)


class TicketingPreviewSerializer(serializers.Serializer):
    ready = serializers.BooleanField(help_text="Whether a ticket would be created now")
    state = serializers.CharField(help_text="When not ready: the state an incident would take (needs_mapping, failed)")
    message = serializers.CharField(help_text="When not ready: why, and the fix")
    note = serializers.CharField(help_text="E.g. that the integration is paused")
    tenant = serializers.CharField()
    severity = serializers.CharField()
    company = inline_serializer("TicketingPreviewCompany", {
        "id": serializers.CharField(), "name": serializers.CharField(),
        "source": serializers.ChoiceField(choices=["mapping", "default"]),
    }, allow_null=True)
    board = inline_serializer("TicketingPreviewChoice", {"id": serializers.CharField(), "name": serializers.CharField()},
                              allow_null=True)
    status = inline_serializer("TicketingPreviewStatus", {"id": serializers.CharField(), "name": serializers.CharField()},
                               allow_null=True)
    priority = inline_serializer("TicketingPreviewPriority", {"id": serializers.CharField(), "name": serializers.CharField()},
                                 allow_null=True)
    type = inline_serializer("TicketingPreviewType", {"id": serializers.CharField(), "name": serializers.CharField()},
                             allow_null=True)


class PreviewPermission(AccountRolePermission):
    """The preview writes nothing: every role may ask for it, though it is a POST."""

    def has_permission(self, request, view):
        # The parent raises for the unauthenticated and for people outside the account, and
        # answers False only when a reader asks to write.
        return super().has_permission(request, view) or request.actor.can_read


class TicketingPreviewView(APIView):
    permission_classes = [PreviewPermission]

    @extend_schema(
        summary="Where a ticket would land for a tenant and severity (writes nothing)",
        description="The company (from the tenant's mapping or the default company), board/queue, status for a new "
        "ticket, priority and type. When a ticket could not be made, ready is false and message says why.",
        request=TicketingPreviewRequestSerializer,
        responses=TicketingPreviewSerializer,
    )
    def post(self, request):
        connection = _ticketing_connection(request)
        payload = TicketingPreviewRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        external_id = payload.validated_data["tenant"]
        tenant = Tenant.objects.for_account(request.account).filter(external_id=external_id).first()
        if tenant is None:
            raise exceptions.NotFound(f"tenant: no tenant with external_id {external_id!r} in this account.")
        preview = ticketing_forms.preview_route(
            connection, ticketing_forms.config_for(request.account), tenant, payload.validated_data["severity"]
        )

        def pair(item_id: str, name: str) -> dict | None:
            return {"id": item_id, "name": name} if preview.ready else None

        return Response({
            "ready": preview.ready,
            "state": "" if preview.ready else preview.state,
            "message": preview.message,
            "note": preview.note,
            "tenant": tenant.external_id,
            "severity": preview.severity,
            "company": {"id": preview.company_id, "name": preview.company_name, "source": preview.company_source}
            if preview.ready else None,
            "board": pair(preview.board_id, preview.board_name),
            "status": pair(preview.status_id, preview.status_name),
            "priority": pair(preview.priority_id, preview.priority_name),
            "type": pair(preview.type_id, preview.type_name) if preview.type_id else None,
        })
