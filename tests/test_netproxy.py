"""The sandbox's filtering proxy (tools/netproxy.py), over real loopback sockets only.

A listening socket made here stands in for the sandbox's 127.0.0.1:3128; upstreams are a loopback echo server
(CONNECT target) and a loopback ``http.server``. Names resolve through ``FREE_AGENT_TEST_RESOLVE`` (no DNS) or
an injected resolver; a refused address is shown refused with an injected connector that records every call and
never connects anywhere but loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import queue
import socket
import socketserver
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from free_llm_agent.tools import netproxy
from free_llm_agent.tools.netpolicy import client_hello_sni
from free_llm_agent.tools.netproxy import (
    DEFAULT_ALLOWED_DOMAINS,
    TEST_RESOLVE_ENV,
    FilteringProxy,
    NetworkPolicy,
    Refusal,
    ServeHandle,
    domains_in,
    forbidden_address,
)

PINS = {
    "allowed.test": "127.0.0.1", "asked.test": "127.0.0.1", "other.test": "127.0.0.1",
    "internal.example": "10.0.0.5", "cgnat.test": "100.64.1.2", "metadata.test": "169.254.169.254",
    "ula.test": "fd00::1", "mapped.test": "::ffff:10.0.0.1", "public.test": "93.184.216.34",
}


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _Upstream(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.requestline, dict(self.headers.items())))
        body = b"hello from upstream"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TEST_RESOLVE_ENV, json.dumps(PINS))


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def http_port() -> Iterator[int]:
    _Upstream.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


Handler = Callable[[socket.socket, "queue.Queue[bytes]"], None]


def _first_bytes(conn: socket.socket, got: queue.Queue[bytes]) -> None:
    """Keep the first bytes received, then close."""
    got.put(conn.recv(65536))


def _one_answer(conn: socket.socket, got: queue.Queue[bytes]) -> None:
    """Read a request head, answer it and half-close, then keep everything received until EOF."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
        data += chunk
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    conn.shutdown(socket.SHUT_WR)
    while chunk := conn.recv(65536):
        data += chunk
    got.put(data)


@pytest.fixture
def raw_server(request: pytest.FixtureRequest) -> Iterator[tuple[int, queue.Queue[bytes]]]:
    """A loopback upstream running the handler given by indirect parametrization: (port, what it received)."""
    handler: Handler = request.param
    got: queue.Queue[bytes] = queue.Queue()

    class Handle(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            handler(self.request, got)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1], got
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy() -> Iterator[FilteringProxy]:
    p = FilteringProxy()
    yield p
    p.close()


