"""Settings → Billing: products, tenants' mappings, runs (preview, sync, approve, revert), the
mode, guardrails, schedule and pause, and each tenant's history of quantities written.

No view calls the PSA (DESIGN.md rule 3): forms read the cached picklists, which queue their own
refresh; runs are planned and applied by the worker, and HTMX polls the run's progress. Roles:
everyone in the account reads; operators run, approve, revert and map; admins change the
settings and pause billing. Rows of another account are a 404 (rule 7).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Exists, F, OuterRef, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from billing import charts, forms, selectors, services
from billing.models import BillingItem, BillingMapping, BillingRun, ProductMapping
from hub.models import Tenant
from hub.tenancy import ADMIN, OPERATOR, role_required
from integrations import selectors as integration_selectors
from integrations import services as integration_services
from integrations.models import CompanyMapping, Connection, PsaCompany
from integrations.picklists import CachedList, cached_list

TENANTS_PER_PAGE = 50
ITEMS_PER_PAGE = 100
RUNS_SHOWN = 10
HISTORY_POINTS = 100
TENANT_FILTERS = {
    "all": "All tenants",
    "unmapped": "Not mapped for billing",
    "mapped": "Mapped",
    "problems": "Failed or blocked in the last run",
}
ITEM_FILTERS = {
    "all": "All lines",
    "problems": "Failed or blocked",
    "awaiting": "Waiting for approval",
    "changed": "Created or updated",
    "unchanged": "Unchanged",
    "unmapped": "Unmapped",
}


def _connection(request) -> Connection | None:
    return integration_selectors.account_connection(request.account)


def _connected(request) -> Connection:
    return integration_selectors.connected_or_404(request.account)


def _actor_label(request) -> str:
    return request.user.email or request.user.get_username()


def _local(moment, zone) -> str:
    """A moment as the account reads it (its time zone), e.g. "2026-01-15 03:30"."""
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}" if moment else ""


# --- the page ------------------------------------------------------------------------------------------


def _product_forms(request, connection, failed: forms.ProductForm | None = None) -> tuple[list, CachedList]:
    catalog = cached_list(connection, forms.spec_for(connection).product_kind)
    read_only = not request.actor.can_write
    rows = []
    for product in selectors.products(request.account):
        form = forms.ProductForm(None, account=request.account, connection=connection, catalog=catalog, product=product,
                                 read_only=read_only)  # fmt: skip
        if failed is not None and failed.product is not None and failed.product.pk == product.pk:
            form = failed
        rows.append(form)
    return rows, catalog


def _tenant_queryset(request, query: str, show: str):
    account = request.account
    tenants = Tenant.objects.for_account(account).filter(is_active=True)
    if query:
        tenants = tenants.filter(Q(name__icontains=query) | Q(external_id__icontains=query))
    mapped = BillingMapping.objects.filter(account=account, tenant=OuterRef("pk"))
    if show == "unmapped":
        tenants = tenants.exclude(Exists(mapped))
    elif show == "mapped":
        tenants = tenants.filter(Exists(mapped))
    elif show == "problems":
        last = selectors.runs(account).exclude(state__in=BillingRun.ACTIVE_STATES).first()
        failed = BillingItem.objects.filter(run=last, tenant=OuterRef("pk"), state=BillingItem.State.FAILED)
        tenants = tenants.filter(Exists(failed)) if last is not None else tenants.none()
    return tenants.order_by("name", "external_id")


def _tenants_context(request, connection) -> dict:
    params = request.GET
    query = params.get("q", "").strip()
    show = params.get("show", "all")
    show = show if show in TENANT_FILTERS else "all"
    page = Paginator(_tenant_queryset(request, query, show), TENANTS_PER_PAGE).get_page(params.get("page"))
    tenants = list(page.object_list)
    rows = selectors.tenant_rows(request.account, tenants)
    companies = {m.tenant_id: m for m in CompanyMapping.objects.for_account(request.account).filter(tenant__in=tenants)}
    for row in rows:
        row.company = companies.get(row.tenant.pk)
        for product_row in row.products:
            product_row.problem = forms.unmapped_reason(connection, product_row.product, product_row.mapping, row.company)
    querystring = urlencode([(k, v) for k, v in (("q", query), ("show", show)) if v and v != "all"])
    return {"tenant_page": page, "tenant_rows": rows, "tenant_query": query, "tenant_show": show,
            "tenant_filters": TENANT_FILTERS, "tenant_qs": querystring}  # fmt: skip


def _runs_context(request, connection) -> dict:
    account = request.account
    active = selectors.active_run(account)
    return {
        "active_run": active,
        "runs": list(selectors.runs(account)[:RUNS_SHOWN]),
        "paused_reason": services.paused_reason(connection),
    }


def _page(request, connection, *, settings_form=None, new_product=None, failed_product=None, status=200):
    account = request.account
    context = {"section": "billing", "connection": connection}
    if connection is None:
        return render(request, "billing/page.html", context, status=status)
    settings_row = services.get_settings(account)
    zone = services.account_zone(account)
    psa = forms.psa_name(connection)
    spec = forms.spec_for(connection)
    product_forms, catalog = _product_forms(request, connection, failed=failed_product)
    context.update({
        "psa": psa,
        "spec": spec,
        "connected": connection.status == Connection.Status.CONNECTED,
        "paused_reason": services.paused_reason(connection),
        "settings_row": settings_row,
        "settings_form": settings_form or forms.BillingSettingsForm(instance=settings_row, read_only=not request.actor.is_admin),
        "time_zone": account.time_zone or "UTC",
        "next_run_local": _local(settings_row.next_run_at, zone),
        "last_run_local": _local(settings_row.last_run_at, zone),
        "product_forms": product_forms,
        "catalog": catalog,
        "new_product": new_product or forms.ProductForm(None, account=account, connection=connection, catalog=catalog,
                                                        read_only=not request.actor.can_write),
        "tenant_total": Tenant.objects.for_account(account).filter(is_active=True).count(),
        "unmapped_total": Tenant.objects.for_account(account).filter(is_active=True).exclude(
            Exists(BillingMapping.objects.filter(account=account, tenant=OuterRef("pk")))).count(),
        **_runs_context(request, connection),
        **_tenants_context(request, connection),
    })  # fmt: skip
    return render(request, "billing/page.html", context, status=status)


@require_GET
@role_required()
def billing_page(request):
    return _page(request, _connection(request))


@require_GET
@role_required()
def tenants_table(request):
    """The tenants table again (search, filter, page); polled after a run finishes."""
    connection = _connection(request)
    if connection is None:
        raise Http404("No PSA linked.")
    if not request.htmx:
        return _page(request, connection)
    context = {"connection": connection, "psa": forms.psa_name(connection), "spec": forms.spec_for(connection),
               "products": list(selectors.products(request.account)), **_tenants_context(request, connection)}  # fmt: skip
    return render(request, "billing/_tenants.html", context)


@require_GET
@role_required()
def runs_section(request):
    """The runs box: buttons, the progress of the run going on, the last runs. Polled while a
    run is going; when the one it followed has finished it tells the tenants table to reload."""
    connection = _connection(request)
    if connection is None:
        raise Http404("No PSA linked.")
    context = {"connection": connection, "psa": forms.psa_name(connection), **_runs_context(request, connection)}
    response = render(request, "billing/_runs.html", context)
    if request.GET.get("following") and context["active_run"] is None:
        response["HX-Trigger"] = "billing-run-finished"
    return response


# --- settings and pause (admins) ------------------------------------------------------------------------


@require_POST
@role_required(ADMIN)
def save_settings(request):
    connection = _connection(request)
    if connection is None:
        raise Http404("No PSA linked.")
    settings_row = services.get_settings(request.account)
    form = forms.BillingSettingsForm(request.POST, instance=settings_row)
    if not form.is_valid():
        messages.error(request, "Nothing was saved: fix the billing settings marked below.")
        settings_row.refresh_from_db()
        return _page(request, connection, settings_form=form, status=400)
    services.update_settings(request.account, form.changes(), by=_actor_label(request))
    messages.success(request, "Billing settings saved.")
    return redirect(reverse("billing") + "#billing-settings")


@require_POST
@role_required(ADMIN)
def set_pause(request):
    connection = _connection(request)
    if connection is None:
        raise Http404("No PSA linked.")
    paused = request.POST.get("paused") == "1"
    if request.POST.get("scope") == "integration":
        if paused:
            raise Http404("Pause the whole integration under Integrations.")
        integration_services.set_paused(connection, paused=False)
        messages.success(request, "The integration is resumed: tickets and billing sync run again.")
        return redirect("billing")
    try:
        services.update_settings(request.account, {"paused": paused}, by=_actor_label(request))
    except services.BillingRefused as exc:
        messages.error(request, exc.message)
        return redirect("billing")
    if paused:
        messages.success(request, "Billing is paused: no sync runs (scheduled, auto or manual) until you resume it. "
                                  "Tickets go on as before.")  # fmt: skip
    else:
        messages.success(request, "Billing is resumed: scheduled and auto syncs run again.")
    return redirect("billing")


@require_POST
@role_required(OPERATOR)
def refresh_lists(request):
    connection = _connected(request)
    spec = forms.spec_for(connection)
    integration_services.queue_picklist_refresh(connection, kinds=[(spec.product_kind, "")])
    messages.info(request, f"Refreshing the {spec.product_label.lower()}s from {forms.psa_name(connection)}… the "
                           "lists update when they arrive.")  # fmt: skip
    return redirect("billing")


# --- products (operators) --------------------------------------------------------------------------------


def _product(request, pk: int) -> ProductMapping:
    return get_object_or_404(ProductMapping.objects.for_account(request.account), pk=pk)


@require_POST
@role_required(OPERATOR)
def product_save(request, pk: int | None = None):
    connection = _connected(request)
    product = _product(request, pk) if pk is not None else None
    catalog = cached_list(connection, forms.spec_for(connection).product_kind)
    form = forms.ProductForm(request.POST, account=request.account, connection=connection, catalog=catalog, product=product)
    if not form.is_valid():
        messages.error(request, "Nothing was saved: fix the product marked below.")
        if product is None:
            return _page(request, connection, new_product=form, status=400)
        return _page(request, connection, failed_product=form, status=400)
    saved = form.save(by=_actor_label(request))
    what = saved.psa_product_name or saved.psa_product_id
    messages.success(request, f"Product “{saved.label}” saved" + (f": billed as {what}." if what else "."))
    return redirect(reverse("billing") + "#billing-products")


@require_POST
@role_required(OPERATOR)
def product_delete(request, pk: int):
    product = _product(request, pk)
    label = product.label
    services.delete_product(product)
    messages.success(request, f"Product “{label}” removed with its tenant mappings; its usage history and past runs stay.")
    return redirect(reverse("billing") + "#billing-products")


@require_GET
@role_required()
def product_picker(request):
    """A product's PSA product select, polled while the list is loading."""
    connection = _connected(request)
    pk = request.GET.get("product", "")
    product = _product(request, int(pk)) if pk.isdigit() else None
    catalog = cached_list(connection, forms.spec_for(connection).product_kind)
    form = forms.ProductForm(None, account=request.account, connection=connection, catalog=catalog, product=product,
                             read_only=not request.actor.can_write)  # fmt: skip
    wanted = request.GET.get(form.add_prefix("psa_product_id"))
    if wanted is not None:
        form.initial["psa_product_id"] = wanted
        form.fields["psa_product_id"].widget.choices = form._product_choices()
    return render(request, "billing/_product_picker.html", {"form": form, "catalog": catalog, "psa": form.psa})


