"""Settings → Ticketing (board/queue, status and priority mapping, defaults, routing preview,
test ticket) and the Incidents pages.

No view calls the PSA (DESIGN.md rule 3): the form reads the cached picklists, which queue
their own refresh; HTMX polls the partials while a list or a test ticket is on its way.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from hub.models import Tenant
from hub.tenancy import OPERATOR, role_required
from integrations import selectors as integration_selectors
from integrations import services as integration_services
from integrations.models import Connection, IntegrationLog, PsaCompany
from ticketing import forms, services
from ticketing.fields import VENDOR_TICKETING
from ticketing.models import SEVERITIES, STATUSES, Incident, IncidentNote

PREVIEW_TENANTS = 500  # tenants offered in the preview's picker; a search narrows larger lists
# Test ticket states after which the page stops asking.
SETTLED = {"synced", "failed", "needs_mapping", "held"}


def _connection(request) -> Connection | None:
    return integration_selectors.account_connection(request.account)


def _connected(request) -> Connection:
    return integration_selectors.connected_or_404(request.account)


def _form(request, connection, data=None, **kwargs) -> forms.TicketingForm:
    return forms.TicketingForm(
        data, connection=connection, config=forms.config_for(request.account),
        read_only=not request.actor.can_write, **kwargs,
    )


def _tenants(request, query: str = ""):
    tenants = Tenant.objects.for_account(request.account).filter(is_active=True)
    if query:
        tenants = tenants.filter(Q(name__icontains=query) | Q(external_id__icontains=query))
    return tenants.order_by("name", "external_id")[:PREVIEW_TENANTS]


def _page(request, connection, form=None, status=200, **extra):
    context = {"section": "ticketing", "connection": connection}
    if connection is not None and connection.status == Connection.Status.CONNECTED:
        form = form or _form(request, connection)
        context.update({
            "form": form,
            "psa": form.psa,
            "spec": form.spec,
            "config": form.config,
            "tenants": _tenants(request),
            "severities": SEVERITIES,
            "company_count": PsaCompany.objects.filter(connection=connection, active=True).count(),
        })
    context.update(extra)
    return render(request, "ticketing/settings.html", context, status=status)


@role_required()
def settings_page(request):
    connection = _connection(request)
    if connection is None or connection.status != Connection.Status.CONNECTED:
        return _page(request, connection)
    if request.method == "POST":
        form = _form(request, connection, request.POST)
        if form.is_valid():
            config, released = form.save(request.account)
            messages.success(request, "Ticketing settings saved. Changes apply to new tickets.")
            missing = config.missing_statuses()
            if missing:
                messages.warning(request, f"The status mapping is incomplete: choose a status for {', '.join(missing)}.")
            if released:
                messages.info(request, f"{released} incident{'s' if released != 1 else ''} waiting for a company "
                                       f"{'are' if released != 1 else 'is'} being sent to the default company.")
            return redirect("ticketing")
        return _page(request, connection, form, status=400)
    return _page(request, connection)


@require_GET
@role_required()
def config_fields(request):
    """The settings fields again: after the board (or another parent) changed, and while a
    list is loading. Values come from the page; a field not sent keeps the saved value."""
    connection = _connected(request)
    saved = forms.config_values(forms.config_for(request.account), VENDOR_TICKETING[connection.vendor])
    values = {**saved, **request.GET.dict()}
    form = _form(request, connection, initial=values, drop_stale=True)
    return render(request, "ticketing/_config_fields.html", {"form": form, "psa": form.psa, "spec": form.spec})


@require_POST
@role_required(OPERATOR)
def refresh_lists(request):
    """Refresh every list the page uses, for the board (and issue type) now chosen."""
    connection = _connected(request)
    form = _form(request, connection, queue_refresh=False)
    kinds = []
    for row in form.rows:
        if row.state != "needs_parent" and (row.kind, row.parent_id) not in kinds:
            kinds.append((row.kind, row.parent_id))
    team_kind = forms.DEFAULT_TEAM_KIND.get(connection.vendor)
    board_id = form.value(form.board_row.name)
    if team_kind and board_id:
        kinds.append((team_kind, board_id))
    integration_services.queue_picklist_refresh(connection, kinds=kinds)
    messages.info(request, f"Refreshing the lists from {form.psa}… the fields update when they arrive.")
    return redirect("ticketing")


@require_GET
@role_required()
def company_options(request):
    """Options of the default company picker (HTMX search over imported customers)."""
    connection = _connected(request)
    query = request.GET.get("company_q", "").strip()
    companies = integration_selectors.search_companies(connection, query)
    current = request.GET.get("default_company_id", "").strip()
    current_name = ""
    if current:
        config = forms.config_for(request.account)
        company = PsaCompany.objects.filter(connection=connection, company_id=current).first()
        current_name = company.name if company else (config.default_company_name if config else "") or current
    return render(request, "ticketing/_company_options.html",
                  {"companies": companies[:50], "current": current, "current_name": current_name})


@require_GET
@role_required()
def tenant_options(request):
    return render(request, "ticketing/_tenant_options.html",
                  {"tenants": _tenants(request, request.GET.get("tenant_q", "").strip()),
                   "chosen": request.GET.get("tenant", "")})


def _preview_input(request, data) -> tuple[Tenant | None, str, str]:
    """(tenant, severity, error) from the preview form."""
    tenant_pk = data.get("tenant", "")
    severity = data.get("severity", "")
    if not tenant_pk:
        return None, severity, "Choose a tenant."
    if not tenant_pk.isdigit():
        raise Http404("No such tenant.")
    tenant = get_object_or_404(Tenant.objects.for_account(request.account), pk=tenant_pk)
    if severity not in SEVERITIES:
        return tenant, severity, f"Choose a severity: {', '.join(SEVERITIES)}."
    return tenant, severity, ""


@require_GET
@role_required()
def preview(request):
    """Where a ticket would land for a tenant and severity. Writes nothing."""
    connection = _connected(request)
    tenant, severity, error = _preview_input(request, request.GET)
    result = None if error else forms.preview_route(connection, forms.config_for(request.account), tenant, severity)
    context = {"preview": result, "preview_error": error, "chosen_tenant": tenant, "chosen_severity": severity,
               "psa": forms.psa_name(connection)}
    if request.htmx:
        return render(request, "ticketing/_preview.html", context)
    return _page(request, connection, **context)


@require_POST
@role_required(OPERATOR)
def test_ticket(request):
    """Send a real incident for the chosen tenant; the partial polls until it is synced."""
    connection = _connected(request)
    tenant, severity, error = _preview_input(request, request.POST)
    incident = None
    if not error:
        incident, error = forms.send_test_ticket(request.account, connection, forms.config_for(request.account), tenant, severity)
    if not request.htmx:
        if error:
            messages.error(request, error)
            return redirect("ticketing")
        messages.success(request, "Test ticket sent: follow it here.")
        return redirect("incident_detail", pk=incident.pk)
    return render(request, "ticketing/_test_ticket.html",
                  {"incident": incident, "error": error, "psa": forms.psa_name(connection), "settled": SETTLED})


@require_GET
@role_required()
def test_ticket_status(request, pk: int):
    incident = get_object_or_404(Incident.objects.for_account(request.account).select_related("ticket", "tenant"), pk=pk)
    connection = _connection(request)
    psa = forms.psa_name(connection) if connection is not None else "the PSA"
    return render(request, "ticketing/_test_ticket.html", {"incident": incident, "psa": psa, "settled": SETTLED})


# Incidents ----------------------------------------------------------------------------------------


SYNC_STATES = [value for value, _ in Incident.Sync.choices]


@role_required()
def incident_list(request):
    params = request.GET
    filters = {
        "tenant": params.get("tenant", "").strip(),
        "status": params.get("status", "") if params.get("status", "") in STATUSES else "",
        "severity": params.get("severity", "") if params.get("severity", "") in SEVERITIES else "",
        "sync": params.get("sync", "") if params.get("sync", "") in SYNC_STATES else "",
    }
    incidents = Incident.objects.for_account(request.account).select_related("tenant", "ticket").order_by("-created_at", "-id")
    if filters["tenant"]:
        incidents = incidents.filter(Q(tenant__name__icontains=filters["tenant"]) | Q(tenant__external_id__icontains=filters["tenant"]))
    if filters["status"]:
        incidents = incidents.filter(status=filters["status"])
    if filters["severity"]:
        incidents = incidents.filter(severity=filters["severity"])
    if filters["sync"]:
        incidents = incidents.filter(sync_state=filters["sync"])
    page = Paginator(incidents, 50).get_page(params.get("page"))
    query = "&".join(f"{key}={value}" for key, value in filters.items() if value)
    context = {
        "section": "incidents", "page": page, "filters": filters, "query": query, "statuses": STATUSES,
        "severities": SEVERITIES, "sync_states": Incident.Sync.choices, "connection": _connection(request),
    }
    template = "ticketing/_incident_table.html" if request.htmx else "ticketing/incidents.html"
    return render(request, template, context)


def _incident(request, pk: int) -> Incident:
    return get_object_or_404(Incident.objects.for_account(request.account).select_related("tenant", "ticket"), pk=pk)


@role_required()
def incident_detail(request, pk: int):
    incident = _incident(request, pk)
    history = IntegrationLog.objects.for_account(request.account).filter(subject=f"incident:{incident.pk}").order_by("-created_at", "-id")[:200]
    notes = IncidentNote.objects.filter(incident=incident).order_by("created_at", "id")
    context = {"section": "incidents", "incident": incident, "history": history, "notes": notes,
               "connection": _connection(request), "settled": SETTLED}
    return render(request, "ticketing/incident.html", context)


@require_GET
@role_required()
def incident_sync(request, pk: int):
    """The incident's sync state, polled while it is on its way."""
    return render(request, "ticketing/_incident_sync.html", {"incident": _incident(request, pk), "settled": SETTLED})


@require_POST
@role_required(OPERATOR)
def incident_retry(request, pk: int):
    incident = _incident(request, pk)
    if incident.sync_state != Incident.Sync.FAILED:
        messages.error(request, f"Incident #{incident.pk} has not failed ({incident.get_sync_state_display().lower()}); "
                                "there is nothing to retry.")
    else:
        services.retry_incident(incident)
        messages.success(request, f"Incident #{incident.pk} queued again: the page updates when it is synced.")
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(reverse("incident_detail", args=[incident.pk]))
