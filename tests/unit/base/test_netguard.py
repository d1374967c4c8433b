"""The private-network guard (integrations/base/netguard.py): https on a public address only."""

from __future__ import annotations

import socket

import pytest

from integrations.base import netguard
from integrations.base.errors import BlockedError, UnavailableError

PUBLIC_IP = "93.184.216.34"


def resolving_to(*addresses: str):
    calls: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return list(addresses)

    resolve.calls = calls
    return resolve


def test_https_on_a_public_host_is_allowed():
    resolver = resolving_to(PUBLIC_IP)
    netguard.check_url("https://acme.myconnectwise.net/v4_6_release/apis/3.0/", allow_private=False, resolver=resolver)
    assert resolver.calls == [("acme.myconnectwise.net", 443)]


def test_the_url_port_is_resolved():
    resolver = resolving_to(PUBLIC_IP)
    netguard.check_url("https://halo.example.com:8443/api", allow_private=False, resolver=resolver)
    assert resolver.calls == [("halo.example.com", 8443)]


@pytest.mark.parametrize("url", ["http://psa.example.com/api", "ftp://psa.example.com/", "//psa.example.com/x"])
def test_https_is_required(url):
    with pytest.raises(BlockedError) as caught:
        netguard.check_url(url, allow_private=False, resolver=resolving_to(PUBLIC_IP))
    assert "psa.example.com must be reached over https" in str(caught.value)


def test_http_is_refused_unless_private_hosts_are_allowed():
    with pytest.raises(BlockedError):
        netguard.check_url("http://127.0.0.1:8001/api", allow_private=False, resolver=resolving_to("127.0.0.1"))
    netguard.check_url("http://127.0.0.1:8001/api", allow_private=True, resolver=resolving_to("127.0.0.1"))


def test_other_schemes_are_refused_even_when_private_hosts_are_allowed():
    with pytest.raises(BlockedError) as caught:
        netguard.check_url("file://localhost/etc/passwd", allow_private=True, resolver=resolving_to("127.0.0.1"))
    assert "https" in str(caught.value)


@pytest.mark.parametrize("url", ["https:///path", "https://", "not a url"])
def test_a_url_without_a_host_is_refused(url):
    with pytest.raises(BlockedError) as caught:
        netguard.check_url(url, allow_private=False, resolver=resolving_to(PUBLIC_IP))
    assert "no host name" in str(caught.value)


PRIVATE = [
    "127.0.0.1",
    "127.8.9.10",
    "0.0.0.0",
    "10.0.0.1",
    "10.255.255.254",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.20",
    "169.254.169.254",  # cloud metadata
    "169.254.1.1",
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "100.127.255.254",
    "224.0.0.251",  # multicast
    "255.255.255.255",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456:789a::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "fe80::1",
    "fe80::1%eth0",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.1.2.3",
    "::ffff:169.254.169.254",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
]


@pytest.mark.parametrize("address", PRIVATE)
def test_hosts_resolving_to_private_ranges_are_refused(address):
    with pytest.raises(BlockedError) as caught:
        netguard.check_url("https://psa.attacker.example/api", allow_private=False, resolver=resolving_to(address))
    message = str(caught.value)
    assert "psa.attacker.example" in message
    assert address in message
    assert "public host" in message
    assert caught.value.permanent is True


@pytest.mark.parametrize("address", PRIVATE)
def test_allow_private_lifts_the_rule(address):
    netguard.check_url("https://fake-psa.local/api", allow_private=True, resolver=resolving_to(address))


def test_one_private_address_among_public_ones_is_enough_to_refuse():
    with pytest.raises(BlockedError) as caught:
        netguard.check_url(
            "https://mixed.example.com/", allow_private=False, resolver=resolving_to(PUBLIC_IP, "10.0.0.7")
        )
    assert "10.0.0.7" in str(caught.value)


