"""Settings → Integrations: link a PSA, watch it verify, check permissions, map tenants.

No view calls the PSA (DESIGN.md rule 3): they save, queue a task and render what the
database knows; HTMX polls the status partials while work is under way.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from hub.models import Tenant
from hub.tenancy import ADMIN, OPERATOR, role_required
from integrations import registry, selectors, services
from integrations.models import Connection, PsaCompany


def _connection_or_none(request) -> Connection | None:
    return selectors.account_connection(request.account)


def _connection(request) -> Connection:
    connection = _connection_or_none(request)
    if connection is None:
        raise Http404("No PSA is linked to this account.")
    return connection


def _next_or(request, default: str):
    """Where the form asked to go back to, if it is on this site; else `default`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(reverse(default))


def _pending(request, param: str, action: str) -> str:
    """The correlation id of queued work named in the query string (?checking=, ?importing=)
    while it has not finished; "" when there is none or it is done."""
    correlation_id = request.GET.get(param, "")
    if not _WORK_ID.fullmatch(correlation_id):
        return ""
    return "" if selectors.work_finished(request.account, action, correlation_id) else correlation_id


@role_required()
def index(request):
    connection = _connection_or_none(request)
    context = {"section": "integrations", "connection": connection, "vendors": registry.VENDORS.values()}
    if connection is not None:
        context.update(selectors.connection_overview(connection))
        context["checking"] = _pending(request, "checking", "connection.permissions")
    return render(request, "integrations/index.html", context)


@role_required()
def status(request):
    """The status panel, polled while verification runs."""
    connection = _connection(request)
    overview = selectors.connection_overview(connection)
    response = render(request, "integrations/_status.html", {"connection": connection, **overview})
    if request.htmx and not overview["working"]:
        response["HX-Refresh"] = "true"  # verification finished: reload so every panel shows it
    return response


@role_required(ADMIN)
def link(request, vendor: str):
    if vendor not in registry.VENDORS:
        raise Http404("Unknown PSA.")
    entry = registry.get(vendor)
    connection = _connection_or_none(request)
    if connection is not None and connection.vendor != vendor:
        messages.error(request, f"{connection.get_vendor_display()} is linked. Remove it first to link {entry.name}: one PSA per account.")
        return redirect("integrations")
    stored = services.stored_secret_names(connection)
    form = entry.form(
        request.POST or None,
        initial=connection.config if connection else None,
        existing_secrets=stored,
        allow_private=settings.PSA_ALLOW_PRIVATE_HOSTS,
    )
    if request.method == "POST" and form.is_valid():
        config, secrets = form.config_and_secrets()
        refused = services.refused_hosts(vendor, config)
        shown = set()
        for name, message in refused.items():
            if message not in shown:  # a derived host (ConnectWise's API host) repeats the typed one
                shown.add(message)
                form.add_error(name if name in form.fields else None, message)
        if not refused:
            try:
                services.save_connection(request.account, vendor, config, secrets)
            except services.LinkRefused as exc:
                messages.error(request, str(exc))
                return redirect("integrations")
            messages.success(request, f"{entry.name} credentials saved. Verifying the connection…")
            return redirect("integrations")
    return render(
        request,
        "integrations/link.html",
        {"section": "integrations", "form": form, "vendor": entry, "connection": connection,
         "help_template": f"integrations/{vendor}/help.html"},
    )


@require_POST
@role_required(ADMIN)
def verify(request):
    connection = _connection(request)
    services.queue_verification(connection, services.new_correlation_id())
    return redirect("integrations")


@require_POST
@role_required(OPERATOR)
def permissions(request):
    connection = _connection(request)
    correlation_id = services.queue_permission_check(connection)
    messages.info(request, "Checking permissions in the PSA… the list below updates when it is done.")
    return redirect(f"{reverse('integrations')}?checking={correlation_id}")


@require_POST
@role_required(OPERATOR)
def refresh_lists(request):
    connection = _connection(request)
    services.queue_picklist_refresh(connection)
    messages.info(request, "Refreshing boards, statuses, priorities and other lists from the PSA…")
    return _next_or(request, "integrations")


@require_POST
@role_required(ADMIN)
def pause(request):
    connection = _connection(request)
    billing_only = request.POST.get("scope") == "billing"
    paused = request.POST.get("paused") == "1"
    services.set_paused(connection, paused=paused, billing_only=billing_only)
    what = "Billing sync" if billing_only else "The integration"
    messages.success(request, f"{what} {'paused' if paused else 'resumed'}.")
    return redirect("integrations")


