"""HaloBilling: a tenant's units as the `count` of a Halo software licence (seed 002, billing).

A hub product is mapped to a Halo Item; a tenant's line is the licence of the tenant's client
linked to that item (`item_id`, in the 2026 schema, S2), or the licence the MSP picked
(`BillingTarget.line_id`). A recurring invoice line can take its quantity from the licence
count, so keeping `count` right is all billing needs (fact sheet section 9).
"""

from __future__ import annotations

from collections.abc import Iterable

from integrations.base.billing import BillingAdapter, BillingLine, BillingTarget
from integrations.base.errors import AuthFailedError, BlockedError, InvalidError, NotFoundError, PsaError
from integrations.halo import parse
from integrations.halo.client import HaloClient

# Which number means licence and which subscription is UNCONFIRMED; the connection's
# `licence_type` (or the target's extra["licence_type"]) overrides this guess.
DEFAULT_LICENCE_TYPE = 0
CUSTOMER_LEVEL_SITE = -1  # a licence for the whole customer, not one site (S14)
# Licence counts changed per POST: Halo takes an array of records in every write (fact sheet
# section 5), and one request per licence would spend the connection's budget on billing alone.
WRITE_BATCH = 100


class HaloBilling(BillingAdapter):
    write_batch = WRITE_BATCH

    def __init__(self, client: HaloClient, *, licence_type: int | None = None):
        self.client = client
        self.licence_type = DEFAULT_LICENCE_TYPE if licence_type is None else licence_type
        # Filled by prefetch(): every licence by id, and the ids of each client's licences.
        self._by_id: dict[int, dict] | None = None
        self._by_client: dict[int, set[int]] = {}
        self._item_names: dict[int, str] = {}

    def prefetch(self, targets: Iterable[BillingTarget]) -> None:
        """One listing of all licences (100 a page) instead of one request per tenant, when a
        run covers several clients."""
        if len({parse.as_int(target.company_id) for target in targets}) < 2:
            return
        self._by_id, self._by_client = {}, {}
        for row in self.client.list_licences():
            self._remember(row)

    def _remember(self, row: dict) -> None:
        client_id, licence_id = parse.as_int(row.get("client_id")), parse.as_int(row.get("id"))
        if self._by_id is not None and client_id is not None and licence_id is not None:
            self._by_id[licence_id] = row
            self._by_client.setdefault(client_id, set()).add(licence_id)

    def _forget_listing(self) -> None:
        self._by_id, self._by_client = None, {}

    def _client_licences(self, client_id: int) -> list[dict]:
        if self._by_id is not None:
            return [self._by_id[licence_id] for licence_id in sorted(self._by_client.get(client_id, ()))]
        return list(self.client.list_licences(client_id))

    def _licence(self, licence_id: int) -> dict:
        if self._by_id is not None and licence_id in self._by_id:
            return self._by_id[licence_id]
        return self.client.get_licence(licence_id)

    def read_line(self, target: BillingTarget) -> BillingLine:
        client_id = _int(target.company_id, "company_id")
        if target.line_id:
            licence_id = _int(target.line_id, "line_id")
            try:
                row = self._licence(licence_id)
            except NotFoundError:
                raise NotFoundError(
                    f"The mapped Halo software licence {licence_id} no longer exists. Map this tenant to another "
                    "licence, or clear the mapping so the hub creates one."
                ) from None
            if row.get("deleted"):
                raise NotFoundError(f"The mapped Halo software licence {licence_id} was deleted in Halo.")
            if parse.as_int(row.get("client_id")) not in (None, client_id):
                raise BlockedError(
                    f"The mapped Halo software licence {licence_id} belongs to {row.get('client_name') or 'another client'}, "
                    "not to this tenant's client. Map the tenant to one of its own client's licences."
                )
            return parse.billing_line(row)

        item_id = parse.text(_int(target.product_id, "product_id"))
        licences = [row for row in self._client_licences(client_id) if not row.get("deleted")]
        matches = [row for row in licences if parse.licence_item_id(row) == item_id]
        if not matches and any("item_id" not in row for row in licences):
            # Without item_id (older Halo) a match cannot be ruled out; creating could duplicate.
            raise BlockedError(
                "Halo did not say which item this client's software licences use (an older Halo version?). "
                "Pick the licence to keep in step for this tenant on the billing page."
            )
        if len(matches) > 1:
            listed = ", ".join(parse.licence_label(row) for row in matches)
            raise BlockedError(
                f"Two or more Halo software licences for this client use the mapped item ({listed}). "
                "Keep one: delete the others or link them to another item in Halo, or map this tenant to the "
                "licence to use."
            )
        if not matches:
            return BillingLine(None, 0)
        return parse.billing_line(matches[0])

    def write_quantity(self, target: BillingTarget, current: BillingLine, quantity: int) -> BillingLine:
        if quantity < 0:
            raise InvalidError("A licence count cannot be negative.", field="quantity")
        if current.line_id:
            # Setting an absolute count is the same however often it is sent, so retries are safe.
            licence_id = _int(current.line_id, "line_id")
            saved = parse.one(self.client.post_licences([{"id": licence_id, "count": quantity}], idempotent=True))
            if self._by_id is not None and licence_id in self._by_id:
                self._remember({**self._by_id[licence_id], **saved, "count": _count(saved, quantity)})
            return BillingLine(current.line_id, _count(saved, quantity), current.label)

        item_id = _int(target.product_id, "product_id")
        name = target.name or self._item_name(item_id)
        licence_type = parse.as_int(target.extra.get("licence_type"))
        licence = {
            "name": name,
            "client_id": _int(target.company_id, "company_id"),
            "site_id": CUSTOMER_LEVEL_SITE,
            "count": quantity,
            "item_id": item_id,
            "type": self.licence_type if licence_type is None else licence_type,
        }
        # A create whose answer is lost is found again by read_line (client + item), not resent;
        # the prefetched listing cannot show it, so it is dropped and Halo is asked again.
        try:
            saved = parse.one(self.client.post_licences([licence]))
        except Exception:
            self._forget_listing()
            raise
        if not saved.get("id"):
            self._forget_listing()
            return self.read_line(target)
        self._remember({**licence, **saved})
        return BillingLine(parse.text(saved["id"]), _count(saved, quantity), parse.licence_label({**licence, **saved}))

    def write_quantities(self, writes: list[tuple[BillingTarget, BillingLine, int]]) -> list[BillingLine | Exception]:
        """Counts of existing licences in one POST of up to WRITE_BATCH records (an absolute
        count, so a retry is harmless); new licences one by one (their ids come back only from
        a one-element POST, fact sheet section 5). The answer to a many-element POST is not
        documented, so a count Halo does not echo back is taken as sent. When Halo refuses the
        whole POST for good (a licence deleted meanwhile...), each licence is written on its own
        so that only the one concerned fails; a transient failure or refused credentials
        concern them all."""
        results: list[BillingLine | Exception | None] = [None] * len(writes)
        updates: list[int] = []
        for index, (target, current, quantity) in enumerate(writes):
            if current.line_id and quantity >= 0 and parse.as_int(current.line_id) is not None:
                updates.append(index)
            else:
                results[index] = self._write_one(target, current, quantity)
        for start in range(0, len(updates), WRITE_BATCH):
            chunk = updates[start : start + WRITE_BATCH]
            body = [{"id": parse.as_int(writes[i][1].line_id), "count": writes[i][2]} for i in chunk]
            try:
                answer = self.client.post_licences(body, idempotent=True)
            except PsaError as error:
                if error.permanent and not isinstance(error, AuthFailedError) and len(chunk) > 1:
                    for i in chunk:
                        results[i] = self._write_one(*writes[i])
                else:
                    for i in chunk:
                        results[i] = error
                continue
            rows = answer if isinstance(answer, list) else [answer]
            saved = {parse.as_int(row.get("id")): row for row in rows if isinstance(row, dict)}
            for i in chunk:
                _, current, quantity = writes[i]
                licence_id = parse.as_int(current.line_id)
                row = saved.get(licence_id) or {}
                count = _count(row, quantity)
                if self._by_id is not None and licence_id in self._by_id:
                    self._remember({**self._by_id[licence_id], **row, "count": count})
                results[i] = BillingLine(current.line_id, count, current.label)
        return results  # type: ignore[return-value] - every slot is filled above

    def _write_one(self, target: BillingTarget, current: BillingLine, quantity: int) -> BillingLine | Exception:
        try:
            return self.write_quantity(target, current, quantity)
        except Exception as exc:  # handed back for that licence
            return exc

    def _item_name(self, item_id: int) -> str:
        if item_id not in self._item_names:
            self._item_names[item_id] = parse.text(self.client.get_item(item_id).get("name")) or f"Item {item_id}"
        return self._item_names[item_id]


def _count(saved: dict, sent: int) -> int:
    count = parse.as_int(saved.get("count"))
    return sent if count is None else count


def _int(value, field: str) -> int:
    number = parse.as_int(value)
    if number is None:
        raise InvalidError(f"{value!r} is not a Halo id.", field=field)
    return number
