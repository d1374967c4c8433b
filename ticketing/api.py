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
    details = serializers.CharField(allow_blank=True, required=False, max_length=DETAILS_MAX)

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
