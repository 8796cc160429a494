"""The sandbox's filtering HTTP(S) proxy: the only way out of the sandbox's empty network namespace.

A helper in the sandbox listens on 127.0.0.1:3128 (its netns) and hands the socket out; :meth:`FilteringProxy.serve`
accepts on it in one asyncio loop (a daemon thread of the agent). ``CONNECT host:port`` opens a tunnel;
``GET http://host[:port]/path`` is forwarded in origin form, without ``Proxy-*`` / hop-by-hop headers, with
``Connection: close``; anything else is a 400. Any port is allowed: the domain and the address are what is checked.
:class:`NetworkPolicy` decides the domain; then the name is resolved HERE, every address is checked with
:func:`forbidden_address` and only an address that passed is connected, by IP (DNS rebinding cannot swap it).
Names that only mean this machine or its LAN (single labels, localhost, *.localhost, *.local, *.internal such as
metadata.google.internal, *.localdomain, *.home.arpa) are refused unresolved, whatever the policy. A refusal is a
``403`` whose text says why and how to allow the domain.

Testing hook: ``FREE_AGENT_TEST_RESOLVE`` = JSON ``{"host": "ip", ...}``. When set (read at each connection), names
resolve only through this map (no DNS query, even with an injected resolver; an unknown name fails to resolve), a
loopback address pinned by the map is reachable, and nothing but loopback is ever connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

Mode = Literal["allowlist", "open"]
Answer = Literal["once", "thread", "no"]
Ask = Callable[[str], str]  # answers "once" | "thread" | "no" (anything else counts as "no")
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Resolver = Callable[[str, int], Awaitable[list[str]]]
Connector = Callable[[str, int], Awaitable[Streams]]
T = TypeVar("T")

TEST_RESOLVE_ENV = "FREE_AGENT_TEST_RESOLVE"
HEADER_LIMIT = 64 * 1024
HEADER_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
MAX_PENDING_QUESTIONS = 8  # per policy: more unlisted domains waiting at once are refused unasked
MAX_CONNECTIONS = 256  # per listener: more are closed at once (the agent's file descriptors are not the sandbox's)
_PREFIX = "free-llm-agent: the sandbox's network proxy"
log = logging.getLogger(__name__)

#: Package indexes and their download hosts: pip/uv, npm/yarn, cargo, Go modules, Maven, RubyGems, CRAN, conda.
DEFAULT_ALLOWED_DOMAINS: tuple[str, ...] = (
    "pypi.org", "files.pythonhosted.org", "registry.npmjs.org", "registry.yarnpkg.com", "crates.io",
    "static.crates.io", "index.crates.io", "proxy.golang.org", "sum.golang.org", "repo.maven.apache.org",
    "repo1.maven.org", "rubygems.org", "index.rubygems.org", "cran.r-project.org", "cloud.r-project.org",
    "conda.anaconda.org", "repo.anaconda.com",
)
_RANGES = [(ipaddress.ip_network(net), reason) for reason, nets in (
    ("loopback", "127.0.0.0/8 ::1/128"), ("unspecified", "0.0.0.0/8 ::/128"),
    ("private network (RFC 1918)", "10.0.0.0/8 172.16.0.0/12 192.168.0.0/16"),
    ("carrier-grade NAT (RFC 6598)", "100.64.0.0/10"), ("link-local / cloud metadata", "169.254.0.0/16 fe80::/10"),
    ("IPv6 unique local (fc00::/7)", "fc00::/7"), ("IPv6 site-local", "fec0::/10"),
    ("multicast", "224.0.0.0/4 ff00::/8"), ("broadcast", "255.255.255.255/32"), ("reserved", "240.0.0.0/4"),
    ("IETF protocol assignments", "192.0.0.0/24"), ("local-use NAT64", "64:ff9b:1::/48"), ("6to4", "2002::/16"),
    ("benchmarking", "198.18.0.0/15 2001:2::/48"),
    ("documentation", "192.0.2.0/24 198.51.100.0/24 203.0.113.0/24 2001:db8::/32 3fff::/20"),
) for net in nets.split()]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
_HOST_RE = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(text)
    return None


def forbidden_address(ip: str) -> str | None:
    """The class of ``ip`` ("loopback", "private network (RFC 1918)", ...) if the sandbox may never reach it, else
    None. IPv4-mapped and NAT64 (64:ff9b::/96) addresses are judged by the IPv4 inside, 6to4 (2002::/16, obsolete)
    by it and then refused anyway; anything else not globally routable is "special-purpose"; an unparsable string
    is refused ("unparsable")."""
    addr = _ip(ip.strip().strip("[]").split("%", 1)[0])
    if addr is None:
        return "unparsable"
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return forbidden_address(str(addr.ipv4_mapped))
        inner = ipaddress.IPv4Address(addr.packed[-4:]) if addr in _NAT64 else addr.sixtofour
        if inner is not None and (reason := forbidden_address(str(inner))):
            return reason
    return next((reason for net, reason in _RANGES if addr in net), None if addr.is_global else "special-purpose")


def _normalize(host: str) -> str | None:
    """Lowercase, no trailing dot, IDNA A-labels, IP literals canonical; None if ``host`` is no valid host."""
    name = host.strip().rstrip(".").lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if (addr := _ip(name)) is not None:
        return str(addr)
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return name if len(name) <= 253 and _HOST_RE.fullmatch(name) else None


@dataclass(frozen=True)
class Refusal:
    """A refused connection. ``reason`` is the whole sentence for the user ("refused example.org: not on the allowed
    list. Allow it with --allow-domain example.org, ..."); ``address`` is set for an address refusal; ``allowable``:
    the domain policy refused it (not the address rules), so the user may allow it."""

    domain: str
    reason: str
    address: str | None = None
    allowable: bool = False

    @classmethod
    def of(cls, domain: str, why: str, address: str | None = None, allowable: bool = False) -> Refusal:
        where = f"{domain} ({address})" if address not in (None, domain) else domain
        hint = (f" Allow it with --allow-domain {domain}, or add it to execution.allowed_domains in limits.yaml."
                if allowable else "")
        return cls(domain, f"refused {where}: {why}.{hint}", address, allowable)

    @property
    def message(self) -> str:
        """The text of the 403 answer."""
        return f"{_PREFIX} {self.reason}"


class NetworkPolicy:
    """Which domains a sandbox may reach (thread-safe, mutable; served by one :class:`FilteringProxy` at a time).

    ``allowlist``: an entry ``example.com`` allows exactly ``example.com``; ``*.example.com`` (same as
    ``.example.com``) allows every subdomain but NOT ``example.com`` itself (list both for both). Matching is
    case-insensitive, ignores a trailing dot and compares IDNA A-labels; an IP literal must be listed as is.
    An unlisted domain is refused, or with ``ask`` asked about (in a daemon thread, so a prompt never holds the
    agent's exit; one question at a time; one question per domain however many connections wait for it):
    "thread" adds it, "once" lets the connections waiting for that answer through, "no" refuses it and it is not
    asked again. ``open``: every domain passes. The address rules (:func:`forbidden_address`) apply in both modes.
    """

    def __init__(self, mode: Mode = "allowlist", allowed: Iterable[str] = (), ask: Ask | None = None) -> None:
        self._lock, self._ask_lock = threading.Lock(), threading.Lock()
        self._pending: dict[str, asyncio.Future[Answer]] = {}
        self.configure(mode, allowed, ask)

    def configure(self, mode: Mode, allowed: Iterable[str] = (), ask: Ask | None = None) -> None:
        """Start over (a pooled sandbox serving another thread): this mode, list and prompt; no refusal recorded,
        no earlier "no" remembered."""
        if mode not in ("allowlist", "open"):
            raise ValueError(f"unknown network mode {mode!r}")
        entries = NetworkPolicy._entries_of(allowed)
        with self._lock:
            self.mode: Mode = mode
            self.ask = ask
            self._entries, self._declined, self._refusals = entries, set[str](), list[Refusal]()

    @property
    def allowed(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def allow(self, domain: str) -> None:
        """Add ``domain`` (or ``*.domain`` / ``.domain``) to the allowed set; ValueError if it is no host name."""
        entries = NetworkPolicy._entries_of([domain])
        with self._lock:
            self._entries |= entries
            self._declined -= entries

    @staticmethod
    def _entries_of(domains: Iterable[str]) -> set[str]:
        entries = set()
        for domain in domains:
            wild = domain.strip().startswith(("*.", "."))
            name = _normalize(domain.strip().lstrip("*").lstrip("."))
            if name is None or (wild and _ip(name) is not None):
                raise ValueError(f"not a domain: {domain!r}")
            entries.add(f"*.{name}" if wild else name)
        return entries

    def _listed(self, name: str) -> bool:
        labels = name.split(".")
        return name in self._entries or any("*." + ".".join(labels[i:]) in self._entries for i in range(1, len(labels)))

    def refusals(self) -> list[Refusal]:
        with self._lock:
            return list(self._refusals)

    def take_refusals(self) -> list[Refusal]:
        """The refusals recorded so far, cleared (the executor reports them after each task)."""
        with self._lock:
            taken, self._refusals = self._refusals, []
            return taken

    def _record(self, refusal: Refusal) -> None:
        with self._lock:
            if len(self._refusals) < 1000:
                self._refusals.append(refusal)

    def _decision(self, name: str) -> str:
        """``allow``, ``ask``, or the reason of a refusal."""
        with self._lock:
            if self.mode == "open" or self._listed(name):
                return "allow"
            if name in self._declined:
                return "refused at the prompt earlier"
            if self.ask is None:
                return "not on the allowed list"
            if name not in self._pending and len(self._pending) >= MAX_PENDING_QUESTIONS:
                return f"not on the allowed list (over {MAX_PENDING_QUESTIONS} questions were pending)"
            return "ask"

    def _question(self, name: str) -> asyncio.Future[Answer]:
        """The pending question about ``name``; asked now in a daemon thread if nobody asked it yet."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if (fut := self._pending.get(name)) is None:
                fut = self._pending[name] = loop.create_future()
                threading.Thread(target=self._ask_now, args=(name, fut, loop), name="netproxy-ask", daemon=True).start()
            return fut

    def _ask_now(self, name: str, fut: asyncio.Future[Answer], loop: asyncio.AbstractEventLoop) -> None:
        result: Answer | Exception = "no"
        try:
            with self._ask_lock:
                if self._decision(name) == "allow":
                    result = "once"
                elif name not in self._declined and self.ask is not None:
                    got = self.ask(name)
                    result = cast(Answer, got) if got in ("once", "thread", "no") else "no"
                with self._lock:
                    if result == "thread":
                        self._entries.add(name)
                    elif result == "no":
                        self._declined.add(name)
        except Exception as exc:  # a failed prompt refuses the waiting connections only
            result = exc

        def settle() -> None:
            with self._lock:
                self._pending.pop(name, None)
            if not fut.done():
                fut.set_exception(result) if isinstance(result, Exception) else fut.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle)


class _Reply(Exception):
    """``_Reply(status, text)``: answer the client with this instead of connecting."""


_STATUS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 502: "Bad Gateway", 504: "Gateway Timeout"}
_REQUEST_LINE = re.compile(r"([A-Za-z]+) (\S+) (HTTP/1\.[01])")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_AUTHORITY = re.compile(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]/@\s]+):(\d{1,5})")


