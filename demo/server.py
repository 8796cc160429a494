"""The demo's local model server: an OpenAI-compatible ``POST …/chat/completions`` (and ``GET …/models``) on
127.0.0.1, a free port, answering with :func:`demo.answers.answer` — a whole JSON completion, or an SSE
stream when the client asks for one. Standard library only; it runs in a daemon thread of the CLI's process::

    with DemoServer() as server:
        server.base_url   # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from free_llm_agent.demo.answers import Answer, answer

MODEL = "scripted-demo"


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def completion(body: dict[str, Any]) -> tuple[dict[str, Any], Answer]:
    """The ``chat.completion`` object answering ``body``, and the answer it carries."""
    said = answer(body)
    message: dict[str, Any] = {"role": "assistant", "content": said.content or None}
    if said.kind == "tool_call":
        arguments = json.dumps(said.arguments or {}, ensure_ascii=False)
        message["tool_calls"] = [{"id": f"call_{uuid.uuid4().hex[:20]}", "type": "function",
                                  "function": {"name": said.tool, "arguments": arguments}}]
        produced = arguments
    else:
        message["content"] = produced = said.content
    asked = "".join(str(m.get("content") or "") for m in body.get("messages") or [] if isinstance(m, dict))
    usage = {"prompt_tokens": _tokens(asked), "completion_tokens": _tokens(produced)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model") or MODEL),
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": "tool_calls" if said.kind == "tool_call" else "stop"}],
        "usage": usage,
    }, said


def chunks(done: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """The same completion as ``chat.completion.chunk`` objects (the whole answer in one delta)."""
    choice = done["choices"][0]
    base = {k: done[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    delta: dict[str, Any] = {"role": "assistant", "content": choice["message"]["content"]}
    if "tool_calls" in choice["message"]:
        delta["tool_calls"] = [{"index": 0, **call} for call in choice["message"]["tool_calls"]]
    out = [base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
           base | {"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}]
    if include_usage:
        out.append(base | {"choices": [], "usage": done["usage"]})
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: the body ends where the connection does
    server_version = "free-llm-agent-demo/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # the CLI's progress says what happens
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "demo"}]})
        else:
            self._json(404, {"error": {"message": f"no route GET {self.path}", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        if not self.path.split("?")[0].rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route POST {self.path}", "type": "invalid_request_error"}})
            return
        if not isinstance(body, dict):
            self._json(400, {"error": {"message": "the body is not a JSON object", "type": "invalid_request_error"}})
            return
        done, said = completion(body)
        self.server.answered.append(said.purpose)  # type: ignore[attr-defined]
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = [f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in chunks(done, usage)]
            self._send(200, "text/event-stream", "".join([*events, "data: [DONE]\n\n"]).encode())
        else:
            self._json(200, done)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, "application/json", json.dumps(obj, ensure_ascii=False).encode())

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answered: list[str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answered = answered

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (Ctrl-C of the demo): nothing to print on the demo's screen."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class DemoServer:
    """The server on 127.0.0.1 and a free port, serving from a daemon thread while in its ``with``."""

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""
        self.answered: list[str] = []  # the purpose of every answer given, in order

    def start(self) -> DemoServer:
        self._server = _Server(self.answered)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="demo-model-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