@pytest.mark.parametrize(
    "address",
    [
        PUBLIC_IP,
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",  # just outside 172.16.0.0/12
        "172.15.255.254",
        "100.128.0.1",  # just outside 100.64.0.0/10
        "11.0.0.1",
        "192.169.0.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:81c::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
        "2002:808:808::1",  # 6to4 of 8.8.8.8
    ],
)
def test_public_addresses_are_allowed(address):
    netguard.check_url("https://psa.example.com/api", allow_private=False, resolver=resolving_to(address))


def test_an_unresolvable_host_is_unavailable(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(netguard.socket, "getaddrinfo", fail)
    with pytest.raises(UnavailableError) as caught:
        netguard.check_url("https://nosuch.psa.example/api", allow_private=False)
    assert str(caught.value).startswith("Could not find the host nosuch.psa.example")
    assert "check the region/URL" in str(caught.value)
    assert caught.value.permanent is False


def test_a_host_name_that_cannot_be_encoded_is_unavailable(monkeypatch):
    def fail(*args, **kwargs):
        raise UnicodeError("label too long")

    monkeypatch.setattr(netguard.socket, "getaddrinfo", fail)
    with pytest.raises(UnavailableError) as caught:
        netguard.resolve("x" * 80 + ".example", 443)
    assert "Could not find the host" in str(caught.value)


def test_resolve_returns_each_address_once(monkeypatch):
    seen = []

    def getaddrinfo(host, port, proto=0):
        seen.append((host, port, proto))
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2606:2800:220:1::", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
        ]

    monkeypatch.setattr(netguard.socket, "getaddrinfo", getaddrinfo)
    assert netguard.resolve("psa.example.com", 443) == ["2606:2800:220:1::", "93.184.216.34"]
    assert seen == [("psa.example.com", 443, socket.IPPROTO_TCP)]


def test_the_default_resolver_refuses_localhost(monkeypatch):
    monkeypatch.setattr(
        netguard.socket,
        "getaddrinfo",
        lambda host, port, proto=0: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))],
    )
    with pytest.raises(BlockedError) as caught:
        netguard.check_url("https://localhost/api", allow_private=False)
    assert "localhost" in str(caught.value)


# --- the connect-time check (DNS rebinding) -----------------------------------------------------------


@pytest.fixture
def local_server():
    """A plain HTTP server on loopback recording the Host header of each request."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hosts.append(self.headers.get("Host", ""))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server.server_address[1], hosts
    server.shutdown()
    server.server_close()


def guarded_session():
    import requests

    session = requests.Session()
    session.mount("http://", netguard.PublicOnlyAdapter())
    return session


def test_a_host_that_resolves_to_a_private_address_when_connecting_is_not_reached(local_server):
    import requests

    port, hosts = local_server
    with pytest.raises(requests.ConnectionError, match="private or local network address"):
        guarded_session().get(f"http://localhost:{port}/", timeout=5)
    assert hosts == []


def test_the_socket_opens_to_the_checked_public_address_and_keeps_the_host_name(local_server, monkeypatch):
    port, hosts = local_server
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port_, *args, **kwargs):
        if host == "psa.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port_))]
        return real_getaddrinfo(host, port_, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    opened = []
    real = netguard.urllib3_connection.create_connection

    def create_connection(address, *args, **kwargs):
        opened.append(address)
        return real(("127.0.0.1", address[1]), *args, **kwargs)  # the "public" address is this test's server

    monkeypatch.setattr(netguard.urllib3_connection, "create_connection", create_connection)
    response = guarded_session().get(f"http://psa.example.com:{port}/", timeout=5)
    assert response.text == "ok"
    assert opened == [("93.184.216.34", port)] and hosts == [f"psa.example.com:{port}"]


@pytest.mark.parametrize("allow_private, guarded", [(False, True), (True, False)])
def test_the_http_client_mounts_the_guard_unless_private_hosts_are_allowed(allow_private, guarded):
    from integrations.base.client import HttpClient, Transport

    client = HttpClient("https://psa.example.com/", Transport(allow_private=allow_private))
    assert isinstance(client.session.get_adapter("https://psa.example.com/"), netguard.PublicOnlyAdapter) is guarded
