"""Zone discovery: which Autotask host serves this MSP's database.

Each database lives in one zone (webservices1…NN) and the API user's UserName is enough to find
it, without authentication. The discovery base URL is a setting (tests point it at a fake);
the version segment is pinned to v1.0 because a "V2.0" listed by versionInformation answers 404
for zoneInformation (fact sheet section 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from integrations.autotask import parse
from integrations.base.client import HttpClient, Transport
from integrations.base.errors import AuthFailedError, PsaError, UnavailableError

DEFAULT_DISCOVERY_URL = "https://webservices.autotask.net/atservicesrest/"
API_VERSION = "V1.0"


@dataclass(frozen=True)
class Zone:
    name: str
    url: str  # the REST root as Autotask returns it: https://webservices14.autotask.net/ATServicesRest/
    web_url: str  # the UI host, for links to tickets
    ci: int | None = None

    @property
    def api_url(self) -> str:
        return api_url(self.url)


def api_url(zone_url: str) -> str:
    """`{url}V1.0/`: Autotask's `url` ends in a slash and carries no version."""
    return zone_url.rstrip("/") + "/" + API_VERSION + "/"


class ZoneClient(HttpClient):
    vendor = "Autotask"

    def __init__(self, discovery_url: str = DEFAULT_DISCOVERY_URL, transport: Transport | None = None):
        super().__init__(discovery_url or DEFAULT_DISCOVERY_URL, transport)
        self._asked_for = ""  # the UserName of the last lookup, for the error that names it

    def zone_information(self, username: str) -> dict:
        """GET v1.0/zoneInformation?user=… (exempt from thread limits, needs no credentials)."""
        self._asked_for = username
        return self.get("v1.0/zoneInformation", params={"user": username}, authorize=False)

    def bucket_for(self, method: str, path: str) -> str:
        return "zoneinformation"

    def error_for(self, method: str, url: str, response: requests.Response) -> PsaError:
        try:
            texts = parse.error_texts(response.json())
        except ValueError:
            texts = []
        if any(parse.is_unknown_zone_user(t) for t in texts):
            username = self._asked_for
            return AuthFailedError(
                f"Authentication failed: Autotask does not know the Username “{username}”. Re-enter the "
                "Username exactly as shown on the API user in Autotask (Admin > Resources (Users)); a "
                "new API user can take a few minutes before Autotask accepts it.",
                status=response.status_code,
                vendor_message="; ".join(texts),
            )
        return super().error_for(method, url, response)


def discover(username: str, *, discovery_url: str = DEFAULT_DISCOVERY_URL, transport: Transport | None = None) -> Zone:
    username = (username or "").strip()
    if not username:
        raise AuthFailedError("Authentication failed: enter the Username of the Autotask API user.")
    body = ZoneClient(discovery_url, transport).zone_information(username)
    url = parse.field(body, "url") if isinstance(body, dict) else None
    if not url or urlsplit(str(url)).scheme not in ("https", "http"):
        raise UnavailableError("Autotask's zone discovery answered without an API address; try again in a few minutes.")
    web_url = str(parse.field(body, "webUrl") or "")
    return Zone(
        name=str(parse.field(body, "zoneName") or ""),
        url=str(url) if str(url).endswith("/") else f"{url}/",
        web_url=web_url if not web_url or web_url.endswith("/") else f"{web_url}/",
        ci=parse.field(body, "ci"),
    )