def _parse(head: bytes) -> tuple[str, int, bytes | None]:
    """(host, port, request to forward or None for CONNECT) of a proxy request head; _Reply(400) if it is none."""
    lines = head.decode("latin-1").split("\r\n")[:-2]
    match = _REQUEST_LINE.fullmatch(lines[0]) if lines else None
    if match is None:
        raise _Reply(400, f"{_PREFIX} expects CONNECT host:port or an absolute http:// URI (HTTP/1.x).")
    method, target = match[1], match[2]
    parts = [line.partition(":") for line in lines[1:]]
    if any(not sep or not _TOKEN.fullmatch(name) for name, sep, _ in parts):
        raise _Reply(400, f"{_PREFIX} got a malformed header line.")
    headers = [(name, value.strip()) for name, _, value in parts]
    if method.upper() == "CONNECT":
        if (auth := _AUTHORITY.fullmatch(target)) is None:
            raise _Reply(400, f"{_PREFIX} expects CONNECT host:port.")
        return auth[1] or auth[3], int(auth[2] or auth[4]), None
    try:
        url = urlsplit(target)
        port = 80 if url.port is None else url.port
    except ValueError:
        url, port = urlsplit(""), 0
    if url.scheme.lower() != "http" or not url.hostname:
        raise _Reply(400, f"{_PREFIX} forwards absolute http:// URIs only (HTTPS goes through CONNECT).")
    hop = {"connection", "keep-alive", "upgrade", "te", "trailer", "host"}
    for name, value in headers:
        if name.lower() in ("connection", "proxy-connection"):
            hop.update(token.strip().lower() for token in value.split(","))
    out = [f"{method} {url.path or '/'}{'?' + url.query if url.query else ''} {match[3]}",
           f"Host: {url.netloc.rpartition('@')[2]}"]
    out += [f"{name}: {value}" for name, value in headers if name.lower() not in hop and name[:6].lower() != "proxy-"]
    return url.hostname, port, "\r\n".join([*out, "Connection: close", "", ""]).encode("latin-1")


