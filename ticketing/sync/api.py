"""REST API of two-way sync: the host product's webhook (GET/PUT /api/v1/ticketing/webhook).
The signing secret is write-only: answers say whether one is set, never what it is."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from hub.api import AccountRolePermission
from ticketing.sync import host, registration, views


class HostWebhookSerializer(serializers.Serializer):
    url = serializers.URLField(allow_blank=True, max_length=1000)
    secret_set = serializers.BooleanField(read_only=True)
    active = serializers.BooleanField(default=True)
    status_sync = serializers.CharField(read_only=True, help_text="webhook | callback | poll | none")
    status_sync_notice = serializers.CharField(read_only=True)
    recent_attempts = serializers.ListField(child=serializers.DictField(), read_only=True)


class HostWebhookWriteSerializer(serializers.Serializer):
    url = serializers.URLField(allow_blank=True, max_length=1000)
    secret = serializers.CharField(required=False, allow_blank=True, min_length=16, max_length=200, write_only=True,
                                   help_text="The HMAC-SHA256 signing secret; leave out or blank to keep the stored one.")
    active = serializers.BooleanField(default=True)


class HostWebhookView(APIView):
    """Reading is for every role; changing it is for admins."""

    admin_only = True
    permission_classes = [AccountRolePermission]

    def _document(self, account) -> dict:
        hook = host.webhook_for(account)
        context = views.context_for(account)
        sync = context["sync"]
        return {
            "url": hook.url if hook else "",
            "secret_set": bool(hook and hook.secret_set),
            "active": hook.active if hook else True,
            "status_sync": sync.mode if sync else "none",
            "status_sync_notice": registration.fallback_notice(sync),
            "recent_attempts": [
                {"at": a.created_at, "incident": a.delivery.incident_id, "event_id": a.delivery.event_id,
                 "status_code": a.status_code, "duration_ms": a.duration_ms, "error": a.error}
                for a in context["attempts"]
            ],
        }

    @extend_schema(summary="The host product's webhook for incident changes made in the PSA", responses=HostWebhookSerializer)
    def get(self, request):
        return Response(self._document(request.account))

    @extend_schema(summary="Set the host product's webhook", request=HostWebhookWriteSerializer, responses=HostWebhookSerializer)
    def put(self, request):
        payload = HostWebhookWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        hook = host.webhook_for(request.account)
        data = payload.validated_data
        if data["url"] and not (data.get("secret") or (hook and hook.secret_set)):
            raise serializers.ValidationError({"secret": ["Set a signing secret: every delivery is signed."]})
        host.save_webhook(request.account, url=data["url"], secret=data.get("secret") or None, active=data["active"])
        return Response(self._document(request.account))
