"""REST API v1: tenants, keyed by the host product's external id (upsert with PUT)."""

from django.db import IntegrityError, transaction
from django.db.models import Q
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.response import Response

from hub.api import AccountScopedMixin, Conflict
from hub.models import EXTERNAL_ID_MAX, Tenant


class TenantSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(
        max_length=EXTERNAL_ID_MAX,
        help_text="The host product's id for this customer; unique within the account.",
        error_messages={"blank": "external_id is required: the host product's id for this customer."},
    )
    name = serializers.CharField(max_length=200, error_messages={"blank": "name is required."})

    class Meta:
        model = Tenant
        fields = ["external_id", "name", "is_active", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def validate_external_id(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("external_id is required: the host product's id for this customer.")
        if "/" in value:
            raise serializers.ValidationError("external_id cannot contain '/'.")
        return value


class TenantUpsertSerializer(TenantSerializer):
    class Meta(TenantSerializer.Meta):
        fields = ["name", "is_active", "created_at", "updated_at"]


@extend_schema_view(
    list=extend_schema(summary="List tenants", description="`?search=` matches name or external id."),
    create=extend_schema(summary="Create a tenant", responses={201: TenantSerializer}),
    retrieve=extend_schema(summary="Read a tenant"),
    update=extend_schema(
        summary="Create or replace a tenant by external id (upsert)",
        request=TenantUpsertSerializer,
        responses={200: TenantSerializer, 201: TenantSerializer},
    ),
    partial_update=extend_schema(summary="Change some of a tenant's fields", request=TenantUpsertSerializer),
    destroy=extend_schema(summary="Deactivate a tenant", description="Tenants are deactivated, never deleted: history stays."),
)
class TenantViewSet(
    AccountScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    model = Tenant
    serializer_class = TenantSerializer
    lookup_field = "external_id"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        queryset = self.scoped()
        search = self.request.query_params.get("search", "").strip()
        if search:
            queryset = queryset.filter(Q(name__icontains=search) | Q(external_id__icontains=search))
        active = self.request.query_params.get("active")
        if active in ("true", "false"):
            queryset = queryset.filter(is_active=active == "true")
        return queryset

    def get_object(self):
        external_id = self.kwargs["external_id"].strip()  # as update() reads it
        tenant = self.scoped().filter(external_id=external_id).first()
        if tenant is None:
            raise exceptions.NotFound(f"No tenant with external_id {external_id!r} in this account.")
        return tenant

    def perform_create(self, serializer):
        external_id = serializer.validated_data["external_id"]
        try:
            with transaction.atomic():
                serializer.save(account=self.request.account)
        except IntegrityError:
            error = Conflict(f"external_id: a tenant with external_id {external_id!r} already exists in this account.")
            error.hub_code = "conflict"
            error.hub_fields = {"external_id": ["A tenant with this external_id already exists in this account."]}
            raise error from None

    def update(self, request, *args, **kwargs):
        external_id = self.kwargs["external_id"].strip()
        if not external_id:
            raise exceptions.ValidationError(
                {"external_id": ["external_id is required: the host product's id for this customer."]}
            )
        if len(external_id) > EXTERNAL_ID_MAX:
            raise exceptions.ValidationError({"external_id": [f"Ensure this field has no more than {EXTERNAL_ID_MAX} characters."]})
        partial = kwargs.get("partial", False)
        tenant = self.scoped().filter(external_id=external_id).first()
        if tenant is None and partial:
            raise exceptions.NotFound(f"No tenant with external_id {external_id!r} in this account.")
        serializer = TenantUpsertSerializer(tenant, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        if tenant is None:
            with transaction.atomic():
                tenant, created = Tenant.objects.get_or_create(
                    account=request.account, external_id=external_id, defaults=serializer.validated_data
                )
            if not created:
                serializer = TenantUpsertSerializer(tenant, data=request.data, partial=partial)
                serializer.is_valid(raise_exception=True)
                serializer.save()
        else:
            created = False
            serializer.save()
        tenant.refresh_from_db()
        return Response(TenantSerializer(tenant).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request, *args, **kwargs):
        tenant = self.get_object()
        if tenant.is_active:
            tenant.is_active = False
            tenant.save(update_fields=["is_active", "updated_at"])
        return Response(status=status.HTTP_204_NO_CONTENT)