async def _reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int, text: str) -> None:
    """Send a text/plain answer, then read what the client still sends (briefly), so closing sends no RST."""
    body = (text + "\n").encode()
    writer.write(f"HTTP/1.1 {status} {_STATUS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)

    async def finish() -> None:
        await writer.drain()
        writer.write_eof()
        for _ in range(64):
            if not await reader.read(65536):
                return

    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(finish(), 2.0)


def _test_pins() -> dict[str, str] | None:
    if not (raw := os.environ.get(TEST_RESOLVE_ENV)):
        return None
    with contextlib.suppress(ValueError):
        if isinstance(data := json.loads(raw), dict):
            return {name: str(_normalize(str(ip))) for key, ip in data.items() if (name := _normalize(str(key)))}
    return {}  # unreadable: test mode all the same, with nothing pinned


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _address_refusal(name: str, ip: str, pins: dict[str, str] | None) -> str | None:
    reason = forbidden_address(ip)
    if pins is not None:  # test mode: loopback only, and only where the map pins it
        if reason == "loopback" and pins.get(name) == ip:
            return None
        reason = reason or f"non-loopback (${TEST_RESOLVE_ENV} test mode)"
    article = "an" if reason and reason[0].lower() in "aeiou" else "a"
    return reason and f"{article} {reason} address is never reachable from the sandbox"


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
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._header_timeout)
                host, port, forward = _parse(head)
                up_reader, upstream = await self._open(handle.policy, host, port)
            except _Reply as reply:
                return await _reply(reader, writer, *reply.args)
            except TimeoutError:
                return await _reply(reader, writer, 408, f"{_PREFIX} got no complete request header in time.")
            except asyncio.LimitOverrunError:
                return await _reply(reader, writer, 400, f"{_PREFIX} refused a header block over 64 KiB.")
            except asyncio.IncompleteReadError:
                return  # the client left before the end of its header
            if forward is None:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.write(forward)
            await _relay(reader, writer, up_reader, upstream)
        except asyncio.CancelledError:
            pass  # handle.close()
        except Exception:
            log.exception("netproxy: connection failed")
        finally:
            writer.close()
            if upstream is not None:
                upstream.close()
            handle._tasks.discard(task)

    async def _open(self, policy: NetworkPolicy, host: str, port: int) -> Streams:
        """Check ``host`` (name, policy, then every address) and connect to an address that passed, by IP."""
        name = _normalize(host)
        if name is None or not 0 < port < 65536:
            raise _Reply(400, f"{_PREFIX} got an invalid host or port: {host}:{port}.")
        literal = _ip(name) is not None
        if not literal and ("." not in name or name.endswith(_INTERNAL_SUFFIXES)):  # this machine / its LAN
            raise self._refuse(policy, Refusal.of(name, "an internal host name is never reachable from the sandbox"))
        # A forbidden IP literal is refused below, without asking about it.
        if (not literal or forbidden_address(name) is None) and (why := await self._admit(policy, name)):
            raise self._refuse(policy, Refusal.of(name, why, allowable=True))
        pins = _test_pins()
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
            raise _Reply(502, f"{_PREFIX} could not resolve {name}: {exc or 'timed out'}.") from None
        passed: list[str] = []
        refusals: list[Refusal] = []
        for ip in addrs:  # connect only to a checked address (an IPv4-mapped one as the IPv4 it is)
            if why := _address_refusal(name, ip, pins):
                refusals.append(Refusal.of(name, why, address=ip))
            elif (addr := _ip(ip)) is not None:
                passed.append(str(addr.ipv4_mapped or addr) if isinstance(addr, ipaddress.IPv6Address) else str(addr))
        if not passed:
            raise self._refuse(policy, refusals[0] if refusals else Refusal.of(name, "it resolved to no address"))
        status, error = 502, ""
        for ip in passed:
            try:
                return await asyncio.wait_for(self._connect(ip, port), self._connect_timeout)
            except TimeoutError:
                status, error = 504, f"{ip} port {port}: timed out after {self._connect_timeout:g} s"
            except OSError as exc:
                status, error = 502, f"{ip} port {port}: {exc.strerror or exc}"
        raise _Reply(status, f"{_PREFIX} could not connect to {name} ({error}).")

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