# --- a tenant: mapping per product, history ------------------------------------------------------------


def _tenant(request, pk: int) -> Tenant:
    return get_object_or_404(Tenant.objects.for_account(request.account), pk=pk)


def _posted_tenants(request) -> list[Tenant] | None:
    """The one tenant a run or an approval is limited to (POST "tenant"), or None for all."""
    tenant_pk = request.POST.get("tenant", "")
    if not tenant_pk:
        return None
    if not tenant_pk.isdigit():
        raise Http404("No such tenant.")
    return [_tenant(request, int(tenant_pk))]


def _mapping_form(request, connection, tenant, product, data=None, **kwargs) -> forms.TenantMappingForm:
    mapping = BillingMapping.objects.for_account(request.account).filter(tenant=tenant, product=product).first()
    company = CompanyMapping.objects.for_account(request.account).filter(tenant=tenant).first()
    return forms.TenantMappingForm(data, connection=connection, tenant=tenant, product=product, mapping=mapping,
                                   company=company, read_only=not request.actor.can_write, **kwargs)  # fmt: skip


def _history(request, tenant: Tenant, product: ProductMapping) -> dict:
    account = request.account
    written = selectors.quantity_history(account, tenant, product.key, limit=HISTORY_POINTS)
    readings = list(selectors.usage_history(account, tenant, product.key)[:HISTORY_POINTS])
    chart = charts.units_chart(
        [charts.Write(item.applied_at, item.before_quantity, item.after_quantity,
                      f"run #{item.run_id}, {item.run.get_trigger_display().lower()}") for item in written],
        [charts.Reading(usage.as_of, usage.units) for usage in readings],
        title=f"{tenant.name}: {product.label} over time",
    )  # fmt: skip
    return {"written": list(reversed(written)), "readings": readings[:10], "chart": chart}


