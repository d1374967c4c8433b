"""Autotask JSON in, the hub's small values out; and Autotask's error texts, classified.

Autotask answers camelCase (`companyName`), but its field names are case-insensitive and its
swagger spells them PascalCase, so every lookup here goes through `field()`.
"""

from __future__ import annotations

import re
from datetime import date

from integrations.base.provider import Company, Contact, PicklistItem

# Autotask's system "Complete" status; the only status value that means the same in every
# database (fact sheet section 9). Other closed-like statuses are per database.
COMPLETE_STATUS = "5"

# Modules as they appear on an Autotask security level, by the entity endpoint that needs them.
MODULES = {
    "companies": "Companies (CRM)",
    "contacts": "Contacts (CRM)",
    "tickets": "Tickets (Service Desk)",
    "ticketnotes": "Ticket Notes (Service Desk)",
    "contracts": "Contracts",
    "contractservices": "Contracts",
    "contractserviceunits": "Contracts",
    "contractserviceadjustments": "Contracts",
    "services": "Services",
}
FIX = (
    "In Autotask: Admin > Account Settings & Users > Resources/Users > Security Levels: give the API "
    "user's security level access to {module}."
)

_PERMISSION = re.compile(r"adequate permissions to (\w+) this entity type", re.IGNORECASE)
_INTEGRATION_CODE = re.compile(r"integration\s*code is invalid", re.IGNORECASE)
_ZONE_UNKNOWN = re.compile(r"zone information could not be determined", re.IGNORECASE)
# Field names Autotask puts in its validation messages, most specific first.
_FIELD_PATTERNS = (
    re.compile(r"does not exist for (\w+)", re.IGNORECASE),  # Picklist value [3] does not exist for priority
    re.compile(r"required field (\w+)", re.IGNORECASE),  # Value does not exist for the required field resourceID
    re.compile(r"on field:?\s*(\w+)", re.IGNORECASE),  # Reference value on field: contactID of ...
    re.compile(r"entity for (\w+)", re.IGNORECASE),  # Value does not reference an existing entity for taskType
    re.compile(r"Unable to find (\w+) in the", re.IGNORECASE),  # unknown field in a filter
    re.compile(r"^(\w+) is required", re.IGNORECASE),  # queueID is required
)


def field(record: dict | None, name: str, default=None):
    """`record[name]`, matching the name case-insensitively."""
    if not record:
        return default
    if name in record:
        return record[name]
    lowered = name.lower()
    for key, value in record.items():
        if key.lower() == lowered:
            return value
    return default


def text_id(value) -> str:
    return "" if value is None else str(value)


def date_of(value) -> date | None:
    """The calendar date of an Autotask datetime ("2025-06-01T00:00:00Z" or "…T00:00:00")."""
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


# --- errors --------------------------------------------------------------------------------------


def error_texts(body) -> list[str]:
    """The `errors` array of an Autotask failure body, as strings; [] when there is none."""
    errors = field(body, "errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [str(field(e, "message", e) if isinstance(e, dict) else e) for e in errors if e not in (None, "")]


def permission_action(text: str) -> str | None:
    """'query', 'create', 'update'... when the text is Autotask's security-level refusal."""
    match = _PERMISSION.search(text)
    return match.group(1).lower() if match else None


def is_invalid_integration_code(text: str) -> bool:
    return bool(_INTEGRATION_CODE.search(text))


def is_unknown_zone_user(text: str) -> bool:
    return bool(_ZONE_UNKNOWN.search(text))


def field_in_error(text: str) -> str:
    for pattern in _FIELD_PATTERNS:
        match = pattern.search(text.strip())
        if match:
            return match.group(1)
    return ""


def entity_of(path: str) -> str:
    """The entity endpoint a path belongs to, lower-cased: '/ATServicesRest/V1.0/Tickets/7/Notes'
    -> 'ticketnotes'. Children count as their own entity (Autotask limits threads per endpoint)."""
    parts = [p for p in path.split("/") if p]
    for index, part in enumerate(parts):
        if part.lower() == "v1.0":
            parts = parts[index + 1 :]
            break
    if not parts:
        return ""
    entity = parts[0].lower()
    if len(parts) >= 3 and parts[1].isdigit():
        child = parts[2].lower()
        entity = CHILD_ENTITIES.get((entity, child), entity + child)
    return entity


CHILD_ENTITIES = {
    ("tickets", "notes"): "ticketnotes",
    ("contracts", "services"): "contractservices",
    ("contracts", "serviceunits"): "contractserviceunits",
    ("contracts", "serviceadjustments"): "contractserviceadjustments",
    ("companies", "contacts"): "contacts",
}


def module_for(entity: str) -> str:
    return MODULES.get(entity.lower(), entity or "this entity")


# --- records ---------------------------------------------------------------------------------------


def company(record: dict) -> Company:
    return Company(
        id=text_id(field(record, "id")),
        name=field(record, "companyName") or "",
        identifier=field(record, "companyNumber") or "",
        active=bool(field(record, "isActive", True)),
    )


def contact(record: dict) -> Contact:
    name = " ".join(part for part in (field(record, "firstName"), field(record, "lastName")) if part)
    return Contact(
        id=text_id(field(record, "id")),
        name=name,
        email=field(record, "emailAddress") or "",
        company_id=text_id(field(record, "companyID")),
    )


def field_info(fields_body: dict, name: str) -> dict | None:
    """One field's metadata from an entityInformation/fields answer."""
    for info in field(fields_body, "fields") or []:
        if (field(info, "name") or "").lower() == name.lower():
            return info
    return None


def picklist(fields_body: dict, name: str, *, parent_id: str = "") -> list[PicklistItem]:
    """The active values of one picklist field, in Autotask's sort order. Values are strings in
    metadata and integers on records; the hub keeps the string."""
    info = field_info(fields_body, name)
    if info is None:
        return []
    values = [v for v in field(info, "picklistValues") or [] if field(v, "isActive", True)]
    # Grouped by parent (sub-issue types under their issue type), then in Autotask's order.
    values.sort(key=lambda v: (text_id(field(v, "parentValue")), field(v, "sortOrder") or 0, field(v, "label") or ""))
    items = []
    for value in values:
        parent = text_id(field(value, "parentValue"))
        if parent_id and parent != parent_id:
            continue
        item_id = text_id(field(value, "value"))
        extra = {"default": bool(field(value, "isDefaultValue")), "system": bool(field(value, "isSystem"))}
        if name.lower() == "status":
            extra["closed"] = item_id == COMPLETE_STATUS
        items.append(PicklistItem(id=item_id, name=field(value, "label") or item_id, parent_id=parent, extra=extra))
    return items


def default_value(fields_body: dict, name: str) -> str:
    """The value marked default for a picklist field, else its first active value."""
    items = picklist(fields_body, name)
    for item in items:
        if item.extra.get("default"):
            return item.id
    return items[0].id if items else ""


def contract_item(record: dict) -> PicklistItem:
    start, end = date_of(field(record, "startDate")), date_of(field(record, "endDate"))
    status = field(record, "status")
    return PicklistItem(
        id=text_id(field(record, "id")),
        name=field(record, "contractName") or "",
        parent_id=text_id(field(record, "companyID")),
        # 1 is Active in every public fixture; an Active contract can still be past its end date,
        # so the dates travel with it for the billing page to show.
        active=status == 1,
        extra={
            "status": status,
            "start_date": start.isoformat() if start else "",
            "end_date": end.isoformat() if end else "",
            "contract_number": field(record, "contractNumber") or "",
        },
    )
