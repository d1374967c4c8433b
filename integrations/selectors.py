"""Reads for the integration pages and API: what the database knows, never the PSA."""

from __future__ import annotations

from django.db.models import Q
from django.http import Http404

from hub.models import Tenant
from integrations import registry
from integrations.models import CompanyMapping, Connection, IntegrationLog, Picklist, PsaCompany


def account_connection(account) -> Connection | None:
    return Connection.objects.for_account(account).first()


def connected_or_404(account) -> Connection:
    """The account's connected PSA; pages and partials that need one answer 404 without it."""
    connection = account_connection(account)
    if connection is None or connection.status != Connection.Status.CONNECTED:
        raise Http404("No connected PSA: link one under Integrations first.")
    return connection


def search_companies(connection: Connection, query: str = ""):
    """Active imported PSA companies matching a search by name, identifier or exact id."""
    companies = PsaCompany.objects.filter(connection=connection, active=True)
    if query:
        companies = companies.filter(Q(name__icontains=query) | Q(identifier__icontains=query) | Q(company_id=query))
    return companies


def connection_overview(connection: Connection) -> dict:
    vendor = registry.get(connection.vendor)
    lists = {p.kind: p for p in Picklist.objects.filter(connection=connection, parent_id="")}
    tenants = Tenant.objects.for_account(connection.account).filter(is_active=True)
    mapped = CompanyMapping.objects.for_account(connection.account).filter(tenant__is_active=True).count()
    report = connection.permission_report or []
    return {
        "vendor": vendor,
        "working": connection.status in (Connection.Status.PENDING, Connection.Status.VERIFYING),
        "permission_missing": [check for check in report if not check["ok"]],
        "permission_ok": [check for check in report if check["ok"]],
        "picklists": [
            {"kind": kind, "entry": lists.get(kind)}
            for kind, parent in vendor.provider.picklist_kinds.items()
            if parent is None
        ],
        "tenant_count": tenants.count(),
        "mapped_count": mapped,
        "company_count": PsaCompany.objects.filter(connection=connection, active=True).count(),
    }


def removal_counts(connection: Connection) -> dict:
    return {
        "mapping_count": CompanyMapping.objects.for_account(connection.account).count(),
        "company_count": PsaCompany.objects.filter(connection=connection).count(),
        "picklist_count": Picklist.objects.filter(connection=connection).count(),
    }


def work_finished(account, action: str, correlation_id: str) -> bool:
    """Whether queued work (a permission check, an import) has ended, in success or failure:
    the service writes one action row with the work's correlation id when it is done (the
    rows of its PSA requests carry the id too, but have an HTTP method)."""
    return (
        IntegrationLog.objects.for_account(account)
        .filter(correlation_id=correlation_id, action=action, http_method="")
        .exists()
    )
