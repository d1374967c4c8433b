"""What the Ticketing page asks for, per PSA: each provider's `ticketing_fields` by vendor slug."""

from __future__ import annotations

from integrations import registry
from integrations.base.ticketing import ChoiceField, TicketingFields

VendorTicketing = TicketingFields
VENDOR_TICKETING = {slug: registry.provider(slug).ticketing_fields for slug in registry.slugs()}

__all__ = ["VENDOR_TICKETING", "ChoiceField", "VendorTicketing"]