def _tenant_page(request, connection, tenant, *, failed=None, status=200):
    account = request.account
    products = list(selectors.products(account))
    cards = []
    for product in products:
        form = failed if failed is not None and failed.product.pk == product.pk else _mapping_form(request, connection, tenant, product)
        cards.append({"product": product, "form": form, **_history(request, tenant, product)})
    usage = selectors.latest_usage(account, [tenant.pk])
    for card in cards:
        card["usage"] = usage.get((tenant.pk, card["product"].key))
        card["problem"] = forms.unmapped_reason(connection, card["product"], card["form"].mapping, card["form"].company)
    company = CompanyMapping.objects.for_account(account).filter(tenant=tenant).first()
    items = selectors.last_items(account, [tenant.pk])
    for card in cards:
        card["last_item"] = items.get((tenant.pk, card["product"].key))
    context = {
        "section": "billing", "connection": connection, "psa": forms.psa_name(connection), "spec": forms.spec_for(connection),
        "tenant": tenant, "company": company, "cards": cards, "paused_reason": services.paused_reason(connection),
    }  # fmt: skip
    return render(request, "billing/tenant.html", context, status=status)


@require_GET
@role_required()
def tenant_page(request, pk: int):
    connection = _connected(request)
    return _tenant_page(request, connection, _tenant(request, pk))