class Recorder:
    """A connector double: records (ip, port); connects only to the loopback echo server (when given)."""

    def __init__(self, echo_port: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.echo_port = echo_port

    async def __call__(self, ip: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.calls.append((ip, port))
        if self.echo_port is None:
            raise AssertionError(f"connected to {ip}")
        return await asyncio.open_connection("127.0.0.1", self.echo_port)


def serve(proxy: FilteringProxy, policy: NetworkPolicy) -> tuple[ServeHandle, int, socket.socket]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return proxy.serve(listener, policy), listener.getsockname()[1], listener


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        assert chunk, data
        data += chunk
    return data


def exchange(port: int, request: bytes) -> tuple[int, str, str]:
    """Send ``request``, read to EOF: (status, head, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), head, body


def client_hello(sni: str | None, *, extra: bytes = b"") -> bytes:
    """A TLS 1.2-style ClientHello record naming ``sni`` (no server_name extension if None)."""
    def vec(data: bytes, size: int) -> bytes:
        return len(data).to_bytes(size, "big") + data

    extensions = extra
    if sni is not None:
        extensions += b"\x00\x00" + vec(vec(b"\x00" + vec(sni.encode(), 2), 2), 2)
    extensions += b"\x00\x0b" + vec(vec(b"\x00", 1), 2)  # ec_point_formats after it: the parser must skip on
    body = (b"\x03\x03" + bytes(range(32)) + vec(b"\x01" * 32, 1) + vec(b"\x13\x01\xc0\x2f", 2) + vec(b"\x00", 1)
            + vec(extensions, 2))
    handshake = b"\x01" + vec(body, 3)
    return b"\x16\x03\x01" + vec(handshake, 2)


def tunnel(port: int, target: str, sni: str | None = "") -> socket.socket:
    """A CONNECT tunnel to an echo server, past the SNI check: a ClientHello naming ``sni`` (default: the target's
    host) is sent first and read back."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert read_head(sock).startswith(b"HTTP/1.1 200 ")
    hello = client_hello(target.rpartition(":")[0] if sni == "" else sni)
    sock.sendall(hello)
    echoed = b""
    while len(echoed) < len(hello) and (chunk := sock.recv(65536)):
        echoed += chunk
    assert echoed == hello
    return sock


def connect_status(port: int, target: str) -> tuple[int, str]:
    status, _, body = exchange(port, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    return status, body


def test_connect_tunnel_to_allowed_pinned_domain(pinned: None, proxy: FilteringProxy, echo_port: int) -> None:
    _, port, _ = serve(proxy, NetworkPolicy("allowlist", ["allowed.test"]))
    with tunnel(port, f"ALLOWED.test.:{echo_port}") as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
        sock.shutdown(socket.SHUT_WR)  # a half-close is passed on: the echo server ends, the tunnel too
        assert sock.recv(10) == b""


def test_plain_http_is_forwarded_in_origin_form(pinned: None, proxy: FilteringProxy, http_port: int) -> None:
    _, port, _ = serve(proxy, NetworkPolicy("allowlist", ["allowed.test"]))
    status, _, body = exchange(port, (
        f"GET http://allowed.test:{http_port}/data.csv?x=1#frag HTTP/1.1\r\nHost: wrong.example\r\n"
        "Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive, X-Hop\r\n"
        "X-Hop: 1\r\nAccept: text/csv\r\n\r\n").encode())
    assert (status, body) == (200, "hello from upstream")
    [(line, headers)] = _Upstream.seen
    assert line == "GET /data.csv?x=1 HTTP/1.1"
    assert headers["Connection"] == "close"
    assert headers["Host"] == f"allowed.test:{http_port}"
    assert headers["Accept"] == "text/csv"
    assert not [h for h in headers if h.lower().startswith("proxy-") or h == "X-Hop"]
    status, _, _ = exchange(port, f"GET http://allowed.test:{http_port} HTTP/1.0\r\n\r\n".encode())
    assert status == 200 and _Upstream.seen[1][0] == "GET / HTTP/1.0"  # the client's HTTP version is kept


def test_urllib_through_the_proxy(pinned: None, proxy: FilteringProxy, http_port: int) -> None:
    _, port, _ = serve(proxy, NetworkPolicy("allowlist", ["allowed.test"]))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{port}"}))
    with opener.open(f"http://allowed.test:{http_port}/x", timeout=5) as response:
        assert response.read() == b"hello from upstream"
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(f"http://other.test:{http_port}/x", timeout=5)
    assert refused.value.code == 403
    assert refused.value.headers["Content-Type"].startswith("text/plain")
    text = refused.value.read().decode()
    assert "refused other.test: not on the allowed list" in text and "--allow-domain other.test" in text
    assert len(_Upstream.seen) == 1


def test_unlisted_domain_is_refused_and_recorded(pinned: None, proxy: FilteringProxy, echo_port: int) -> None:
    policy = NetworkPolicy("allowlist", ["allowed.test"])
    _, port, _ = serve(proxy, policy)
    status, body = connect_status(port, f"other.test:{echo_port}")
    assert status == 403
    assert body.strip() == (
        "free-llm-agent: the sandbox's network proxy refused other.test: not on the allowed list. Allow it with "
        "--allow-domain other.test, or add it to execution.allowed_domains in limits.yaml.")
    assert policy.refusals() == [Refusal.of("other.test", "not on the allowed list", allowable=True)]
    assert policy.refusals()[0].message == body.strip()  # the reason names the domain (the executor's note)
    assert [r.domain for r in policy.take_refusals()] == ["other.test"]
    assert policy.refusals() == [] and policy.take_refusals() == []


@pytest.mark.parametrize("answer", ["thread", "once", "no"])
def test_ask(answer: str, pinned: None, proxy: FilteringProxy, echo_port: int) -> None:
    asked: list[str] = []

    def ask(domain: str) -> Any:
        asked.append(domain)
        return answer

    policy = NetworkPolicy("allowlist", [], ask=ask)
    _, port, _ = serve(proxy, policy)
    for _ in range(2):
        status, _ = connect_status(port, f"asked.test:{echo_port}")
        assert status == (403 if answer == "no" else 200)
    assert asked == (["asked.test", "asked.test"] if answer == "once" else ["asked.test"])
    assert policy.allowed == (["asked.test"] if answer == "thread" else [])
    if answer == "no":
        assert [r.reason.partition(". ")[0] for r in policy.refusals()] == [
            "refused asked.test: refused at the prompt", "refused asked.test: refused at the prompt earlier"]


def test_open_mode_lets_an_unlisted_domain_through(pinned: None, proxy: FilteringProxy, echo_port: int) -> None:
    _, port, _ = serve(proxy, NetworkPolicy("open"))
    with tunnel(port, f"other.test:{echo_port}") as sock:
        sock.sendall(b"open")
        assert sock.recv(4) == b"open"


@pytest.mark.parametrize(("host", "reason"), [
    ("internal.example", "a private network (RFC 1918) address"),
    ("cgnat.test", "a carrier-grade NAT (RFC 6598) address"),
    ("metadata.test", "a link-local / cloud metadata address"),
    ("ula.test", "an IPv6 unique local (fc00::/7) address"),
    ("mapped.test", "a private network (RFC 1918) address"),
    ("public.test", "non-loopback ($FREE_AGENT_TEST_RESOLVE test mode)"),  # the guard rail: never connected
    ("10.0.0.5", "a private network (RFC 1918) address"),
    ("169.254.169.254", "a link-local / cloud metadata address"),
    ("[::1]", "a loopback address"),
    ("127.0.0.1", "a loopback address"),  # a literal is never "pinned"
    ("localhost", "an internal host name"),
    ("api.localhost", "an internal host name"),
    ("metadata.google.internal", "an internal host name"),
])
def test_forbidden_addresses_are_never_connected(host: str, reason: str, pinned: None) -> None:
    connector = Recorder()
    proxy = FilteringProxy(connect=connector)
    policy = NetworkPolicy("open")
    try:
        _, port, _ = serve(proxy, policy)
        status, body = connect_status(port, f"{host}:443")
    finally:
        proxy.close()
    assert status == 403 and reason in body, body
    assert connector.calls == []
    assert not policy.refusals()[0].allowable


def test_address_refusal_text(pinned: None, proxy: FilteringProxy) -> None:
    _, port, _ = serve(proxy, NetworkPolicy("allowlist", ["internal.example"]))
    assert connect_status(port, "internal.example:443") == (403, (
        "free-llm-agent: the sandbox's network proxy refused internal.example (10.0.0.5): a private network "
        "(RFC 1918) address is never reachable from the sandbox.\n"))


def test_real_dns_path_checks_every_address(monkeypatch: pytest.MonkeyPatch, echo_port: int) -> None:
    monkeypatch.delenv(TEST_RESOLVE_ENV, raising=False)
    answers = {"loop.example": ["127.0.0.1", "::1"], "mixed.example": ["10.1.2.3", "93.184.216.34"]}
    resolved: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return answers[host]

    connector = Recorder(echo_port)  # "connects" public addresses to the loopback echo server
    proxy = FilteringProxy(resolve=resolve, connect=connector)
    try:
        _, port, _ = serve(proxy, NetworkPolicy("allowlist", ["loop.example", "mixed.example"]))
        status, body = connect_status(port, "loop.example:443")
        assert status == 403 and "refused loop.example (127.0.0.1): a loopback address" in body
        assert connector.calls == []
        with tunnel(port, "mixed.example:443") as sock:
            sock.sendall(b"rebind?")
            assert sock.recv(7) == b"rebind?"
        assert connector.calls == [("93.184.216.34", 443)]  # by IP: the checked address, not the name
        assert connect_status(port, "unlisted.example:443")[0] == 403
        assert resolved == ["loop.example", "mixed.example"]  # a refused name is not even resolved
    finally:
        proxy.close()


def test_resolution_and_connect_failures(pinned: None, proxy: FilteringProxy) -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed_port = spare.getsockname()[1]  # nobody listens there once it is closed
    _, port, _ = serve(proxy, NetworkPolicy("open"))
    status, body = connect_status(port, "unpinned.test:443")
    assert status == 502 and "could not resolve unpinned.test" in body
    status, _, body = exchange(port, f"GET http://allowed.test:{closed_port}/ HTTP/1.1\r\n\r\n".encode())
    assert status == 502 and "could not connect to allowed.test" in body
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # a tunnel connects after the 200
        sock.sendall(f"CONNECT allowed.test:{closed_port} HTTP/1.1\r\n\r\n".encode())
        assert read_head(sock).startswith(b"HTTP/1.1 200 ")
        sock.sendall(client_hello("allowed.test"))
        assert closed(sock)


@pytest.mark.parametrize("request_bytes", [
    b"GET /relative HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
    b"garbage\r\n\r\n",
    b"GET https://allowed.test/ HTTP/1.1\r\n\r\n",
    b"CONNECT allowed.test HTTP/1.1\r\n\r\n",
    b"CONNECT allowed.test:99999 HTTP/1.1\r\n\r\n",
    b"GET http://allowed.test/ HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET http://allowed.test/ HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    b"GET http://allowed.test/ HTTP/1.1\r\nX-A: 1\rHost: other.test\r\n\r\n",  # bare CR
    b"GET http://allowed.test/ HTTP/1.1\r\nX-A: 1\x00\r\n\r\n",  # NUL
    b"POST http://allowed.test/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST http://allowed.test/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
])
def test_malformed_requests_get_400(request_bytes: bytes, pinned: None, proxy: FilteringProxy) -> None:
    _, port, _ = serve(proxy, NetworkPolicy("open"))
    status, head, _ = exchange(port, request_bytes)
    assert status == 400 and "Content-Type: text/plain" in head


def test_close_stops_accepting_and_closes_tunnels(pinned: None, proxy: FilteringProxy, echo_port: int) -> None:
    handle, port, listener = serve(proxy, NetworkPolicy("allowlist", ["allowed.test"]))
    other, other_port, _ = serve(proxy, NetworkPolicy("allowlist", ["allowed.test"]))
    with tunnel(port, f"allowed.test:{echo_port}") as sock, tunnel(other_port, f"allowed.test:{echo_port}") as kept:
        handle.close()
        assert handle.closed and listener.fileno() == -1
        with contextlib.suppress(ConnectionResetError):  # closed: EOF or reset, never data
            assert sock.recv(10) == b""
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        kept.sendall(b"still")  # the other listener is untouched
        assert kept.recv(5) == b"still"
    handle.close()  # twice is fine
    other.close()


def test_a_silent_client_does_not_wedge_others(pinned: None, echo_port: int) -> None:
    proxy = FilteringProxy(header_timeout=0.2)
    try:
        _, port, _ = serve(proxy, NetworkPolicy("open"))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
            silent.sendall(b"CONNECT allowed.test:1 HTTP/1.1\r\n")  # ... and never the end of the header
            with tunnel(port, f"allowed.test:{echo_port}") as sock:
                sock.sendall(b"fine")
                assert sock.recv(4) == b"fine"
            assert read_head(silent).startswith(b"HTTP/1.1 408 ")
    finally:
        proxy.close()


def test_connections_per_listener_are_capped(pinned: None, proxy: FilteringProxy,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netproxy, "MAX_CONNECTIONS", 1)
    _, port, _ = serve(proxy, NetworkPolicy("open"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as first:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as second:
            assert second.recv(10) == b""  # closed at once: the first one holds the only slot
        first.sendall(b"garbage\r\n\r\n")
        assert read_head(first).startswith(b"HTTP/1.1 400 ")


def test_policy_matching() -> None:
    policy = NetworkPolicy("allowlist", ["Example.COM.", "*.files.example.org", ".cdn.example.net", "bücher.de"])
    assert policy.allowed == ["*.cdn.example.net", "*.files.example.org", "example.com", "xn--bcher-kva.de"]
    decide = policy._decision
    assert decide("example.com") == "allow" and decide("www.example.com") != "allow"
    assert decide("a.files.example.org") == "allow" and decide("x.y.files.example.org") == "allow"
    assert decide("files.example.org") != "allow" and decide("evilfiles.example.org") != "allow"
    assert decide("img.cdn.example.net") == "allow" and decide("xn--bcher-kva.de") == "allow"
    policy.allow("files.example.org")
    assert decide("files.example.org") == "allow"
    for bad in ("", "*.", "exa mple.com", "a/b", "*.10.0.0.1"):
        with pytest.raises(ValueError):
            policy.allow(bad)
    with pytest.raises(ValueError):
        NetworkPolicy("closed")  # type: ignore[arg-type]
    policy._declined.add("no.example")
    policy._record(Refusal.of("no.example", "refused at the prompt"))
    policy.configure("open", ["*.other.example"], ask=None)  # a pooled sandbox serving another thread
    assert (policy.mode, policy.allowed) == ("open", ["*.other.example"])
    assert policy.refusals() == [] and policy._declined == set()
    NetworkPolicy("allowlist", DEFAULT_ALLOWED_DOMAINS)
    assert "pypi.org" in DEFAULT_ALLOWED_DOMAINS and "files.pythonhosted.org" in DEFAULT_ALLOWED_DOMAINS


@pytest.mark.parametrize(("ip", "reason"), [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("10.1.2.3", "private network (RFC 1918)"), ("172.16.0.1", "private network (RFC 1918)"),
    ("172.31.255.255", "private network (RFC 1918)"), ("192.168.1.1", "private network (RFC 1918)"),
    ("100.64.0.1", "carrier-grade NAT (RFC 6598)"), ("169.254.169.254", "link-local / cloud metadata"),
    ("fe80::1", "link-local / cloud metadata"), ("fe80::1%eth0", "link-local / cloud metadata"),
    ("fd12:3456::1", "IPv6 unique local (fc00::/7)"), ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("255.255.255.255", "broadcast"), ("240.0.0.1", "reserved"), ("192.0.0.8", "IETF protocol assignments"),
    ("198.18.0.1", "benchmarking"), ("192.0.2.1", "documentation"), ("2001:db8::1", "documentation"),
    ("::ffff:10.0.0.1", "private network (RFC 1918)"), ("::ffff:127.0.0.1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local / cloud metadata"), ("2002:c0a8:0101::1", "private network (RFC 1918)"),
    ("not-an-ip", "unparsable"),
    ("93.184.216.34", None), ("8.8.8.8", None), ("172.32.0.1", None), ("2606:4700::1111", None),
    ("::ffff:8.8.8.8", None), ("64:ff9b::808:808", None), ("2002:0808:0808::1", "6to4"),
    ("168.63.129.16", "cloud metadata"), ("::ffff:168.63.129.16", "cloud metadata"),  # Azure WireServer
    ("168.63.129.17", None),
    ("::a9fe:a9fe", "link-local / cloud metadata"), ("::10.0.0.1", "private network (RFC 1918)"),  # IPv4-compatible
    ("::127.0.0.1", "loopback"), ("::0.0.0.2", "unspecified"), ("::8.8.8.8", None),
    ("::ffff:0:a9fe:a9fe", "link-local / cloud metadata"), ("::ffff:0:7f00:1", "loopback"),  # IPv4-translated
    ("::ffff:0:10.0.0.1", "private network (RFC 1918)"), ("::ffff:0:8.8.8.8", None),
])
def test_forbidden_address(ip: str, reason: str | None) -> None:
    assert forbidden_address(ip) == reason


@pytest.mark.parametrize(("text", "domains"), [
    ("Download https://data.example.com/x.csv and summarise it", ["data.example.com"]),
    ("compare example.com with www.python.org.", ["example.com", "www.python.org"]),
    ("Write report.md from notes.md, run.py, data.csv, script.sh, main.rs, a.pl, logo.ai", []),
    ("see http://Docs.Example.COM:8080/a, then docs.example.com and HTTPS://docs.example.com/b",
     ["docs.example.com"]),
    ("fetch http://10.0.0.5/x and 192.168.1.1 and https://[::1]/", []),
    ("mail bob@example.com; call df.info() and self.name; github.com/org/repo", ["github.com"]),
    ("the model at https://x.ai/api, ftp://ftp.gnu.org/gnu/ and bücher.de", ["x.ai", "ftp.gnu.org"]),
    ("(see https://example.org/a.), s3://bucket.name/k and file:///srv/site.com/x", ["example.org"]),
    ("pandas.DataFrame, numpy.random, version 3.11, node.js and e.g. i.e. stay out", []),
])
def test_domains_in(text: str, domains: list[str]) -> None:
    assert domains_in(text) == domains


def closed(sock: socket.socket) -> bool:
    """True when the proxy closed ``sock`` without sending anything (EOF, or a reset)."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize(("request_line", "port_text"), [
    ("CONNECT registry.npmjs.org:22 HTTP/1.1", "port 22 is not allowed"),
    ("CONNECT registry.npmjs.org:80 HTTP/1.1", "port 80 is not allowed"),
    ("GET http://registry.npmjs.org:8080/ HTTP/1.1", "port 8080 is not allowed"),
    ("GET http://registry.npmjs.org:443/ HTTP/1.1", "port 443 is not allowed"),
    ("CONNECT internal.example:22 HTTP/1.1", "a private network (RFC 1918) address"),  # pinned, not to loopback
    ("CONNECT 127.0.0.1:8080 HTTP/1.1", "port 8080 is not allowed"),  # a literal is never "pinned"
])
def test_only_ports_443_and_80(request_line: str, port_text: str, pinned: None) -> None:
    connector = Recorder()
    proxy = FilteringProxy(connect=connector)
    policy = NetworkPolicy("open")
    try:
        _, port, _ = serve(proxy, policy)
        status, _, body = exchange(port, f"{request_line}\r\n\r\n".encode())
        # 443 and 80 pass the port check (then registry.npmjs.org is not pinned: it does not resolve)
        assert connect_status(port, "registry.npmjs.org:443")[0] == 502
        assert exchange(port, b"GET http://registry.npmjs.org/ HTTP/1.1\r\n\r\n")[0] == 502
    finally:
        proxy.close()
    assert status == 403, body
    assert port_text in body
    assert "port" not in port_text or "only port 443 (https, CONNECT) and port 80 (plain http) are" in body
    assert connector.calls == [] and not policy.refusals()[0].allowable


def test_port_rule_outside_test_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEST_RESOLVE_ENV, raising=False)
    resolved: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    proxy = FilteringProxy(resolve=resolve, connect=Recorder())
    try:
        _, port, _ = serve(proxy, NetworkPolicy("open"))
        status, body = connect_status(port, "loop.example:8443")
    finally:
        proxy.close()
    assert status == 403 and "port 8443 is not allowed" in body and resolved == []


def test_sni_matching_the_connect_host_passes(pinned: None, echo_port: int) -> None:
    connector = Recorder(echo_port)
    proxy = FilteringProxy(connect=connector)
    policy = NetworkPolicy("allowlist", ["allowed.test"])
    try:
        _, port, _ = serve(proxy, policy)
        with tunnel(port, "allowed.test:443", sni="Allowed.Test.") as sock:  # the echo upstream got the hello
            sock.sendall(b"after")
            assert sock.recv(5) == b"after"
    finally:
        proxy.close()
    assert connector.calls == [("127.0.0.1", 443)] and policy.refusals() == []


@pytest.mark.parametrize(("first", "why"), [
    (client_hello("evil.example"), "the TLS handshake named evil.example (domain fronting)"),
    (client_hello("allowed.test.evil.example"), "the TLS handshake named allowed.test.evil.example (domain fronting)"),
    (client_hello(None), "the TLS handshake named no server (no SNI)"),
    (b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", "the tunnel did not start with a TLS ClientHello"),
    (b"\x16\x03\x01\x40\x01" + b"\x01" * 100, "the tunnel did not start with a TLS ClientHello"),  # over 16 KiB
    (b"SSH-2.0-OpenSSH_9.6\r\n", "the tunnel did not start with a TLS ClientHello"),
])
def test_tunnel_refused_before_connecting(first: bytes, why: str, pinned: None, echo_port: int) -> None:
    connector = Recorder(echo_port)
    proxy = FilteringProxy(connect=connector)
    policy = NetworkPolicy("allowlist", ["allowed.test"])
    try:
        _, port, _ = serve(proxy, policy)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"CONNECT allowed.test:443 HTTP/1.1\r\n\r\n")
            assert read_head(sock).startswith(b"HTTP/1.1 200 ")
            sock.sendall(first)
            assert closed(sock)
    finally:
        proxy.close()
    assert connector.calls == []  # the upstream never saw a connection
    assert [r.reason for r in policy.refusals()] == [f"refused allowed.test: {why}."]
    assert not policy.refusals()[0].allowable


def test_ip_literal_tunnel_may_omit_sni(monkeypatch: pytest.MonkeyPatch, echo_port: int) -> None:
    monkeypatch.delenv(TEST_RESOLVE_ENV, raising=False)
    connector = Recorder(echo_port)
    proxy = FilteringProxy(connect=connector)
    policy = NetworkPolicy("allowlist", ["93.184.216.34"])
    try:
        _, port, _ = serve(proxy, policy)
        tunnel(port, "93.184.216.34:443", sni=None).close()  # TLS clients send no SNI for an IP literal
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"CONNECT 93.184.216.34:443 HTTP/1.1\r\n\r\n")
            assert read_head(sock).startswith(b"HTTP/1.1 200 ")
            sock.sendall(client_hello("evil.example"))  # but a name is still checked
            assert closed(sock)
    finally:
        proxy.close()
    assert connector.calls == [("93.184.216.34", 443)]
    assert [r.reason for r in policy.refusals()] == [
        "refused 93.184.216.34: the TLS handshake named evil.example (domain fronting)."]


@pytest.mark.parametrize("raw_server", [_first_bytes], indirect=True)
def test_real_tls_client_passes_the_sni_check(pinned: None, proxy: FilteringProxy,
                                              raw_server: tuple[int, queue.Queue[bytes]]) -> None:
    upstream_port, got = raw_server
    policy = NetworkPolicy("allowlist", ["allowed.test"])
    _, port, _ = serve(proxy, policy)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"CONNECT allowed.test:{upstream_port} HTTP/1.1\r\n\r\n".encode())
        assert read_head(sock).startswith(b"HTTP/1.1 200 ")
        with pytest.raises(OSError):  # the upstream speaks no TLS: it takes the first bytes and closes
            context.wrap_socket(sock, server_hostname="allowed.test")
    received = got.get(timeout=5)
    assert received[:1] == b"\x16" and policy.refusals() == []
    if len(received) >= 5 + int.from_bytes(received[3:5], "big"):  # the whole record came in one piece
        assert client_hello_sni(received) == "allowed.test"


@pytest.mark.parametrize("raw_server", [_one_answer], indirect=True)
def test_pipelined_request_is_not_forwarded(pinned: None, proxy: FilteringProxy,
                                            raw_server: tuple[int, queue.Queue[bytes]]) -> None:
    upstream_port, got = raw_server
    _, port, _ = serve(proxy, NetworkPolicy("allowlist", ["allowed.test", "other.test"]))
    status, _, body = exchange(port, (
        f"POST http://allowed.test:{upstream_port}/up HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        f"GET http://other.test:{upstream_port}/second HTTP/1.1\r\nHost: other.test\r\n\r\n"
        "GET /third HTTP/1.1\r\nHost: other.test\r\n\r\n").encode())
    assert (status, body) == (200, "ok")
    received = got.get(timeout=5)
    assert received.startswith(b"POST /up HTTP/1.1\r\n") and received.endswith(b"\r\n\r\nhello")
    assert b"other.test" not in received and received.count(b"HTTP/1.1") == 1
    exchange(port, (f"POST http://allowed.test:{upstream_port}/up HTTP/1.1\r\nConnection: Content-Length\r\n"
                    "Content-Length: 5\r\n\r\nhello").encode())
    assert b"\r\nContent-Length: 5\r\n" in got.get(timeout=5)  # a hop-by-hop claim does not strip it


def test_bare_lf_header_smuggling_gets_400(pinned: None, proxy: FilteringProxy, http_port: int) -> None:
    _, port, _ = serve(proxy, NetworkPolicy("allowlist", ["allowed.test"]))
    status, _, _ = exchange(port, (
        f"GET http://allowed.test:{http_port}/ HTTP/1.1\r\nX-A: 1\nHost: other.test\r\n\r\n").encode())
    assert status == 400 and _Upstream.seen == []


def test_chunked_request_bodies_are_refused(pinned: None, proxy: FilteringProxy, http_port: int) -> None:
    _, port, _ = serve(proxy, NetworkPolicy("allowlist", ["allowed.test"]))
    status, _, body = exchange(port, (
        f"POST http://allowed.test:{http_port}/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\n\r\n").encode())
    assert status == 400 and "chunked request bodies are not supported by the proxy; use https" in body
    assert _Upstream.seen == []


def test_a_late_answer_does_not_land_in_a_reconfigured_policy(pinned: None, proxy: FilteringProxy,
                                                               echo_port: int) -> None:
    asked, release = threading.Event(), threading.Event()

    def ask(domain: str) -> str:
        asked.set()
        assert release.wait(10)
        return "thread"

    policy = NetworkPolicy("allowlist", [], ask=ask)
    _, port, _ = serve(proxy, policy)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"CONNECT asked.test:{echo_port} HTTP/1.1\r\n\r\n".encode())
        assert asked.wait(5)
        policy.configure("allowlist", ["allowed.test"])  # the sandbox goes to another thread meanwhile
        release.set()  # ... and only then is the question answered "thread"
        with policy._ask_lock:  # held from before ask() until the answer is dealt with
            pass
        status, _, body = exchange_rest(sock)
    assert policy.allowed == ["allowed.test"]
    assert status == 403 and "while the question was pending" in body  # the waiting connection was refused
    assert policy.refusals() == [] and policy._pending == {}


def exchange_rest(sock: socket.socket) -> tuple[int, str, str]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), head, body
