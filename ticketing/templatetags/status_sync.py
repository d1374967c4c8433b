"""{% status_sync_notice %}: the polling-fallback sentence of two-way sync, for the pages."""

from django import template

from integrations.models import Connection
from ticketing.sync import registration
from ticketing.models import StatusSync

register = template.Library()


@register.simple_tag(takes_context=True)
def status_sync_notice(context) -> str:
    request = context.get("request")
    account = getattr(request, "account", None)
    if account is None:
        return ""
    connection = Connection.objects.for_account(account).first()
    if connection is None:
        return ""
    return registration.fallback_notice(StatusSync.objects.filter(connection_id=connection.pk).first())
