"""Settings → Logs: the integration log for support staff.

Members (admin, operator, support) read their account's log; vendor staff (is_staff) read
every account's, choosing one or "all" with the account filter. Filters that cannot be used
are dropped with a visible message (integrations.logs.parse_filters), never a 500. Nothing
here calls a PSA. Deleting an entry is for account admins only (a secret that slipped past
redaction); the deletion is itself logged.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from hub.models import Tenant
from hub.tenancy import ADMIN, accounts_for, role_required
from integrations import health, logs, services
from integrations.models import IntegrationLog

TENANT_CHOICES_MAX = 500


def _filters(request) -> logs.LogFilters:
    return logs.parse_filters(request.GET, user=request.user, account=request.account)


def _form_context(request, filters: logs.LogFilters) -> dict:
    tenants = []
    if filters.account is not None:
        tenants = list(Tenant.objects.for_account(filters.account).order_by("name")
                       .values("external_id", "name")[:TENANT_CHOICES_MAX])
    return {
        "section": "logs",
        "filters": filters,
        "groups": logs.GROUPS,
        "outcomes": logs.OUTCOMES,
        "levels": logs.LEVELS,
        "ranges": logs.RANGE_LABELS,
        "tenants": tenants,
        "staff_accounts": accounts_for(request.user) if request.user.is_staff else None,
        "all_accounts": filters.account is None,
    }


@role_required()
def log_list(request):
    filters = _filters(request)
    rows, next_cursor = logs.page(filters)
    context = _form_context(request, filters)
    context.update({
        "rows": rows,
        "next_query": filters.querystring(cursor=next_cursor) if next_cursor else "",
        "first_query": filters.querystring(),
        "paged": filters.cursor is not None,
    })
    return render(request, "logs/list.html", context)


@role_required()
def log_entry(request, pk: int):
    entry = logs.entry_for(request.user, request.account, pk)
    rows = logs.related(entry)
    actions = [row for row in rows if not row.is_request]
    fix = (health.suggest_fix(entry.message, entry.error_kind, getattr(entry.account, "connection", None))
           if entry.outcome == IntegrationLog.Outcome.ERROR and not entry.is_request else None)
    return render(request, "logs/entry.html", {
        "section": "logs",
        "entry": entry,
        "doing": logs.describe(entry),
        "links": logs.links(entry),
        "actions": actions,
        "show_actions": len(actions) > 1 or (entry.is_request and bool(actions)),
        "requests": logs.requests_of(entry, rows),
        "fix": fix,
        "can_delete": request.actor.is_admin and entry.account_id == getattr(request.account, "pk", None),
    })


@role_required()
def log_copy(request):
    """"Copy for support": the chosen entries as one plain-text block (already redacted)."""
    raw_ids = request.GET.getlist("id")
    ids = [int(value) for value in raw_ids if value.strip().isdigit()][: logs.SUPPORT_TEXT_MAX]
    if len(ids) != len(raw_ids):
        messages.warning(request, "Some entries were left out: ids must be numbers, at most "
                                  f"{logs.SUPPORT_TEXT_MAX} entries at a time.")
    queryset = IntegrationLog.objects.all() if request.user.is_staff else IntegrationLog.objects.for_account(request.account)
    entries = list(queryset.filter(pk__in=ids).select_related("tenant", "account", "account__connection")
                   .order_by("-created_at", "-id"))
    if ids and len(entries) < len(set(ids)):
        messages.warning(request, "Some entries were not found: they may have been deleted by the retention policy.")
    back = request.GET.get("back", "")
    return render(request, "logs/copy.html", {
        "section": "logs",
        "entries": entries,
        "text": logs.support_text(entries) if entries else "",
        "back": back if back.startswith("?") else "",
    })


@role_required()
def log_export(request):
    """CSV of the filtered view, streamed in keyset chunks and capped (HUB_LOG_EXPORT_MAX_ROWS)."""
    filters = _filters(request)
    filters.cursor = None
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    scope = f"account-{filters.account.pk}" if filters.account else "all-accounts"
    response = StreamingHttpResponse(logs.csv_lines(filters), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="integration-log-{scope}-{stamp}.csv"'
    response["X-Content-Type-Options"] = "nosniff"
    if filters.warnings:
        response["X-Hub-Filter-Warnings"] = str(len(filters.warnings))
    return response


@require_POST
@role_required(ADMIN)
def log_delete(request, pk: int):
    """An admin removes one entry of their account (e.g. a secret redaction missed); the log
    keeps a record that it was removed and by whom."""
    entry = logs.entry_for(None, request.account, pk)  # never another account's, staff or not
    delete_entry(entry, request.user)
    messages.success(request, f"Log entry #{pk} deleted.")
    return redirect("logs")


def delete_entry(entry: IntegrationLog, user) -> None:
    pk, account = entry.pk, entry.account
    summary = f"{entry.action}, {entry.outcome}, {entry.created_at.isoformat(timespec='seconds')}"
    who = getattr(user, "email", "") or str(user)
    entry.delete()
    services.log_action(account, "log.delete", f"Log entry #{pk} ({summary}) deleted by {who}.")
