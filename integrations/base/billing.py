"""The billing capability: read a tenant's billed quantity in the PSA and set it.

The billing service plans (read, compare) and applies (write only what differs). A line is
where one tenant's count for one product lives: a ConnectWise agreement addition, an Autotask
recurring-service contract service, a Halo software licence. Business rules that stop a
tenant (two agreements with the product, a future-dated contract, a duplicate service...)
raise BlockedError with the exact message the seeds give.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BillingTarget:
    """Where a tenant's units go, as mapped on the billing page."""

    company_id: str
    product_id: str  # ConnectWise catalog item / Autotask service / Halo item
    agreement_id: str = ""  # ConnectWise agreement / Autotask contract
    line_id: str = ""  # Halo licence (or a known addition / contract service)
    name: str = ""  # for new lines (Halo licence name)
    description: str = ""  # invoice description override
    unit_price: str = ""  # optional overrides (decimal strings)
    unit_cost: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BillingLine:
    """The PSA's current state of a target: None line_id means it does not exist yet."""

    line_id: str | None
    quantity: int
    label: str = ""  # e.g. "Agreement “Managed Security” / Addition 901"


@dataclass(frozen=True)
class BillingFields:
    """How billing is called on this PSA and where the billing pages' lists come from."""

    name: str  # the PSA as billing messages name it
    product_noun: str  # "catalog item", "service", "item"
    agreement_noun: str  # "agreement", "contract", "licence"
    needs_agreement: bool  # a tenant needs an agreement/contract mapped before it can be billed
    product_kind: str  # picklist kind of the products
    product_label: str  # "Catalog Item"
    company_label: str
    company_choice: bool  # the operator picks the company (Autotask's "Customer")
    agreement_kind: str = ""
    agreement_label: str = ""
    line_kind: str = ""
    line_label: str = ""
    line_parent: str = ""  # "agreement" | "company"
    overrides: bool = False  # invoice description and unit price/cost are sent (ConnectWise additions)
    line_help: str = ""
    # The mapping key of the product's own id on a line ("service_id" for Autotask, else "item_id").
    line_product_key: str = "item_id"


class BillingAdapter(ABC):
    # How many lines the billing service hands to write_quantities at once; 1: one write_quantity
    # per line. A PSA that takes many lines in one write request (Halo) says how many.
    write_batch: int = 1

    def prefetch(self, targets: Iterable[BillingTarget]) -> None:
        """Optional: before a run reads many targets, load what they share in a few requests
        (ConnectWise lists many companies' agreements at once). read_line works without it."""

    @abstractmethod
    def read_line(self, target: BillingTarget) -> BillingLine:
        """Current quantity of the target's line (0 with line_id None when missing).
        Raises BlockedError for the seeds' business rules, NotFoundError when the mapped
        agreement/contract/licence is gone."""

    @abstractmethod
    def write_quantity(self, target: BillingTarget, current: BillingLine, quantity: int) -> BillingLine:
        """Make the line's quantity `quantity` (create the line when current.line_id is None).
        Called only when it differs from current.quantity."""

    def write_quantities(self, writes: list[tuple[BillingTarget, BillingLine, int]]) -> list[BillingLine | Exception]:
        """write_quantity for several lines (target, current line, quantity): one result per
        line in the same order, the line as written or the error that line met (raised errors
        are handed back, so one line's failure never hides another's write). Called with at
        most `write_batch` lines; by default they are written one by one."""
        results: list[BillingLine | Exception] = []
        for target, current, quantity in writes:
            try:
                results.append(self.write_quantity(target, current, quantity))
            except Exception as exc:  # handed back for that line
                results.append(exc)
        return results
