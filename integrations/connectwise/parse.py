"""ConnectWise values in and out: sites and API hosts, conditions, and JSON records turned into
the hub's small dataclasses.

Sites: users log in at a cloud site (na.myconnectwise.net) but the API answers on the same
host with `api-` in front; without the prefix the cloud refuses with "SSL is required."
On-premise and custom domains are used as given (fact sheet section 1).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from integrations.base.provider import Company, Contact, PicklistItem
from integrations.base.ticketing import TicketRef

# Cloud login site -> API host. Seed 004 lists api-aus. for Australia and the Developer Guide
# lists api-au.; both cloud sites exist, so both are here.
CLOUD_API_HOSTS = {
    "na.myconnectwise.net": "api-na.myconnectwise.net",
    "eu.myconnectwise.net": "api-eu.myconnectwise.net",
    "au.myconnectwise.net": "api-au.myconnectwise.net",
    "aus.myconnectwise.net": "api-aus.myconnectwise.net",
    "za.myconnectwise.net": "api-za.myconnectwise.net",
    "staging.connectwisedev.com": "api-staging.connectwisedev.com",
}
CLOUD_SITES = {api: site for site, api in CLOUD_API_HOSTS.items()}

# The regions offered in the link form, in seed 004's order and words.
REGIONS = {
    "na": ("North America", "na.myconnectwise.net"),
    "eu": ("Europe", "eu.myconnectwise.net"),
    "aus": ("Australia", "aus.myconnectwise.net"),
    "au": ("Australia (au.myconnectwise.net)", "au.myconnectwise.net"),
    "za": ("South Africa", "za.myconnectwise.net"),
    "staging": ("Staging", "staging.connectwisedev.com"),
}

SUMMARY_LIMIT = 100  # the Ticket model's documented maximum
# No published limit for initialDescription or note text. This keeps a 100 kB incident body
# well inside what any request-size limit in front of ConnectWise would accept.
TEXT_LIMIT = 20_000

_HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_CODEBASE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}/$")


class SiteError(ValueError):
    """A site the user typed that cannot be used; the message names the fix."""


@dataclass(frozen=True)
class Site:
    site: str  # the login host (with :port when not 443): for companyinfo and ticket links
    api_host: str  # where the REST API answers
    scheme: str = "https"

    @property
    def site_url(self) -> str:
        return f"{self.scheme}://{self.site}"

    @property
    def api_url(self) -> str:
        return f"{self.scheme}://{self.api_host}"


EXAMPLE = "na.myconnectwise.net or mycompany.connectwise.com"


def normalise_site(text: str, *, allow_http: bool = False) -> Site:
    """The site a user typed, with scheme, path, query and whitespace taken away.

    Accepts a cloud login site, its api- host, or a custom/on-premise host. http:// is
    kept only when `allow_http` (local fake PSAs); otherwise it becomes https, which every
    ConnectWise production server requires.
    """
    raw = (text or "").strip()
    if not raw:
        raise SiteError(f"Enter your ConnectWise site, e.g. {EXAMPLE}.")
    if any(ch.isspace() for ch in raw):
        raise SiteError(f"The site cannot contain spaces. Enter it like {EXAMPLE}.")
    has_scheme = "://" in raw
    parts = urlsplit(raw if has_scheme else f"https://{raw}")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise SiteError(f"Enter the site as a web address (https), e.g. {EXAMPLE}.")
    if "@" in parts.netloc:
        raise SiteError(f"Enter only the host name, without a user name, e.g. {EXAMPLE}.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise SiteError(f"Enter your ConnectWise site, e.g. {EXAMPLE}.")
    try:
        port = parts.port
    except ValueError:
        raise SiteError(f"The port in “{raw}” is not a number. Enter the site without it, e.g. {EXAMPLE}.") from None
    _check_host(host)
    if scheme == "http" and not allow_http:
        scheme = "https"
    if port == (443 if scheme == "https" else 80):
        port = None
    if port is not None and (host in CLOUD_API_HOSTS or host in CLOUD_SITES):
        raise SiteError(f"ConnectWise cloud sites do not use a port: enter {host} without “:{port}”.")
    site_host = CLOUD_SITES.get(host, host)
    api_host = CLOUD_API_HOSTS.get(site_host, site_host)
    netloc = _netloc(site_host, port)
    return Site(site=netloc, api_host=_netloc(api_host, port), scheme=scheme)


def site_for_region(region: str) -> Site:
    label_site = REGIONS.get(region)
    if label_site is None:
        raise SiteError(f"Unknown region “{region}”.")
    site = label_site[1]
    return Site(site=site, api_host=CLOUD_API_HOSTS[site])


def region_of(site: str) -> str:
    """The region key whose site this is, or "" for a custom/on-premise site."""
    for key, (_, region_site) in REGIONS.items():
        if region_site == site:
            return key
    return ""


def api_host_for(site: str) -> str:
    host, port = re.match(r"^(.*?)(:\d+)?$", site).groups()
    return CLOUD_API_HOSTS.get(host, host) + (port or "")


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
        return  # a literal address: netguard decides whether it may be called
    except ValueError:
        pass
    labels = host.split(".")
    if host != "localhost" and len(labels) < 2:
        raise SiteError(f"Enter the full host name of your ConnectWise site, e.g. {EXAMPLE}, not “{host}”.")
    if not all(_HOST_LABEL.match(label) for label in labels):
        raise SiteError(f"“{host}” is not a valid host name. Enter it like {EXAMPLE}.")


def _netloc(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


def check_codebase(value) -> str:
    """The codebase from login/companyinfo ("v2025_1/"), which becomes part of every URL."""
    text = str(value or "")
    if text and not text.endswith("/"):
        text += "/"
    if not _CODEBASE.match(text):
        raise ValueError(f"unexpected codebase {value!r}")
    return text


# --- conditions --------------------------------------------------------------------------------


def quoted(value: str) -> str:
    """A string literal for `conditions`. ConnectWise documents no escape for a double quote
    inside a value, so one is dropped rather than guessed."""
    return '"' + str(value).replace('"', "").replace("\\", "") + '"'


def all_of(*conditions: str) -> str:
    return " and ".join(c for c in conditions if c)


# --- text -------------------------------------------------------------------------------------


def one_line(text: str, limit: int) -> str:
    """A single line of at most `limit` characters (summaries: newlines are not kept)."""
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def clipped(text: str, limit: int = TEXT_LIMIT) -> str:
    text = text or ""
    if len(text) <= limit:
        return text
    notice = f"\n\n[Truncated by the hub: {len(text) - limit} more characters are in the hub's incident.]"
    return text[: limit - len(notice)] + notice


# --- records ----------------------------------------------------------------------------------


def text_id(value) -> str:
    return "" if value is None else str(value)


def ref_id(record: dict | None, name: str) -> str:
    """The id of a reference field ({"id": 5, "name": ...}) or ""."""
    value = (record or {}).get(name)
    return text_id(value.get("id")) if isinstance(value, dict) else ""


def quantity(value) -> int:
    """Addition quantities are decimals; the hub counts whole units."""
    try:
        return int(round(float(value or 0)))
    except (TypeError, ValueError):
        return 0


def company(record: dict) -> Company:
    return Company(
        id=text_id(record.get("id")),
        name=record.get("name") or record.get("identifier") or "",
        identifier=record.get("identifier") or "",
        active=not record.get("deletedFlag"),
    )


def contact(record: dict) -> Contact:
    name = " ".join(p for p in (record.get("firstName"), record.get("lastName")) if p)
    emails = [c for c in record.get("communicationItems") or [] if c.get("communicationType") == "Email"]
    emails.sort(key=lambda c: not c.get("defaultFlag"))
    return Contact(
        id=text_id(record.get("id")),
        name=name,
        email=emails[0].get("value", "") if emails else "",
        company_id=ref_id(record, "company"),
    )


def picklist_item(record: dict, parent_id: str = "", **extra) -> PicklistItem:
    inactive = record.get("inactiveFlag", record.get("inactive", False))
    return PicklistItem(
        id=text_id(record.get("id")),
        name=record.get("name") or "",
        parent_id=parent_id,
        active=not inactive,
        extra={k: v for k, v in extra.items() if v is not None},
    )


def catalog_item(record: dict) -> PicklistItem:
    identifier = record.get("identifier") or ""
    description = record.get("description") or ""
    both = identifier and description and identifier != description
    name = f"{identifier}: {description}" if both else identifier or description
    return PicklistItem(
        id=text_id(record.get("id")),
        name=name,
        active=not record.get("inactiveFlag", False),
        extra={"identifier": identifier},
    )


def agreement(record: dict) -> PicklistItem:
    return PicklistItem(
        id=text_id(record.get("id")),
        name=record.get("name") or "",
        parent_id=ref_id(record, "company"),
        active=not record.get("cancelledFlag") and record.get("agreementStatus", "Active") == "Active",
        extra={"type": (record.get("type") or {}).get("name", ""), "status": record.get("agreementStatus", "")},
    )


def ticket_ref(record: dict, url: str = "") -> TicketRef:
    ticket_id = text_id(record.get("id"))
    return TicketRef(
        id=ticket_id,
        number=ticket_id,
        status_id=ref_id(record, "status"),
        closed=bool(record.get("closedFlag")),
        url=url,
    )