@role_required(ADMIN)
def remove(request):
    connection = _connection(request)
    if request.method == "POST":
        services.remove_connection(connection)
        messages.success(request, f"{connection.get_vendor_display()} integration removed.")
        return redirect("integrations")
    counts = selectors.removal_counts(connection)
    return render(request, "integrations/remove.html", {"section": "integrations", "connection": connection, **counts})


# Import customers and map tenants -----------------------------------------------------------


@require_POST
@role_required(OPERATOR)
def import_companies(request):
    connection = _connection(request)
    correlation_id = services.queue_company_import(connection)
    messages.info(request, "Importing customers from the PSA… this page updates when it is done.")
    return redirect(f"{reverse('company_mapping')}?importing={correlation_id}")


# What pages poll while queued work runs: (action of its final log row, page that shows the result).
_WORK = {"permissions": ("connection.permissions", "integrations"), "import": ("import.companies", "company_mapping")}
_WORK_ID = re.compile(r"[0-9a-f]{1,64}")


@role_required()
def work_status(request, kind: str):
    """Polled (HTMX) while a permission check or an import runs in the worker: 204 while it
    runs, then HX-Redirect to its page without the marker, which shows the result."""
    if kind not in _WORK:
        raise Http404("Unknown work.")
    action, page = _WORK[kind]
    correlation_id = request.GET.get("id", "")
    if not _WORK_ID.fullmatch(correlation_id):
        raise Http404("Unknown work.")
    running = _connection_or_none(request) is not None and not selectors.work_finished(
        request.account, action, correlation_id
    )
    if running:
        return HttpResponse(status=204)
    response = HttpResponse()
    response["HX-Redirect"] = reverse(page)
    return response


@role_required()
def company_mapping(request):
    connection = _connection(request)
    query = request.GET.get("q", "").strip()
    show = request.GET.get("show", "all")
    tenants = Tenant.objects.for_account(request.account).filter(is_active=True).select_related("company_mapping")
    if query:
        tenants = tenants.filter(Q(name__icontains=query) | Q(external_id__icontains=query))
    if show == "unmapped":
        tenants = tenants.filter(company_mapping__isnull=True)
    elif show == "mapped":
        tenants = tenants.filter(company_mapping__isnull=False)
    page = Paginator(tenants, 50).get_page(request.GET.get("page"))
    context = {
        "section": "integrations",
        "connection": connection,
        "page": page,
        "rows": services.mapping_rows(request.account, connection, list(page.object_list)),
        "query": query,
        "show": show,
        "company_count": PsaCompany.objects.filter(connection=connection, active=True).count(),
        "importing": _pending(request, "importing", "import.companies"),
    }
    template = "integrations/_mapping_table.html" if request.htmx else "integrations/companies.html"
    return render(request, template, context)


@require_POST
@role_required(OPERATOR)
def map_tenants(request):
    """Save the choices of the mapping table: one tenant, or every ticked suggestion."""
    connection = _connection(request)
    tenants = Tenant.objects.for_account(request.account)

    def tenant_or_404(pk: str) -> Tenant:
        if not pk.isdigit():
            raise Http404("No such tenant.")
        return get_object_or_404(tenants, pk=pk)

    changed = 0
    chosen: set[int] = set()  # tenants given a company by hand: their ticked suggestion is ignored
    for key, company_id in request.POST.items():
        if not key.startswith("company-"):
            continue
        tenant = tenant_or_404(key.removeprefix("company-"))
        current = getattr(getattr(tenant, "company_mapping", None), "company_id", "")
        if company_id == current:
            continue
        chosen.add(tenant.pk)
        if company_id and not PsaCompany.objects.filter(connection=connection, company_id=company_id).exists():
            messages.error(request, f"Company {company_id} is not among the imported customers; import again.")
            continue
        services.map_tenant(request.account, tenant, company_id)
        changed += 1
    for tenant_pk in request.POST.getlist("accept"):
        tenant = tenant_or_404(tenant_pk)
        if tenant.pk in chosen:
            continue
        company_id = request.POST.get(f"suggested-{tenant_pk}", "")
        if company_id and PsaCompany.objects.filter(connection=connection, company_id=company_id).exists():
            services.map_tenant(request.account, tenant, company_id)
            changed += 1
    messages.success(request, f"Saved {changed} mapping{'s' if changed != 1 else ''}.")
    return _next_or(request, "company_mapping")


@role_required()
def company_search(request):
    """Options for the company picker (HTMX)."""
    connection = _connection(request)
    query = request.GET.get("q", "").strip()
    companies = selectors.search_companies(connection, query)
    current = request.GET.get("current", "")
    return render(request, "integrations/_company_options.html", {"companies": companies[:50], "current": current})
