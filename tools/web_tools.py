"""Fetch a URL as readable text, with hard limits on size and total time.

``fetch_text`` follows up to 5 redirects by hand (so every hop gets only the time that is left),
streams the body and stops past ``max_bytes``, converts HTML to text (``html2text``, or a stdlib
fallback that drops script/style), and returns JSON / plain text as is.  A watchdog shuts the
socket down when the total deadline passes, so a server that trickles bytes cannot hold the
caller past ``timeout_s``.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

import httpx

MAX_REDIRECTS = 5
_USER_AGENT = "free-llm-agent/0.1 (+fetch_text)"
_TEXTUAL = re.compile(r"^(text/|application/([\w.+-]*\+)?(json|xml|javascript|x-ndjson|csv|"
                      r"x-yaml|yaml|toml|x-sh|x-python|sql|ld\+json))")


class FetchError(Exception):
    """Network error, timeout, too many redirects or HTTP status >= 400."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"fetching {url} failed: {reason}")
        self.url = url
        self.reason = reason
        self.status = status


@dataclass
class FetchResult:
    url: str  # final URL, after redirects
    status: int
    content_type: str
    text: str
    truncated: bool  # body cut at max_bytes or text cut at max_chars


class _TextExtractor(HTMLParser):
    """Stdlib fallback: visible text only, block tags become line breaks."""

    _SKIP: ClassVar[set[str]] = {"script", "style", "noscript", "template", "head", "svg"}
    _BLOCK: ClassVar[set[str]] = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
                                  "article", "header", "footer", "pre", "blockquote", "table",
                                  "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Readable text from HTML (markdown-ish via html2text when available)."""
    try:
        import html2text

        converter = html2text.HTML2Text()
        converter.body_width = 0
        converter.ignore_images = True
        text = converter.handle(html)
    except Exception:  # html2text missing or choking on broken markup
        parser = _TextExtractor()
        parser.feed(html)
        parser.close()
        text = "".join(parser.parts)
        text = "\n".join(re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _check_scheme(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"only http(s) URLs can be fetched, not {parts.scheme or 'no scheme'!r}"
                         f": {url}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {url}")


def _shutdown_socket(response: httpx.Response) -> None:
    stream: Any = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _decode(raw: bytes, charset: str | None) -> str:
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def _open(client: httpx.Client, url: str, deadline: float, timeout_s: float) -> httpx.Response:
    """Send GET, following redirects by hand; returns an open streaming response."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(url, f"timed out after {timeout_s:g}s")
        request = client.build_request("GET", current, timeout=httpx.Timeout(remaining))
        response = client.send(request, stream=True)
        if not response.is_redirect:
            return response
        location = response.headers.get("location", "")
        response.close()
        current = urljoin(str(response.url), location)
        try:
            _check_scheme(current)
        except ValueError as exc:
            raise FetchError(url, f"redirect to unsupported URL: {exc}") from exc
    raise FetchError(url, f"too many redirects (more than {MAX_REDIRECTS})")


def fetch_text(url: str, *, max_bytes: int = 2_000_000, timeout_s: float = 15.0,
               max_chars: int = 20_000) -> FetchResult:
    """GET ``url`` and return its content as text. Raises ValueError / FetchError."""
    _check_scheme(url)
    deadline = time.monotonic() + timeout_s
    timed_out = threading.Event()
    try:
        with httpx.Client(follow_redirects=False, headers={"User-Agent": _USER_AGENT}) as client:
            response = _open(client, url, deadline, timeout_s)
            watchdog: threading.Timer | None = None
            try:
                if response.status_code >= 400:
                    raise FetchError(str(response.url), f"HTTP {response.status_code} "
                                     f"{response.reason_phrase}".strip(), response.status_code)

                def expire() -> None:
                    timed_out.set()
                    _shutdown_socket(response)

                watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
                watchdog.daemon = True
                watchdog.start()
                body = bytearray()
                truncated = False
                for chunk in response.iter_bytes(chunk_size=65_536):
                    body += chunk
                    if len(body) >= max_bytes:
                        truncated = len(body) > max_bytes or _more_data(response, max_bytes)
                        del body[max_bytes:]
                        break
                    if timed_out.is_set() or time.monotonic() > deadline:
                        raise FetchError(url, f"timed out after {timeout_s:g}s")
                if timed_out.is_set():
                    raise FetchError(url, f"timed out after {timeout_s:g}s")
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                response.close()
    except FetchError:
        raise
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid URL {url!r}: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise FetchError(url, f"timed out after {timeout_s:g}s") from exc
    except (httpx.HTTPError, OSError) as exc:
        reason = f"timed out after {timeout_s:g}s" if timed_out.is_set() else \
            f"{type(exc).__name__}: {exc}"
        raise FetchError(url, reason) from exc

    content_type = response.headers.get("content-type", "")
    mime = content_type.split(";")[0].strip().lower()
    text = _decode(bytes(body), response.charset_encoding)
    if mime in ("text/html", "application/xhtml+xml") or (
        not mime and re.match(r"\s*(<!doctype html|<html)", text[:500], re.I)
    ):
        text = html_to_text(text)
    elif (mime and not _TEXTUAL.match(mime)) or "\x00" in text[:4096]:
        text = f"[binary content: {mime or 'unknown type'}, {len(body)} bytes not shown]\n"
    if len(text) > max_chars:
        text, truncated = text[:max_chars], True
    return FetchResult(url=str(response.url), status=response.status_code,
                       content_type=content_type, text=text, truncated=truncated)


def _more_data(response: httpx.Response, size: int) -> bool:
    """True unless an uncompressed Content-Length says the body ended within ``size`` bytes."""
    length = response.headers.get("content-length", "")
    plain = "content-encoding" not in response.headers
    return not (plain and length.isdigit() and int(length) <= size)
