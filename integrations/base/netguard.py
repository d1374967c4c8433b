"""The private-network guard for hosts that users type in (ConnectWise site, Halo servers).

A PSA must be reached over https on a public address. A hostname that resolves to loopback,
private, link-local, shared, multicast or cloud-metadata ranges is refused, so nobody can
point the hub's workers at the inside of its own network. `allow_private` (the
PSA_ALLOW_PRIVATE_HOSTS setting) lifts the rule for tests and local fake PSAs only.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

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
