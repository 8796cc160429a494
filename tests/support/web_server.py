"""A loopback web server for ``fetch_text`` and the executors' network tests: ``base_url`` (a fixture,
one server per test module; registered in ``tests/conftest.py``) serves ``/page`` (:data:`PAGE`), JSON,
text, binary, big, slow and trickling bodies, error statuses and redirects."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

PAGE = """<!doctype html><html><head><title>Test page</title>
<style>body { color: red; }</style><script>var secret = "do-not-show";</script></head>
<body><h1>Main heading</h1><p>First paragraph with a <a href="/other">link</a>.</p>
<ul><li>item one</li><li>item two</li></ul></body></html>"""


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None,
              ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        routes: dict[str, Callable[[], None]] = {
            "/page": lambda: self._send(200, PAGE.encode(), "text/html; charset=utf-8"),
            "/json": lambda: self._send(200, b'{"a": [1, 2], "b": "x"}', "application/json"),
            "/plain": lambda: self._send(200, "héllo wörld\n".encode(), "text/plain; charset=utf-8"),
            "/big": lambda: self._send(200, b"a" * 1_000_000, "text/plain"),
            "/long-text": lambda: self._send(200, b"b" * 5_000, "text/plain"),
            "/image": lambda: self._send(200, b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
            "/missing": lambda: self._send(404, b"nope", "text/plain"),
            "/boom": lambda: self._send(500, b"err", "text/plain"),
            "/redirect": lambda: self._redirect("/hop2"),
            "/hop2": lambda: self._redirect("/page"),
            "/loop": lambda: self._redirect("/loop"),
            "/to-file": lambda: self._redirect("file:///etc/passwd"),
        }
        try:
            if self.path in routes:
                routes[self.path]()
            elif self.path == "/slow":
                time.sleep(5)
                self._send(200, b"late", "text/plain")
            elif self.path == "/trickle":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                for _ in range(10):  # each gap is shorter than the timeout, the sum is not
                    self.wfile.write(b"x" * 10)
                    self.wfile.flush()
                    time.sleep(1.5)
            else:
                self._send(404, b"unknown", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