@require_GET
@role_required()
def tenant_fields(request, pk: int, product_pk: int):
    """One product's mapping fields again: after the company or contract changed, or while a list
    is loading. Values come from the page; a field not sent keeps the saved value."""
    connection = _connected(request)
    tenant, product = _tenant(request, pk), _product(request, product_pk)
    form = _mapping_form(request, connection, tenant, product, request.GET, drop_stale=True)
    return render(request, "billing/_mapping_fields.html", {"form": form, "psa": form.psa, "product": product})


@require_POST
@role_required(OPERATOR)
def tenant_mapping_save(request, pk: int, product_pk: int):
    connection = _connected(request)
    tenant, product = _tenant(request, pk), _product(request, product_pk)
    if request.POST.get("remove"):
        removed = services.remove_billing_mapping(request.account, tenant, product)
        if removed:
            messages.success(request, f"{tenant.name}: {product.label} is no longer billed (unmapped).")
        return redirect("billing_tenant", pk=tenant.pk)
    form = _mapping_form(request, connection, tenant, product, request.POST)
    if not form.is_valid():
        messages.error(request, f"Nothing was saved for {product.label}: fix the mapping marked below.")
        return _tenant_page(request, connection, tenant, failed=form, status=400)
    mapping = form.save(request.account)
    where = " / ".join(part for part in (mapping.company_name, mapping.agreement_name, mapping.line_name) if part)
    messages.success(request, f"{tenant.name}: {product.label} billed to {where or 'its company'}.")
    return redirect("billing_tenant", pk=tenant.pk)


