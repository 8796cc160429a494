"""HTTP layer of the fake provider servers (``tests.fakes.provider_server``).

``Rendered`` is a finished answer (a whole body or SSE events flushed one by one), with the
small encoders the per-kind renderers share; ``Server`` / ``Handler`` turn each HTTP request
into a ``Request``, hand it to the ``FakeProvider`` and write the ``Rendered`` answer back.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.wire import Request

if TYPE_CHECKING:
    from tests.fakes.provider_server import FakeProvider


@dataclass
class Rendered:
    status: int
    headers: dict[str, str]
    body: bytes | None = None  # a complete body ...
    events: list[bytes] | None = None  # ... or SSE events, flushed one by one


def fmt_seconds(seconds: float) -> str:
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds:g}s"


def split_text(content: str, pieces: int = 3) -> list[str]:
    """Split into up to ``pieces`` non-empty chunks (word boundaries when possible)."""
    if not content:
        return [""]
    words = re.findall(r"\S+\s*|\s+", content)
    if len(words) < pieces:
        return words
    size = -(-len(words) // pieces)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def sse(obj: Any) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj)
    return f"data: {data}\n\n".encode()


def json_body(status: int, obj: Any, headers: dict[str, str] | None) -> Rendered:
    body = (
        obj
        if isinstance(obj, bytes)
        else (obj.encode() if isinstance(obj, str) else json.dumps(obj).encode())
    )
    return Rendered(status, {"content-type": "application/json", **(headers or {})}, body=body)


# --------------------------------------------------------------------------- server


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeProvider

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.0"  # one request per connection; end of body = close
    server_version = "FakeProvider/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        body: dict[str, Any] | None
        try:
            parsed = json.loads(raw_body) if raw_body else None
            body = parsed if isinstance(parsed, dict) else None
        except ValueError:
            body = None
        req = Request(
            kind=fake.kind,
            method=self.command,
            path=split.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            json=body,
            query=dict(parse_qsl(split.query)),
            raw_body=raw_body,
        )
        rendered = fake._handle(req)
        with contextlib.suppress(ConnectionError, TimeoutError):
            self._write(rendered)

    def _write(self, r: Rendered) -> None:
        self.send_response(r.status)
        for k, v in r.headers.items():
            self.send_header(k, v)
        if r.body is not None:
            self.send_header("content-length", str(len(r.body)))
        self.send_header("connection", "close")
        self.end_headers()
        if r.body is not None:
            self.wfile.write(r.body)
        for event in r.events or []:
            self.wfile.write(event)
            self.wfile.flush()
