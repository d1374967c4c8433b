"""The private-network guard for hosts that users type in (ConnectWise site, Halo servers).

A PSA must be reached over https on a public address. A hostname that resolves to loopback,
private, link-local, shared, multicast or cloud-metadata ranges is refused, so nobody can
point the hub's workers at the inside of its own network. `allow_private` (the
PSA_ALLOW_PRIVATE_HOSTS setting) lifts the rule for tests and local fake PSAs only.

The rule is checked twice: `check_url` before each request gives the user a clear message, and
`PublicOnlyAdapter` checks the addresses again when the socket is opened and connects to a
checked address only. Without the second check a DNS answer that changes between the two
lookups (DNS rebinding) could still reach a private address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from integrations.base.errors import BlockedError, UnavailableError

# Cloud metadata services answer on these even where they are not "private".
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
# NAT64 (RFC 6052): the last 32 bits are an IPv4 address the gateway connects to.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # IPv6 forms that reach an embedded IPv4 address are judged by that address.
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address.sixtofour is not None:
            address = address.sixtofour
        elif address in _NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.is_global and not address.is_multicast and address not in _METADATA


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UnavailableError(f"Could not find the host {host}: check the region/URL for typing mistakes.") from None
    return sorted({info[4][0] for info in infos})


def check_url(url: str, *, allow_private: bool, resolver: Callable[[str, int], list[str]] = resolve) -> None:
    """Raise BlockedError unless `url` is https on a public host (or the guard is lifted).
    `resolver` is swappable so tests run without DNS."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        raise BlockedError(f"{url!r} has no host name.")
    if allow_private:
        if parts.scheme not in ("https", "http"):
            raise BlockedError(f"Only https addresses can be used, not {parts.scheme or 'no scheme'}.")
        return
    if parts.scheme != "https":
        raise BlockedError(f"{host} must be reached over https.")
    for address in resolver(host, parts.port or 443):
        if not _is_public(ipaddress.ip_address(address.split("%")[0])):
            raise BlockedError(
                f"{host} resolves to {address}, a private or local network address. The hub only connects "
                "to PSAs on public internet addresses; enter your PSA's public host name."
            )


def check_typed_host(value: str, *, allow_private: bool) -> None:
    """The check a form can make without DNS: a host typed as a private IP address or as a
    local name is refused at once; names are resolved (and checked) when the hub connects."""
    if allow_private or not value:
        return
    host = urlsplit(value if "//" in value else f"//{value}").hostname or ""
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise BlockedError(f"{host} is a local network name. Enter your PSA's public host name.")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if not _is_public(address):
        raise BlockedError(
            f"{host} is a private or local network address. The hub only connects to PSAs on public internet "
            "addresses; enter your PSA's public host name."
        )


# --- connect-time check ----------------------------------------------------------------------------


class _PublicOnly:
    """urllib3 connection mixin: resolve the host, keep its public addresses, connect to one."""

    def _new_conn(self):
        try:
            infos = socket.getaddrinfo(self._dns_host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        public = [a for a in addresses if _is_public(ipaddress.ip_address(a.split("%")[0]))]
        if not public:
            raise NewConnectionError(self, f"{self.host} resolves to {', '.join(addresses)}, a private or local network "
                                           "address: the hub does not connect there.")
        error: OSError | None = None
        for address in public:  # an address literal: create_connection does no DNS lookup of its own
            try:
                return urllib3_connection.create_connection(
                    (address, self.port), self.timeout, source_address=self.source_address,
                    socket_options=self.socket_options,
                )  # fmt: skip
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})") from exc
            except OSError as exc:
                error = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")


class _PublicHTTPConnection(_PublicOnly, HTTPConnection):
    pass


class _PublicHTTPSConnection(_PublicOnly, HTTPSConnection):
    pass  # TLS still verifies the certificate against the host name, not the address


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    """requests adapter whose connections open to public addresses only (mounted by the HTTP
    client unless PSA_ALLOW_PRIVATE_HOSTS lifts the rule)."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicHTTPPool, "https": _PublicHTTPSPool}


def guard(session, *, allow_private: bool):
    """Mount PublicOnlyAdapter on a requests session, unless private hosts are allowed."""
    if not allow_private:
        adapter = PublicOnlyAdapter()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
    return session