@require_POST
@role_required(OPERATOR)
def tenant_refresh(request, pk: int):
    """Refresh the lists this tenant's mapping uses (agreements/contracts, their lines)."""
    connection = _connected(request)
    tenant = _tenant(request, pk)
    kinds = []
    for product in selectors.products(request.account):
        form = _mapping_form(request, connection, tenant, product, queue_refresh=False)
        for lst in form.lists:
            if lst.state != "needs_parent" and (lst.kind, lst.parent_id) not in kinds:
                kinds.append((lst.kind, lst.parent_id))
    if kinds:
        integration_services.queue_picklist_refresh(connection, kinds=kinds)
    messages.info(request, f"Refreshing the lists from {forms.psa_name(connection)}… the fields update when they arrive.")
    return redirect("billing_tenant", pk=tenant.pk)


@require_GET
@role_required()
def company_options(request):
    """Autotask's Customer picker: imported companies matching the search."""
    connection = _connected(request)
    query = request.GET.get("company_q", "").strip()
    companies = integration_selectors.search_companies(connection, query)
    current = request.GET.get("current", "")
    current_name = ""
    if current:
        found = PsaCompany.objects.filter(connection=connection, company_id=current).first()
        current_name = found.name if found else current
    return render(request, "billing/_company_options.html",
                  {"companies": companies[:50], "current": current, "current_name": current_name})  # fmt: skip


# --- runs --------------------------------------------------------------------------------------------------


def _run(request, pk: int) -> BillingRun:
    return get_object_or_404(selectors.runs(request.account), pk=pk)


@role_required()
def runs(request):
    """GET: every run, newest first; POST: start one (operators)."""
    if request.method == "POST":
        if not request.actor.can_write:
            raise PermissionDenied("Your role in this account does not allow this.")
        return run_start(request)
    if request.method != "GET":
        return HttpResponse(status=405)
    return runs_list(request)


def run_start(request):
    """Preview (apply=0) or Sync now (apply=1), of every tenant or of one."""
    if _connection(request) is None:
        raise Http404("No PSA linked.")
    apply = request.POST.get("apply") == "1"
    tenants = _posted_tenants(request)
    try:
        run = services.start_run(request.account, trigger=BillingRun.Trigger.MANUAL, apply=apply, tenants=tenants,
                                 requested_by=request.user, label=_actor_label(request))  # fmt: skip
    except services.BillingRefused as exc:
        messages.error(request, exc.message)
        return redirect("billing_tenant", pk=tenants[0].pk) if tenants else redirect("billing")
    what = "Sync" if apply else "Preview"
    messages.success(request, f"{what} #{run.pk} queued: this page follows it.")
    return redirect("billing_run", pk=run.pk)


