"""{% health_panel connection %}: health at a glance on the Integrations page."""

from django import template

from integrations import health

register = template.Library()


@register.inclusion_tag("logs/_health_panel.html", takes_context=True)
def health_panel(context, connection):
    return {"connection": connection, "actor": context.get("actor"), "health": health.overview(connection)}
