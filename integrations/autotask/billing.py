"""Unit counts on Autotask Recurring Service contracts.

Autotask keeps no unit count on the contract service itself: units live in ContractServiceUnits
(one row per billing period, split at each adjustment) and change only through
ContractServiceAdjustments, which carry a signed delta. So reading is three calls (contract,
its service lines for the mapped Service, the unit row covering today) and writing is one
adjustment of `new − current`, effective today. `prefetch` makes the same three reads for up to
500 contracts at once, so a run over many tenants costs three requests per 500 of them.

The contract is checked before anything is written, with seed 001's messages word for word:
Autotask rejects adjustments on contracts that have not started with an unhelpful generic 500.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, timedelta

from integrations.autotask import parse
from integrations.autotask.client import AutotaskClient, query_all, query_body
from integrations.base.billing import BillingAdapter, BillingLine, BillingTarget
from integrations.base.errors import (
    AuthFailedError,
    BlockedError,
    InvalidError,
    NotFoundError,
    PermissionMissingError,
    PsaError,
)

RECURRING_SERVICE = 7
IN_LIMIT = 500  # an `in` list counts as OR conditions; Autotask allows 500 per query
BILLING_MODULES = "Contracts and Services"
BILLING_FIX = (
    "In Autotask: Admin > Account Settings & Users > Resources/Users > Security Levels: give the API user's "
    "security level Contracts — read and write access to Recurring Service Contracts, and Services — read "
    "access to Services within those contracts."
)

FUTURE_START = (
    "Contract “{name}” has a start date of {start}, which is in the future. Billing cannot be synced until the "
    "contract period has begun — update the contract start date in Autotask or wait until the contract is active."
)
EXPIRED = (
    "Contract “{name}” ended on {end}. Billing cannot be synced to an expired contract — extend the contract end "
    "date in Autotask or map this tenant to an active contract."
)
DUPLICATE = (
    "Duplicate service found — the mapped Autotask Service appears {count} times on this contract. Remove the "
    "duplicate in Autotask by deleting it (if not yet invoiced) or setting its units to 0 with a past-dated "
    "removal, then retry."
)


CONTRACT_FIELDS = ["id", "contractName", "companyID", "contractType", "status", "startDate", "endDate"]
LINE_FIELDS = ["id", "contractID", "serviceID"]
UNIT_FIELDS = ["id", "contractID", "contractServiceID", "startDate", "endDate", "units"]


def _midnight(day: date) -> str:
    # Autotask stores and returns UTC datetimes (fact sheet section 5).
    return f"{day.isoformat()}T00:00:00Z"


class AutotaskBilling(BillingAdapter):
    def __init__(self, client: AutotaskClient, *, today: Callable[[], date] = date.today):
        self.client = client
        self.today = today
        # What prefetch loaded, by contract id; a contract absent here is read on its own.
        self._contracts: dict[int, dict | None] = {}
        self._lines: dict[int, list[dict]] = {}
        self._units: dict[int, list[dict]] = {}

    # --- reading -----------------------------------------------------------------------------------

    def prefetch(self, targets: Iterable[BillingTarget]) -> None:
        ids = sorted({_int(t.agreement_id, "contract") for t in targets if str(t.agreement_id).strip().isdigit()})
        for start in range(0, len(ids), IN_LIMIT):
            chunk = ids[start : start + IN_LIMIT]
            try:
                contracts = {contract_id: None for contract_id in chunk}
                body = query_body([{"op": "in", "field": "id", "value": chunk}], include_fields=CONTRACT_FIELDS)
                for record in query_all(self.client, "Contracts", body):
                    contracts[parse.field(record, "id")] = record
                lines = {contract_id: [] for contract_id in chunk}
                body = query_body([{"op": "in", "field": "contractID", "value": chunk}], include_fields=LINE_FIELDS)
                for record in query_all(self.client, "ContractServices", body):
                    lines.setdefault(parse.field(record, "contractID"), []).append(record)
                units = {contract_id: [] for contract_id in chunk}
                filters = [{"op": "in", "field": "contractID", "value": chunk}, *self._today_filters()]
                body = query_body(filters, include_fields=UNIT_FIELDS)
                for record in query_all(self.client, "ContractServiceUnits", body):
                    units.setdefault(parse.field(record, "contractID"), []).append(record)
            except PsaError:
                # Only an optimisation: each read_line asks again and reports its own error. No
                # further chunks either: a refused login repeated per chunk could lock the user.
                break
            self._contracts.update(contracts)
            self._lines.update(lines)
            self._units.update(units)

    def read_line(self, target: BillingTarget) -> BillingLine:
        with _billing_permissions():
            contract_id = _int(target.agreement_id, "contract")
            service_id = _int(target.product_id, "service")
            contract = self._contract(contract_id)
            if contract is None:
                raise NotFoundError(
                    f"The Autotask contract {contract_id} mapped to this tenant no longer exists (or the API user "
                    "cannot see it). Map the tenant to an active Recurring Service contract."
                )
            name = parse.field(contract, "contractName") or f"#{contract_id}"
            self._check_contract(contract, name, target)

            lines = self._service_lines(contract_id, service_id)
            label = f"Contract “{name}” / Service {service_id}"
            if len(lines) > 1:
                # Updating either line would bill the wrong one; the MSP has to clean up first.
                raise BlockedError(DUPLICATE.format(count=len(lines)))
            if not lines:
                return BillingLine(line_id=None, quantity=0, label=label)
            line_id = parse.field(lines[0], "id")
            return BillingLine(line_id=str(line_id), quantity=self._current_units(contract_id, line_id), label=label)

    def _check_contract(self, contract: dict, name: str, target: BillingTarget) -> None:
        if parse.field(contract, "contractType") not in (None, RECURRING_SERVICE):
            raise BlockedError(
                f"Contract “{name}” is not a Recurring Service contract, so it carries no service units. Map this "
                "tenant to a Recurring Service contract."
            )
        company_id = parse.field(contract, "companyID")
        if target.company_id and company_id is not None and str(company_id) != str(target.company_id):
            raise BlockedError(
                f"Contract “{name}” belongs to another Autotask company than the one this tenant is mapped to. Map "
                "the tenant to one of its own company's contracts."
            )
        today = self.today()
        start, end = parse.date_of(parse.field(contract, "startDate")), parse.date_of(parse.field(contract, "endDate"))
        if start and start > today:
            raise BlockedError(FUTURE_START.format(name=name, start=start.isoformat()))
        if end and end < today:
            raise BlockedError(EXPIRED.format(name=name, end=end.isoformat()))

    def _contract(self, contract_id: int) -> dict | None:
        if contract_id in self._contracts:
            return self._contracts[contract_id]
        return self.client.item("Contracts", contract_id)

    def _service_lines(self, contract_id: int, service_id: int) -> list[dict]:
        if contract_id in self._lines:
            return [line for line in self._lines[contract_id] if parse.field(line, "serviceID") == service_id]
        filters = [
            {"op": "eq", "field": "contractID", "value": contract_id},
            {"op": "eq", "field": "serviceID", "value": service_id},
        ]
        return list(query_all(self.client, "ContractServices", query_body(filters, include_fields=LINE_FIELDS)))

    def _today_filters(self) -> list[dict]:
        today = self.today()
        return [
            {"op": "lt", "field": "startDate", "value": _midnight(today + timedelta(days=1))},
            {"op": "gte", "field": "endDate", "value": _midnight(today)},
        ]

    def _current_units(self, contract_id: int, line_id) -> int:
        today = self.today()
        if contract_id in self._units:
            rows = [r for r in self._units[contract_id] if str(parse.field(r, "contractServiceID")) == str(line_id)]
        else:
            filters = [
                {"op": "eq", "field": "contractID", "value": contract_id},
                {"op": "eq", "field": "contractServiceID", "value": int(line_id)},
                *self._today_filters(),
            ]
            rows = query_all(self.client, "ContractServiceUnits", query_body(filters, include_fields=UNIT_FIELDS))
        covering = []
        for row in rows:
            start = parse.date_of(parse.field(row, "startDate")) or date.min
            end = parse.date_of(parse.field(row, "endDate")) or date.max
            if start <= today <= end:
                covering.append(row)
        if not covering:
            # No period row for today: the next adjustment effective today creates one.
            return 0
        # An adjustment splits a period; the row that starts last is the one in force today.
        latest = max(covering, key=lambda r: (parse.field(r, "startDate") or "", parse.field(r, "id") or 0))
        return int(parse.field(latest, "units") or 0)

    # --- writing -----------------------------------------------------------------------------------

    def write_quantity(self, target: BillingTarget, current: BillingLine, quantity: int) -> BillingLine:
        if quantity < 0:
            raise InvalidError("A unit count cannot be negative.", field="quantity")
        change = quantity - current.quantity
        if change == 0:
            return current
        with _billing_permissions():
            contract_id = _int(target.agreement_id, "contract")
            service_id = _int(target.product_id, "service")
            body = {
                "contractID": contract_id,
                "serviceID": service_id,
                "effectiveDate": _midnight(self.today()),
                "unitChange": change,
            }
            if current.line_id:
                body["contractServiceID"] = int(current.line_id)
            # Not retried on an unknown outcome (a delta applied twice bills twice): the caller
            # reads the line again before deciding.
            for cache in (self._contracts, self._lines, self._units):
                cache.pop(contract_id, None)  # what prefetch read of it is out of date from here
            self.client.create_service_adjustment(contract_id, body)
            line_id = current.line_id or self._find_line(contract_id, service_id)
        return BillingLine(line_id=line_id, quantity=quantity, label=current.label)

    def _find_line(self, contract_id: int, service_id: int) -> str | None:
        """The ContractService an adjustment created when the Service was not on the contract yet."""
        filters = [
            {"op": "eq", "field": "contractID", "value": contract_id},
            {"op": "eq", "field": "serviceID", "value": service_id},
        ]
        body = query_body(filters, include_fields=["id"])
        lines = list(query_all(self.client, "ContractServices", body))
        return str(parse.field(lines[0], "id")) if len(lines) == 1 else None


class _billing_permissions:
    """Says which modules billing needs when Autotask refuses a contracts or services call.

    Seed 001 reports a missing module as "401 Unauthorized"; public reports show the 500
    "adequate permissions" text instead. Both become PermissionMissingError naming the modules.
    A 401 here may also be a changed password, so the message says how to check both.
    """

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, PermissionMissingError):
            raise PermissionMissingError(
                f"{error.message} Billing needs both modules: {BILLING_MODULES}.",
                which=error.which,
                fix=BILLING_FIX,
                status=error.status,
                vendor_message=error.vendor_message,
            ) from None
        if isinstance(error, AuthFailedError) and error.status == 401:
            raise PermissionMissingError(
                "Autotask answered 401 Unauthorized to a billing request. Verify the security level grants access "
                f"to both modules ({BILLING_MODULES}). If tickets also fail, the Password has changed: re-enter the "
                "Username, Password, and Tracking Identifier.",
                which=BILLING_MODULES,
                fix=BILLING_FIX,
                status=401,
                vendor_message=error.vendor_message,
            ) from None
        return False


def _int(value, what: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise InvalidError(f"Choose the Autotask {what} for this tenant.", field=what) from None