def _items_context(request, run: BillingRun) -> dict:
    params = request.GET
    show = params.get("show", "all")
    show = show if show in ITEM_FILTERS else "all"
    query = params.get("q", "").strip()
    items = selectors.run_items(run)
    if query:
        items = items.filter(Q(tenant__name__icontains=query) | Q(tenant__external_id__icontains=query))
    if show == "problems":
        items = items.filter(state=BillingItem.State.FAILED)
    elif show == "awaiting":
        items = items.filter(state=BillingItem.State.PLANNED, action__in=BillingItem.WRITES)
    elif show == "changed":
        items = items.filter(state=BillingItem.State.APPLIED, action__in=[BillingItem.Action.CREATE, BillingItem.Action.UPDATE])
    elif show == "unchanged":
        items = items.filter(action=BillingItem.Action.NONE)
    elif show == "unmapped":
        items = items.filter(action=BillingItem.Action.UNMAPPED)
    page = Paginator(items, ITEMS_PER_PAGE).get_page(params.get("page"))
    querystring = urlencode([(k, v) for k, v in (("q", query), ("show", show)) if v and v != "all"])
    counts = run.counts if run.counts and not run.is_active else selectors.item_counts(run)
    return {"run": run, "item_page": page, "item_show": show, "item_query": query, "item_filters": ITEM_FILTERS,
            "item_qs": querystring, "counts": counts,
            "awaiting": counts.get("awaiting_approval", 0)}  # fmt: skip


@require_GET
@role_required()
def run_page(request, pk: int):
    run = _run(request, pk)
    connection = _connection(request)
    can_revert = (not run.is_active and BillingItem.objects.filter(run=run, state=BillingItem.State.APPLIED)
                  .exclude(before_quantity=F("after_quantity")).exists())  # fmt: skip
    context = {"section": "billing", "connection": connection, "psa": forms.psa_name(connection) if connection else "the PSA",
               "paused_reason": services.paused_reason(connection), "can_revert": can_revert, **_items_context(request, run)}  # fmt: skip
    return render(request, "billing/run.html", context)


@require_GET
@role_required()
def run_body(request, pk: int):
    """The run's progress and lines, polled while it is going."""
    run = _run(request, pk)
    connection = _connection(request)
    context = {"connection": connection, "psa": forms.psa_name(connection) if connection else "the PSA",
               "paused_reason": services.paused_reason(connection), **_items_context(request, run)}  # fmt: skip
    return render(request, "billing/_run_body.html", context)


@require_POST
@role_required(OPERATOR)
def run_approve(request, pk: int):
    run = _run(request, pk)
    tenants = _posted_tenants(request)
    try:
        count = services.approve_run(run, by=_actor_label(request), tenants=tenants)
    except services.BillingRefused as exc:
        messages.error(request, exc.message)
    else:
        who = f" for {tenants[0].name}" if tenants else ""
        messages.success(request, f"{count} line{'s' if count != 1 else ''} approved{who}: the worker writes them now.")
    return redirect("billing_run", pk=run.pk)


@role_required()
def run_revert(request, pk: int):
    """GET: what reverting would write back (a confirmation); POST: do it (a new run)."""
    if not request.actor.can_write:
        raise PermissionDenied("Your role in this account does not allow this.")
    run = _run(request, pk)
    if request.method == "POST":
        try:
            revert = services.revert_run(run, by=_actor_label(request), requested_by=request.user)
        except services.BillingRefused as exc:
            messages.error(request, exc.message)
            return redirect("billing_run", pk=run.pk)
        messages.success(request, f"Revert of run #{run.pk} queued as run #{revert.pk}: it writes back the previous quantities.")
        return redirect("billing_run", pk=revert.pk)
    if request.method != "GET":
        return HttpResponse(status=405)
    lines = list(
        BillingItem.objects.filter(run=run, state=BillingItem.State.APPLIED)
        .exclude(before_quantity=F("after_quantity")).select_related("tenant").order_by("tenant__name", "product_key")
    )
    context = {"section": "billing", "run": run, "lines": lines, "connection": _connection(request),
               "paused_reason": services.paused_reason(_connection(request))}  # fmt: skip
    return render(request, "billing/revert.html", context)


def runs_list(request):
    page = Paginator(selectors.runs(request.account), 50).get_page(request.GET.get("page"))
    return render(request, "billing/runs.html", {"section": "billing", "page": page})