# A bare host name counts in domains_in only with one of these last labels: common gTLDs / ccTLDs that are not also
# common file extensions or attribute names. Left out on purpose: md py sh rs pl pm so ps cc ai ml mk am ac in id
# tf zip mov is app name info (report.md, run.py, logo.ai, configure.ac, requirements.in, main.tf, self.name...).
# Written as a URL (https://x.ai/) any such domain counts.
_TLDS = frozenset(re.findall(r"\w+", """com net org edu gov mil int io dev co me tv xyz site online tech cloud blog
    news shop wiki biz uk de fr es it nl be ch at se no dk fi ie pt cz sk hu ro bg gr ru ua tr il jp cn kr tw hk sg au
    nz ca us mx br ar cl za eu lt lv ee si hr"""))
_URL = re.compile(r"\b(?:https?|ftps?|wss?|sftp|ssh|git(?:\+https?|\+ssh)?)://[^\s<>\"'`]+", re.IGNORECASE)
_BARE = re.compile(r"(?<![\w.@/\\-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,24}))(?![\w(-]|\.\w)",
                   re.IGNORECASE)


def domains_in(text: str) -> list[str]:
    """The domains written in ``text``: hosts of http(s)/ftp/ws/ssh/git URLs (any host name with a dot) and bare
    ASCII names ending in a common TLD (``_TLDS``); no IP addresses. Lowercased, deduplicated, in order of appearance.
    """
    found: list[tuple[int, str]] = []
    for url in _URL.finditer(text):
        with contextlib.suppress(ValueError):
            host = _normalize((urlsplit(url[0]).hostname or "").rstrip(".,;:!?)]}'"))
            if host and "." in host and _ip(host) is None:
                found.append((url.start(), host))
    for bare in _BARE.finditer(_URL.sub(lambda m: " " * len(m[0]), text)):
        if bare[2].lower() in _TLDS:
            found.append((bare.start(), bare[1].lower()))
    return list(dict.fromkeys(host for _, host in sorted(found)))
