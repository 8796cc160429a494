"""The sandbox's filtering HTTP(S) proxy: the only way out of the sandbox's empty network namespace.

A helper in the sandbox listens on 127.0.0.1:3128 (its netns) and hands the socket out; :meth:`FilteringProxy.serve`
accepts on it in one asyncio loop (a daemon thread of the agent). Two requests are served, anything else is a 400:

* ``CONNECT host:443``: a TLS tunnel. After ``200 Connection established`` the proxy reads the client's first TLS
  record (at most 16 KiB + 5 bytes, within the header timeout) BEFORE connecting upstream: it must be a ClientHello
  whose server_name (SNI) is the CONNECT host (case-insensitive, trailing dot ignored; a CONNECT to an IP literal may
  send no SNI, as TLS clients do). Anything else (not TLS, no SNI, another name: domain fronting) closes the tunnel
  unconnected and is recorded as a refusal. So TLS Encrypted Client Hello (ECH), whose outer SNI is a provider's
  public name, is refused too. What the encrypted HTTP inside says (its Host header) stays unseen.
* ``GET http://host/path`` (any method, absolute http URI): forwarded in origin form, without ``Proxy-*`` /
  hop-by-hop headers, with ``Connection: close``: the head and exactly ``Content-Length`` bytes of body, then only the
  answer is relayed, so a pipelined second request never reaches the upstream. A header line with a bare CR, LF or
  NUL is a 400, and so is ``Transfer-Encoding`` (no chunked request bodies; use https).

Ports: CONNECT only to 443, plain http only to 80 (a 403 naming the port otherwise). :class:`NetworkPolicy` decides
the domain; then the name is resolved HERE, every address is checked with :func:`forbidden_address` and only an
address that passed is connected, by IP (DNS rebinding cannot swap it). Names that only mean this machine or its LAN
(single labels, localhost, *.localhost, *.local, *.internal such as metadata.google.internal, *.localdomain,
*.home.arpa) are refused unresolved, whatever the policy. A refusal is a ``403`` whose text says why and how to allow
the domain.

Testing hook: ``FREE_AGENT_TEST_RESOLVE`` = JSON ``{"host": "ip", ...}``. When set (read at each connection), names
resolve only through this map (no DNS query, even with an injected resolver; an unknown name fails to resolve), a
loopback address pinned by the map is reachable, and nothing but loopback is ever connected. A name the map pins to
a loopback address (and only such a name: never an IP literal, never outside test mode) may also use any port, for
the tests' loopback servers on random ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

from free_llm_agent.tools.netpolicy import (
    DEFAULT_ALLOWED_DOMAINS,
    INTERNAL_SUFFIXES,
    PREFIX,
    TEST_RESOLVE_ENV,
    NetworkPolicy,
    Refusal,
    StaleQuestion,
    address_refusal,
    domains_in,
    embedded_ipv4,
    forbidden_address,
    ip_of,
    normalize_host,
    port_refusal,
    sni_refusal,
    test_pins,
)

__all__ = ["DEFAULT_ALLOWED_DOMAINS", "TEST_RESOLVE_ENV", "FilteringProxy", "NetworkPolicy", "Refusal", "ServeHandle",
           "domains_in", "forbidden_address", "shared_proxy"]

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Resolver = Callable[[str, int], Awaitable[list[str]]]
Connector = Callable[[str, int], Awaitable[Streams]]
T = TypeVar("T")

HEADER_LIMIT = 64 * 1024
HEADER_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
TLS_RECORD_LIMIT = 16 * 1024  # the largest TLS plaintext record (RFC 8446 5.1); its 5-byte header comes on top
MAX_CONNECTIONS = 256  # per listener: more are closed at once (the agent's file descriptors are not the sandbox's)
log = logging.getLogger(__name__)


class _Reply(Exception):
    """``_Reply(status, text)``: answer the client with this instead of connecting."""


_STATUS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 502: "Bad Gateway", 504: "Gateway Timeout"}
_REQUEST_LINE = re.compile(r"([A-Za-z]+) (\S+) (HTTP/1\.[01])")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_AUTHORITY = re.compile(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]/@\s]+):(\d{1,5})")


def _parse(head: bytes) -> tuple[str, int, bytes | None, int]:
    """(host, port, request head to forward or None for CONNECT, body length) of a proxy request head; _Reply(400)
    if it is none."""
    lines = head.decode("latin-1").split("\r\n")[:-2]
    if any(char in line for line in lines for char in "\r\n\0"):
        raise _Reply(400, f"{PREFIX} refused a header line with a bare CR, LF or NUL.")
    match = _REQUEST_LINE.fullmatch(lines[0]) if lines else None
    if match is None:
        raise _Reply(400, f"{PREFIX} expects CONNECT host:port or an absolute http:// URI (HTTP/1.x).")
    method, target = match[1], match[2]
    parts = [line.partition(":") for line in lines[1:]]
    if any(not sep or not _TOKEN.fullmatch(name) for name, sep, _ in parts):
        raise _Reply(400, f"{PREFIX} got a malformed header line.")
    headers = [(name, value.strip()) for name, _, value in parts]
    if method.upper() == "CONNECT":
        if (auth := _AUTHORITY.fullmatch(target)) is None:
            raise _Reply(400, f"{PREFIX} expects CONNECT host:port.")
        return auth[1] or auth[3], int(auth[2] or auth[4]), None, 0
    if any(name.lower() == "transfer-encoding" for name, _ in headers):
        raise _Reply(400, f"{PREFIX}: chunked request bodies are not supported by the proxy; use https.")
    lengths = {value for name, value in headers if name.lower() == "content-length"}
    if len(lengths) > 1 or not all(re.fullmatch(r"[0-9]{1,15}", value) for value in lengths):
        raise _Reply(400, f"{PREFIX} got an invalid Content-Length.")
    try:
        url = urlsplit(target)
        port = 80 if url.port is None else url.port
    except ValueError:
        url, port = urlsplit(""), 0
    if url.scheme.lower() != "http" or not url.hostname:
        raise _Reply(400, f"{PREFIX} forwards absolute http:// URIs only (HTTPS goes through CONNECT).")
    hop = {"connection", "keep-alive", "upgrade", "te", "trailer", "host"}
    for name, value in headers:
        if name.lower() in ("connection", "proxy-connection"):
            hop.update(token.strip().lower() for token in value.split(","))
    hop.discard("content-length")  # "Connection: Content-Length" must not strip the length of the body it sends
    out = [f"{method} {url.path or '/'}{'?' + url.query if url.query else ''} {match[3]}",
           f"Host: {url.netloc.rpartition('@')[2]}"]
    out += [f"{name}: {value}" for name, value in headers if name.lower() not in hop and name[:6].lower() != "proxy-"]
    request = "\r\n".join([*out, "Connection: close", "", ""]).encode("latin-1")
    return url.hostname, port, request, int(lengths.pop()) if lengths else 0


async def _reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int, text: str) -> None:
    """Send a text/plain answer, then read what the client still sends (briefly), so closing sends no RST."""
    body = (text + "\n").encode()
    writer.write(f"HTTP/1.1 {status} {_STATUS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await _linger(reader, writer)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close towards the client, then read (and drop) what it still sends, briefly, so closing sends no RST."""
    async def finish() -> None:
        await writer.drain()
        writer.write_eof()
        for _ in range(64):
            if not await reader.read(65536):
                return

    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(finish(), 2.0)


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def _relay(r1: asyncio.StreamReader, w1: asyncio.StreamWriter, r2: asyncio.StreamReader,
                 w2: asyncio.StreamWriter) -> None:
    """Pipe both ways; an EOF is passed on as a half-close, an error closes both sides."""
    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                return dst.write_eof()
        w1.close()
        w2.close()

    await asyncio.gather(pipe(r1, w2), pipe(r2, w1))


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader,
                   upstream: asyncio.StreamWriter, request: bytes, length: int) -> None:
    """Send ``request`` and exactly ``length`` bytes of body upstream, relay the answer until the upstream closes.
    Nothing the client sends after the body (a pipelined request) is ever read for the upstream."""
    upstream.write(request)

    async def body() -> None:
        left = length
        while left and (data := await reader.read(min(left, 65536))):
            upstream.write(data)
            left -= len(data)
            await upstream.drain()
        if left:  # the client left in the middle of its body
            upstream.close()

    sender = asyncio.ensure_future(body())
    try:
        with contextlib.suppress(OSError):
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    upstream.close()
    await _linger(reader, writer)


