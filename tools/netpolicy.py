"""What the sandbox may reach: the domain policy of a thread, and the addresses never reachable.

:class:`NetworkPolicy` decides a domain (an allowlist with wildcards, or open; an unlisted domain may be asked about
at the terminal); :func:`forbidden_address` names the class of an address no sandbox may reach (loopback, private,
CGNAT, link-local / cloud metadata such as 169.254.169.254 and Azure's WireServer 168.63.129.16, IPv6 unique-local,
...; an IPv6 address that carries an IPv4 one is judged by the IPv4 inside); :func:`port_refusal` keeps tunnels to
443 and plain http to 80; :func:`sni_refusal` checks that a tunnel's TLS ClientHello names (SNI) the CONNECT host
(:func:`client_hello_sni` reads it); :func:`domains_in` finds the domains a goal names. :mod:`tools.netproxy`
applies them to every connection.

A domain question (``ask``) belongs to the configuration it was asked under: :meth:`NetworkPolicy.configure` bumps a
generation counter and refuses the connections waiting for a pending question at once; an answer that arrives later
(from an older generation) is ignored, so a pooled sandbox's next thread never inherits the last thread's "thread".
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import urlsplit

Mode = Literal["allowlist", "open"]
Answer = Literal["once", "thread", "no"]
Ask = Callable[[str], str]  # answers "once" | "thread" | "no" (anything else counts as "no")
MAX_PENDING_QUESTIONS = 8  # per policy: more unlisted domains waiting at once are refused unasked
PREFIX = "free-llm-agent: the sandbox's network proxy"
TEST_RESOLVE_ENV = "FREE_AGENT_TEST_RESOLVE"
HTTPS_PORT, HTTP_PORT = 443, 80

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
    ("cloud metadata", "168.63.129.16/32"),  # Azure WireServer: a public address, reachable only from Azure VMs
    ("IPv6 unique local (fc00::/7)", "fc00::/7"), ("IPv6 site-local", "fec0::/10"),
    ("multicast", "224.0.0.0/4 ff00::/8"), ("broadcast", "255.255.255.255/32"), ("reserved", "240.0.0.0/4"),
    ("IETF protocol assignments", "192.0.0.0/24"), ("local-use NAT64", "64:ff9b:1::/48"), ("6to4", "2002::/16"),
    ("benchmarking", "198.18.0.0/15 2001:2::/48"),
    ("documentation", "192.0.2.0/24 198.51.100.0/24 203.0.113.0/24 2001:db8::/32 3fff::/20"),
) for net in nets.split()]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # IPv4-compatible ::a.b.c.d (deprecated), but :: and ::1 are their own
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # IPv4-translated ::ffff:0:a.b.c.d (SIIT, RFC 2765)
INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
_HOST_RE = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def ip_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(text)
    return None


def embedded_ipv4(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d) or IPv4-compatible
    (::a.b.c.d, not :: or ::1) address stands for: it is judged, and connected, as that IPv4 address."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _TRANSLATED or (addr in _COMPATIBLE and int(addr) > 1):
        return ipaddress.IPv4Address(addr.packed[-4:])
    return None


def forbidden_address(ip: str) -> str | None:
    """The class of ``ip`` ("loopback", "private network (RFC 1918)", ...) if the sandbox may never reach it, else
    None. IPv4-mapped, IPv4-translated, IPv4-compatible (:func:`embedded_ipv4`) and NAT64 (64:ff9b::/96) addresses
    are judged by the IPv4 inside, 6to4 (2002::/16, obsolete) by it and then refused anyway; anything else not
    globally routable is "special-purpose"; an unparsable string is refused ("unparsable")."""
    addr = ip_of(ip.strip().strip("[]").split("%", 1)[0])
    if addr is None:
        return "unparsable"
    if isinstance(addr, ipaddress.IPv6Address):
        if (v4 := embedded_ipv4(addr)) is not None:
            return forbidden_address(str(v4))
        inner = ipaddress.IPv4Address(addr.packed[-4:]) if addr in _NAT64 else addr.sixtofour
        if inner is not None and (reason := forbidden_address(str(inner))):
            return reason
    return next((reason for net, reason in _RANGES if addr in net), None if addr.is_global else "special-purpose")


def normalize_host(host: str) -> str | None:
    """Lowercase, no trailing dot, IDNA A-labels, IP literals canonical; None if ``host`` is no valid host."""
    name = host.strip().rstrip(".").lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if (addr := ip_of(name)) is not None:
        return str(addr)
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return name if len(name) <= 253 and _HOST_RE.fullmatch(name) else None


def client_hello_sni(record: bytes) -> str | None:
    """The server_name (SNI, RFC 6066) of the TLS ClientHello that starts ``record`` (a TLS record: 5-byte header,
    then the handshake), "" if it names none; None if ``record`` does not start with a ClientHello. Only what this
    one record holds is read; the name is decoded as latin-1 (the caller compares it with the host it expects)."""
    if len(record) < 9 or record[0] != 0x16 or record[1] != 3 or record[5] != 1:
        return None
    body = record[9:5 + int.from_bytes(record[3:5], "big")][:int.from_bytes(record[6:9], "big")]
    try:
        at = 2 + 32  # client_version, random
        at += 1 + body[at]  # legacy_session_id
        at += 2 + int.from_bytes(body[at:at + 2], "big")  # cipher_suites
        at += 1 + body[at]  # legacy_compression_methods
        end = min(len(body), at + 2 + int.from_bytes(body[at:at + 2], "big"))
    except IndexError:
        return None
    at += 2
    while at + 4 <= end:  # extensions: type (2), length (2), data
        kind, size = int.from_bytes(body[at:at + 2], "big"), int.from_bytes(body[at + 2:at + 4], "big")
        ext, at = body[at + 4:at + 4 + size], at + 4 + size
        if kind == 0:  # server_name: list length (2), then name_type (1, 0 = host_name), length (2), name
            if len(ext) < 5 or ext[2] != 0:
                return ""
            return ext[5:5 + int.from_bytes(ext[3:5], "big")].decode("latin-1")
    return ""


def sni_refusal(name: str, record: bytes) -> str | None:
    """Why a tunnel to ``name`` whose first TLS record is ``record`` is refused, None if it may go on: a ClientHello
    whose SNI is ``name`` (case-insensitive, trailing dot ignored), or no SNI when ``name`` is an IP literal."""
    sni = client_hello_sni(record)
    if sni is None:
        return "the tunnel did not start with a TLS ClientHello"
    if not sni:
        return None if ip_of(name) is not None else "the TLS handshake named no server (no SNI)"
    shown = normalize_host(sni) or ascii(sni[:255])
    return None if shown == name else f"the TLS handshake named {shown} (domain fronting)"


def test_pins() -> dict[str, str] | None:
    """The name -> address map of the ``FREE_AGENT_TEST_RESOLVE`` test hook (see :mod:`tools.netproxy`); None
    outside test mode."""
    if not (raw := os.environ.get(TEST_RESOLVE_ENV)):
        return None
    with contextlib.suppress(ValueError):
        if isinstance(data := json.loads(raw), dict):
            return {name: str(normalize_host(str(ip))) for key, ip in data.items()
                    if (name := normalize_host(str(key)))}
    return {}  # unreadable: test mode all the same, with nothing pinned


def port_refusal(name: str, port: int, tunnel: bool, pins: dict[str, str] | None) -> str | None:
    """Why ``port`` may not be reached: a tunnel (CONNECT) goes to 443 only, plain http to 80 only. Test mode
    (``pins``) only: a NAME the map pins is let through here, for the tests' loopback servers on random ports; the
    address rule (:func:`address_refusal`) then lets nothing but the loopback address pinned to it through, so in
    effect only a name pinned to loopback may use another port (one pinned elsewhere gets that address refusal)."""
    if port == (HTTPS_PORT if tunnel else HTTP_PORT) or (pins is not None and ip_of(name) is None and name in pins):
        return None
    return f"port {port} is not allowed: only port 443 (https, CONNECT) and port 80 (plain http) are"


def address_refusal(name: str, ip: str, pins: dict[str, str] | None) -> str | None:
    """Why the address ``ip`` that ``name`` resolved to may not be connected (:func:`forbidden_address`; in test
    mode, anything but the loopback address the map pins ``name`` to)."""
    reason = forbidden_address(ip)
    if pins is not None:  # test mode: loopback only, and only where the map pins it
        if reason == "loopback" and pins.get(name) == ip:
            return None
        reason = reason or f"non-loopback (${TEST_RESOLVE_ENV} test mode)"
    article = "an" if reason and reason[0].lower() in "aeiou" else "a"
    return reason and f"{article} {reason} address is never reachable from the sandbox"


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
        return f"{PREFIX} {self.reason}"


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
        self._generation = 0
        self.configure(mode, allowed, ask)

    def configure(self, mode: Mode, allowed: Iterable[str] = (), ask: Ask | None = None) -> None:
        """Start over (a pooled sandbox serving another thread): this mode, list and prompt; no refusal recorded,
        no earlier "no" remembered. The connections waiting for a pending question are refused now, and the answer
        to that question, when it comes, is ignored (it was asked under the previous configuration)."""
        if mode not in ("allowlist", "open"):
            raise ValueError(f"unknown network mode {mode!r}")
        entries = NetworkPolicy._entries_of(allowed)
        with self._lock:
            self._generation += 1
            self.mode: Mode = mode
            self.ask = ask
            self._entries, self._declined, self._refusals = entries, set[str](), list[Refusal]()
            pending, self._pending = list(self._pending.values()), {}
        for fut in pending:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                fut.get_loop().call_soon_threadsafe(_settle, fut, StaleQuestion())

    @property
    def generation(self) -> int:
        """Bumped by every :meth:`configure`."""
        with self._lock:
            return self._generation

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
            name = normalize_host(domain.strip().lstrip("*").lstrip("."))
            if name is None or (wild and ip_of(name) is not None):
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
                threading.Thread(target=self._ask_now, args=(name, fut, loop, self._generation), name="netproxy-ask",
                                 daemon=True).start()
            return fut

    def _ask_now(self, name: str, fut: asyncio.Future[Answer], loop: asyncio.AbstractEventLoop,
                 generation: int) -> None:
        result: Answer | Exception = "no"
        try:
            with self._ask_lock:
                if self.generation != generation:
                    result = StaleQuestion()
                elif self._decision(name) == "allow":
                    result = "once"
                elif name not in self._declined and self.ask is not None:
                    got = self.ask(name)
                    result = cast(Answer, got) if got in ("once", "thread", "no") else "no"
                with self._lock:
                    if self._generation != generation:  # configure() since: the answer is for a policy that is gone
                        result = StaleQuestion()
                    elif result == "thread":
                        self._entries.add(name)
                    elif result == "no":
                        self._declined.add(name)
        except Exception as exc:  # a failed prompt refuses the waiting connections only
            result = exc

        def settle() -> None:
            with self._lock:
                if self._pending.get(name) is fut:
                    del self._pending[name]
            _settle(fut, result)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle)


class StaleQuestion(Exception):
    """The policy was configured again while a domain question was pending: its answer counts for nothing."""

    def __str__(self) -> str:
        return "the sandbox was given to another thread while the question was pending"


def _settle(fut: asyncio.Future[Answer], result: Answer | Exception) -> None:
    """(in the future's loop) Answer ``fut`` unless it is answered already."""
    if not fut.done():
        fut.set_exception(result) if isinstance(result, Exception) else fut.set_result(result)


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
            host = normalize_host((urlsplit(url[0]).hostname or "").rstrip(".,;:!?)]}'"))
            if host and "." in host and ip_of(host) is None:
                found.append((url.start(), host))
    for bare in _BARE.finditer(_URL.sub(lambda m: " " * len(m[0]), text)):
        if bare[2].lower() in _TLDS:
            found.append((bare.start(), bare[1].lower()))
    return list(dict.fromkeys(host for _, host in sorted(found)))
