"""Tenants' unit counts as ConnectWise agreement additions (fact sheet sections 7.6-7.8, 9).

One addition per company carries the mapped catalog item. ConnectWise has no search across
all additions, so a read lists the company's non-cancelled agreements (one request, or none
after `prefetch`) and each one's additions filtered to the product (usually one agreement).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from decimal import Decimal, InvalidOperation

from integrations.base.billing import BillingAdapter, BillingLine, BillingTarget
from integrations.base.errors import BlockedError, InvalidError, NotFoundError
from integrations.connectwise import parse
from integrations.connectwise.client import ConnectWiseClient

MULTIPLE_AGREEMENTS = (
    "Multiple agreements contain the mapped product for this company. Only one agreement per company should "
    "have the product. Resolve in ConnectWise."
)
CATALOG_FIX = (
    "Ensure the selected catalog item still exists in ConnectWise and has not been deactivated, or map another "
    "catalog item."
)
AGREEMENT_FIELDS = "id,name,company,agreementStatus,cancelledFlag,dateCancelled"
ADDITION_FIELDS = "id,product,quantity,agreementId,cancelledDate"
CATALOG_FIELDS = "id,identifier,description,inactiveFlag"
# Ids per `in (...)` list: keeps the URL well under ConnectWise's ~2000 characters.
BATCH = 100


class ConnectWiseBilling(BillingAdapter):
    def __init__(self, client: ConnectWiseClient, today: Callable[[], date] = date.today):
        self.client = client
        self.today = today
        # Per run (one adapter per run): what does not change while a run goes through tenants.
        self._catalog: dict[str, dict | None] = {}
        self._agreements: dict[str, list[dict]] = {}
        self._agreement_of_line: dict[str, str] = {}

    def prefetch(self, targets: Iterable[BillingTarget]) -> None:
        """Load the agreements of many companies and their catalog items in a few requests,
        so each tenant's read costs only its additions. Optional: read_line works without."""
        targets = list(targets)
        companies = sorted({t.company_id for t in targets if t.company_id.isdigit()} - self._agreements.keys())
        products = sorted({t.product_id for t in targets if t.product_id.isdigit()} - self._catalog.keys())
        for chunk in _chunks(companies):
            found: dict[str, list[dict]] = {company_id: [] for company_id in chunk}
            for record in self.client.agreements(
                conditions=parse.all_of(f"company/id in ({','.join(chunk)})", "cancelledFlag=false"),
                order_by="id asc",
                fields=AGREEMENT_FIELDS,
            ):
                found.setdefault(parse.ref_id(record, "company"), []).append(record)
            self._agreements.update(found)
        for chunk in _chunks(products):
            found_items: dict[str, dict | None] = {product_id: None for product_id in chunk}
            for record in self.client.catalog_items(conditions=f"id in ({','.join(chunk)})", fields=CATALOG_FIELDS):
                found_items[parse.text_id(record.get("id"))] = record
            self._catalog.update(found_items)

    # --- reading --------------------------------------------------------------------------------

    def read_line(self, target: BillingTarget) -> BillingLine:
        self._check_catalog_item(target.product_id)
        agreements = self._company_agreements(target.company_id)
        mapped = None
        if target.agreement_id:
            mapped = next((a for a in agreements if parse.text_id(a.get("id")) == target.agreement_id), None)
            if mapped is None:
                mapped = self._mapped_agreement_elsewhere(target)
                agreements = [*agreements, mapped]
        holders = []
        for agreement in agreements:
            additions = list(
                self.client.agreement_additions(
                    agreement["id"],
                    conditions=parse.all_of(f"product/id={int(target.product_id)}", "cancelledDate=null"),
                    order_by="id asc",
                    fields=ADDITION_FIELDS,
                )
            )
            if additions:
                holders.append((agreement, additions))
        if len(holders) > 1:
            raise BlockedError(MULTIPLE_AGREEMENTS)
        if not holders:
            where = f"Agreement “{mapped['name']}” (no addition yet)" if mapped else "No addition yet"
            return BillingLine(line_id=None, quantity=0, label=where)
        agreement, additions = holders[0]
        if len(additions) > 1:
            raise BlockedError(
                f"The mapped product appears {len(additions)} times on agreement “{agreement.get('name')}”. Only one "
                "addition per agreement should carry the product. Resolve in ConnectWise."
            )
        if mapped is not None and agreement is not mapped:
            raise BlockedError(
                f"The mapped product is on agreement “{agreement.get('name')}”, not on the mapped agreement "
                f"“{mapped.get('name')}”. Map this tenant to “{agreement.get('name')}”, or move the product in "
                "ConnectWise."
            )
        addition = additions[0]
        line_id = parse.text_id(addition.get("id"))
        self._agreement_of_line[line_id] = parse.text_id(agreement.get("id"))
        return BillingLine(
            line_id=line_id,
            quantity=parse.quantity(addition.get("quantity")),
            label=f"Agreement “{agreement.get('name')}” / Addition {line_id}",
        )

    def _check_catalog_item(self, product_id: str) -> dict:
        if product_id not in self._catalog:
            try:
                self._catalog[product_id] = self.client.catalog_item(product_id, fields=CATALOG_FIELDS)
            except NotFoundError:
                self._catalog[product_id] = None
        item = self._catalog[product_id]
        if item is None:
            raise BlockedError(
                f"Catalog item not found: catalog item {product_id} no longer exists in ConnectWise. {CATALOG_FIX}"
            )
        if item.get("inactiveFlag"):
            name = item.get("identifier") or item.get("description") or product_id
            raise BlockedError(f"Catalog item not found: “{name}” has been deactivated in ConnectWise. {CATALOG_FIX}")
        return item

    def _company_agreements(self, company_id: str) -> list[dict]:
        if company_id not in self._agreements:
            self._agreements[company_id] = list(
                self.client.agreements(
                    conditions=parse.all_of(f"company/id={_number(company_id, 'company_id')}", "cancelledFlag=false"),
                    order_by="id asc",
                    fields=AGREEMENT_FIELDS,
                )
            )
        return self._agreements[company_id]

    def _mapped_agreement_elsewhere(self, target: BillingTarget) -> dict:
        """The mapped agreement is not among the company's open ones: say why, by name."""
        try:
            record = self.client.agreement(target.agreement_id, fields=AGREEMENT_FIELDS)
        except NotFoundError:
            raise NotFoundError(
                f"The mapped agreement (id {target.agreement_id}) no longer exists in ConnectWise. Map this tenant "
                "to an active agreement."
            ) from None
        name = record.get("name") or target.agreement_id
        if record.get("cancelledFlag") or record.get("agreementStatus") == "Cancelled":
            when = str(record.get("dateCancelled") or "")[:10]
            raise NotFoundError(
                f"The mapped agreement “{name}” was cancelled in ConnectWise{f' on {when}' if when else ''}. Map this "
                "tenant to an active agreement."
            )
        if parse.ref_id(record, "company") != target.company_id:
            other = (record.get("company") or {}).get("name") or "another company"
            raise NotFoundError(
                f"The mapped agreement “{name}” belongs to {other}, not to this tenant's ConnectWise company. Map this "
                "tenant to one of its company's agreements."
            )
        return record

    # --- writing --------------------------------------------------------------------------------

    def write_quantity(self, target: BillingTarget, current: BillingLine, quantity: int) -> BillingLine:
        if quantity < 0:
            raise InvalidError("A quantity cannot be negative.", field="quantity")
        if current.line_id is None:
            return self._create(target, quantity)
        agreement_id = self._agreement_of_line.get(current.line_id) or target.agreement_id
        if not agreement_id:
            raise InvalidError("Choose the ConnectWise agreement for this tenant.", field="agreement_id")
        try:
            record = self.client.patch_agreement_addition(
                agreement_id, current.line_id, [{"op": "replace", "path": "quantity", "value": quantity}]
            )
        except InvalidError as error:
            raise _addition_error(error, target) from None
        return BillingLine(current.line_id, parse.quantity((record or {}).get("quantity", quantity)), current.label)

    def _create(self, target: BillingTarget, quantity: int) -> BillingLine:
        if not target.agreement_id:
            raise InvalidError("Choose the ConnectWise agreement for this tenant.", field="agreement_id")
        body: dict = {
            "product": {"id": int(_number(target.product_id, "product_id"))},
            "billCustomer": "Billable",
            "quantity": quantity,
            "effectiveDate": f"{self.today().isoformat()}T00:00:00Z",
        }
        if target.description:
            body["invoiceDescription"] = target.description
        for name, value in (("unitPrice", target.unit_price), ("unitCost", target.unit_cost)):
            if value:
                body[name] = _money(value, name)
        try:
            record = self.client.create_agreement_addition(target.agreement_id, body)
        except InvalidError as error:
            raise _addition_error(error, target) from None
        line_id = parse.text_id(record.get("id"))
        self._agreement_of_line[line_id] = target.agreement_id
        known = self._agreements.get(target.company_id) or []
        name = next((a.get("name") for a in known if parse.text_id(a.get("id")) == target.agreement_id), None)
        label = f"Agreement “{name}” / Addition {line_id}" if name else f"Addition {line_id}"
        return BillingLine(line_id, parse.quantity(record.get("quantity", quantity)), label)


def _addition_error(error: InvalidError, target: BillingTarget) -> Exception:
    said = error.vendor_message
    if error.field.startswith("product"):
        # The exact refusal for an inactive item is undocumented; a product-field error is that.
        return BlockedError(
            f"Catalog item not found: ConnectWise refused catalog item {target.product_id} ({said}). {CATALOG_FIX}"
        )
    return InvalidError(
        f"ConnectWise refused the agreement addition: {said or error.message}",
        field=error.field,
        status=error.status,
        vendor_message=said,
    )


def _number(value: str, field: str) -> str:
    text = str(value).strip()
    if not text.isdigit():
        raise InvalidError(f"“{value}” is not a ConnectWise record id.", field=field)
    return text


def _money(value: str, field: str) -> float:
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidError(f"“{value}” is not an amount.", field=field) from None
    if not amount.is_finite() or amount < 0:
        raise InvalidError(f"“{value}” is not an amount.", field=field)
    return float(amount)


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]