class ServeHandle:
    """One listener being served: :meth:`close` stops accepting, closes the socket and its open connections."""

    def __init__(self, proxy: FilteringProxy, policy: NetworkPolicy) -> None:
        self.policy, self.closed, self._proxy = policy, False, proxy
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def close(self, timeout: float = 10.0) -> None:
        if not self.closed:
            self._proxy._call(self._aclose(), timeout)

    async def _aclose(self) -> None:
        self.closed = True
        if self._server is not None:
            self._server.close()
        for task in (tasks := list(self._tasks)):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class FilteringProxy:
    """The proxy's event loop (a daemon thread, started lazily) and the listeners it serves.

    ``resolve(host, port) -> [ip, ...]`` and ``connect(ip, port) -> (reader, writer)`` default to
    ``loop.getaddrinfo`` / ``asyncio.open_connection``; tests inject doubles. :meth:`serve` and
    :meth:`ServeHandle.close` may be called from any thread but the proxy's own.
    """

    def __init__(self, resolve: Resolver | None = None, connect: Connector | None = None, *,
                 header_timeout: float = HEADER_TIMEOUT_S, connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        self._resolve, self._connect = resolve or _getaddrinfo, connect or asyncio.open_connection
        self._header_timeout, self._connect_timeout = header_timeout, connect_timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._handles: list[ServeHandle] = []

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="netproxy", daemon=True)
                self._thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def serve(self, listener: socket.socket, policy: NetworkPolicy) -> ServeHandle:
        """Accept on ``listener`` (listening; from now on the proxy's, closed by the handle) under ``policy``."""
        handle = ServeHandle(self, policy)

        async def start() -> None:
            async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await self._client(handle, reader, writer)
            handle._server = await asyncio.start_server(on_client, sock=listener, limit=HEADER_LIMIT)

        self._call(start(), 10.0)
        with self._lock:
            self._handles = [*(h for h in self._handles if not h.closed), handle]
        return handle

    def close(self) -> None:
        """Close every listener and stop the loop (for tests: the agent's proxy just dies with the process)."""
        with self._lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.close()
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10.0)
            loop.close()

    async def _client(self, handle: ServeHandle, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if handle.closed or len(handle._tasks) >= MAX_CONNECTIONS or (task := asyncio.current_task()) is None:
            return writer.close()
        handle._tasks.add(task)
        streams: Streams | None = None  # the upstream's
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._header_timeout)
                host, port, forward, length = _parse(head)
                name, addrs = await self._check(handle.policy, host, port, tunnel=forward is None)
                if forward is not None:
                    streams = await self._dial(name, addrs, port)
            except _Reply as reply:
                return await _reply(reader, writer, *reply.args)
            except TimeoutError:
                return await _reply(reader, writer, 408, f"{PREFIX} got no complete request header in time.")
            except asyncio.LimitOverrunError:
                return await _reply(reader, writer, 400, f"{PREFIX} refused a header block over 64 KiB.")
            except asyncio.IncompleteReadError:
                return  # the client left before the end of its header
            if forward is not None and streams is not None:
                return await _forward(reader, writer, *streams, forward, length)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if (hello := await self._hello(handle.policy, name, reader)) is None:
                return
            try:
                streams = await self._dial(name, addrs, port)
            except _Reply as reply:  # too late for an answer: the tunnel just closes
                return log.info("netproxy: %s", reply.args[1])
            streams[1].write(hello)
            await _relay(reader, writer, *streams)
        except asyncio.CancelledError:
            pass  # handle.close()
        except Exception:
            log.exception("netproxy: connection failed")
        finally:
            writer.close()
            if streams is not None:
                streams[1].close()
            handle._tasks.discard(task)

    async def _check(self, policy: NetworkPolicy, host: str, port: int, tunnel: bool) -> tuple[str, list[str]]:
        """Check ``host`` (name, port, policy, then every address): (its normalized name, the addresses that
        passed); _Reply if it may not be reached."""
        name = normalize_host(host)
        if name is None or not 0 < port < 65536:
            raise _Reply(400, f"{PREFIX} got an invalid host or port: {host}:{port}.")
        pins = test_pins()
        if why := port_refusal(name, port, tunnel, pins):
            raise self._refuse(policy, Refusal.of(name, why))
        literal = ip_of(name) is not None
        if not literal and ("." not in name or name.endswith(INTERNAL_SUFFIXES)):  # this machine / its LAN
            raise self._refuse(policy, Refusal.of(name, "an internal host name is never reachable from the sandbox"))
        # A forbidden IP literal is refused below, without asking about it.
        if (not literal or forbidden_address(name) is None) and (why := await self._admit(policy, name)):
            raise self._refuse(policy, Refusal.of(name, why, allowable=True))
        try:
            if literal:
                addrs = [name]
            elif pins is not None:
                if name not in pins:
                    raise OSError(f"not pinned in ${TEST_RESOLVE_ENV}")
                addrs = [pins[name]]
            else:
                addrs = await asyncio.wait_for(self._resolve(name, port), self._connect_timeout)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise _Reply(502, f"{PREFIX} could not resolve {name}: {exc or 'timed out'}.") from None
        passed: list[str] = []
        refusals: list[Refusal] = []
        for ip in addrs:  # connect only to a checked address (one carrying an IPv4 address as that IPv4 address)
            if why := address_refusal(name, ip, pins):
                refusals.append(Refusal.of(name, why, address=ip))
            elif (addr := ip_of(ip)) is not None:
                passed.append(str(embedded_ipv4(addr) or addr))
        if not passed:
            raise self._refuse(policy, refusals[0] if refusals else Refusal.of(name, "it resolved to no address"))
        return name, passed

    async def _dial(self, name: str, passed: list[str], port: int) -> Streams:
        """Connect to the first of the checked addresses ``passed`` that answers, by IP."""
        status, error = 502, ""
        for ip in passed:
            try:
                return await asyncio.wait_for(self._connect(ip, port), self._connect_timeout)
            except TimeoutError:
                status, error = 504, f"{ip} port {port}: timed out after {self._connect_timeout:g} s"
            except OSError as exc:
                status, error = 502, f"{ip} port {port}: {exc.strerror or exc}"
        raise _Reply(status, f"{PREFIX} could not connect to {name} ({error}).")

    async def _hello(self, policy: NetworkPolicy, name: str, reader: asyncio.StreamReader) -> bytes | None:
        """The tunnel's first TLS record if it is a ClientHello naming ``name`` (SNI), else None (a refusal is
        recorded unless the client sent nothing at all)."""
        data = b""
        with contextlib.suppress(asyncio.IncompleteReadError, TimeoutError):
            data = await asyncio.wait_for(reader.readexactly(5), self._header_timeout)
            if data[0] == 0x16 and (size := int.from_bytes(data[3:5], "big")) <= TLS_RECORD_LIMIT:
                data += await asyncio.wait_for(reader.readexactly(size), self._header_timeout)
        if not data:
            return None
        if (why := sni_refusal(name, data)) is None:
            return data
        self._refuse(policy, Refusal.of(name, why))
        return None

    @staticmethod
    def _refuse(policy: NetworkPolicy, refusal: Refusal) -> _Reply:
        policy._record(refusal)
        return _Reply(403, refusal.message)

    @staticmethod
    async def _admit(policy: NetworkPolicy, name: str) -> str | None:
        """None if ``policy`` lets ``name`` through (asking if it must), else the reason."""
        if (decision := policy._decision(name)) != "ask":
            return None if decision == "allow" else decision
        try:
            answer = await asyncio.shield(policy._question(name))
        except StaleQuestion as exc:  # not the current thread's refusal: not recorded in its policy
            raise _Reply(403, f"{PREFIX} refused {name}: {exc}.") from None
        except Exception as exc:
            return f"not on the allowed list (the question failed: {exc})"
        return None if answer in ("once", "thread") else "refused at the prompt"


_shared: FilteringProxy | None = None
_shared_lock = threading.Lock()


def shared_proxy() -> FilteringProxy:
    """The process-wide proxy every sandbox's listener is served by."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FilteringProxy()
        return _shared
