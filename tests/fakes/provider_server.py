"""Loopback fake LLM provider servers speaking each provider's real wire format.

Point the *real* LangChain clients at ``FakeProvider(...).base_url``:

====================  ============  ===================================================
client                kind          path the client POSTs to (BASE = ``base_url``)
====================  ============  ===================================================
ChatGoogleGenerativeAI "gemini"     ``BASE/v1beta/models/M:generateContent`` and
                                    ``BASE/v1beta/models/M:streamGenerateContent?alt=sse``
ChatGroq              "openai"      ``BASE/openai/v1/chat/completions`` (Groq appends
                                    ``/openai/v1`` itself)
ChatTogether          "openai"      ``BASE/chat/completions``
ChatOpenAI            "openai"      ``BASE/chat/completions``
====================  ============  ===================================================

The "openai" kind answers ``POST`` on *any* path ending in ``/chat/completions`` (and
``GET .../models``); the "gemini" kind answers ``POST /<version>/models/<model>:
generateContent|streamGenerateContent``. Anything else gets a 404 in the kind's format.

Usage::

    with FakeProvider("openai") as fp:
        fp.script(text("hello", prompt_tokens=3), rate_limit(retry_after=2))
        llm = ChatOpenAI(model="m", api_key="test", base_url=fp.base_url, max_retries=0)
        llm.invoke("hi")            # -> "hello"
        llm.invoke("hi")            # -> raises (429)
        fp.requests[0].text         # -> "hi"

Replies are rendered per request: the same ``text(...)`` becomes a JSON completion or
an SSE stream depending on what the client asked for (OpenAI ``"stream": true``;
Gemini ``:streamGenerateContent``). OpenAI streams end with ``data: [DONE]`` and carry
a ``choices: []`` usage chunk when ``stream_options.include_usage`` was requested; on
Groq's path (``/openai/v1/...``) the final chunk also carries ``x_groq.usage`` like the
real Groq API (that is where ``ChatGroq`` reads streaming usage from).

Structured output (``llm.with_structured_output(PydanticModel)`` with default method):

====================== ================== =============================================
client                 default method     reply the fake must send
====================== ================== =============================================
ChatGoogleGenerativeAI "json_schema"      ``json_content(obj)`` (JSON text part)
ChatOpenAI             "json_schema"      ``json_content(obj)`` (``response_format``)
ChatGroq               "function_calling" ``tool_call(ToolName, obj)``
ChatTogether           "function_calling" ``tool_call(ToolName, obj)``
====================== ================== =============================================

``structured(obj)`` picks between the two by looking at the request (tools present ->
tool call named after the forced / first tool, otherwise JSON content), so it works for
every client.

Error classification -- measured against this fake with ``max_retries=0`` (versions:
langchain-openai 1.7.3 / openai 2.54.0, langchain-groq 1.1.3 / groq 0.37.1,
langchain-together 0.4.0, langchain-google-genai 4.4.2 / google-genai 2.34.0; asserted
by ``tests/test_fakes_errors.py``). ``invoke`` and ``stream`` raise the same thing unless
noted.

ChatOpenAI and ChatTogether (both ``langchain_openai`` ``BaseChatOpenAI``; ``B`` below is
``langchain_openai.chat_models.base``; each class subclasses the ``openai`` SDK class
*and* a ``langchain_core.exceptions.Model*Error``; ``__cause__`` is the SDK error)::

    case      exception
    429       B.OpenAIRateLimitError (openai.RateLimitError, ModelRateLimitError)
    401       B.OpenAIAuthenticationError (openai.AuthenticationError, ModelAuthenticationError)
    403       B.OpenAIPermissionDeniedError (openai.PermissionDeniedError, ...)
    400       B.OpenAIInvalidRequestError (openai.BadRequestError, ModelInvalidRequestError)
    404       B.OpenAIModelNotFoundError (openai.NotFoundError, ModelNotFoundError)
    5xx       B.OpenAIAPIError (openai.InternalServerError, ModelAPIError)
              for all of these: status e.status_code (== e.response.status_code);
              headers e.response.headers (httpx.Headers; 'retry-after', x-ratelimit-*);
              e.body = the INNER "error" object {message, type, code};
              careful: e.code is that body's code STRING ("rate_limit_exceeded"), not
              the status.
    garbage   invoke: json.decoder.JSONDecodeError (unwrapped), no status;
    (200)     stream: ValueError("No generation chunks were returned"), no status
    garbage   the class of that status row (e.body = the raw text)
    (>=400)
    hang      B.OpenAITimeoutError (openai.APITimeoutError, ModelTimeoutError); no status,
              no response; __cause__ openai.APITimeoutError <- httpx.ReadTimeout

ChatGroq -- raw ``groq`` SDK exceptions, NOT ``langchain_core`` ``ModelError`` subclasses::

    429       groq.RateLimitError
    401       groq.AuthenticationError
    403       groq.PermissionDeniedError
    400       groq.BadRequestError
    404       groq.NotFoundError
    5xx       groq.InternalServerError
              for all of these: status e.status_code (== e.response.status_code);
              headers e.response.headers; e.body = the WHOLE JSON body
              {"error": {...}} (unlike openai); there is no e.code / e.type attribute.
              __cause__ is None (raised ``from None``; __context__ is httpx.HTTPStatusError)
    garbage   as ChatOpenAI (JSONDecodeError on invoke / ValueError on stream)
    hang      groq.APITimeoutError (subclass of groq.APIConnectionError), no status

ChatGoogleGenerativeAI (``G`` = ``langchain_google_genai.chat_models``; it wraps
``google.genai.errors`` and the 4xx wrappers carry NO status/response themselves)::

    429       G.GoogleRateLimitError (G.ChatGoogleGenerativeAIError, ModelRateLimitError)
    401       G.GoogleAuthenticationError (..., ModelAuthenticationError)
    403       G.GooglePermissionDeniedError (..., ModelPermissionDeniedError)
    400       G.GoogleInvalidRequestError (..., ModelInvalidRequestError)
              <- this is what a real *bad API key* raises: Gemini answers 400
                 INVALID_ARGUMENT / reason API_KEY_INVALID (see ``auth_error()``)
    404       G.GoogleModelNotFoundError (..., ModelNotFoundError)
    other 4xx G.ChatGoogleGenerativeAIError
              for all of these: c = e.__cause__ (google.genai.errors.ClientError);
              c.code (int status), c.status ("RESOURCE_EXHAUSTED"), c.message,
              c.details = the WHOLE JSON body, so the retry hint is
              [d["retryDelay"] for d in c.details["error"]["details"]
               if d["@type"].endswith("RetryInfo")]  -> ["17s"];
              c.response.headers (httpx.Headers). str(e) also contains the details repr.
    5xx       G.GoogleAPIError -- a google.genai.errors.ServerError + ModelAPIError, NOT a
              ChatGoogleGenerativeAIError; e.code / e.status / e.details /
              e.response.headers directly on e (``__cause__`` is the original ServerError)
    garbage   invoke: json.decoder.JSONDecodeError (unwrapped), no status
    (200)     stream: google.genai.errors.UnknownApiResponseError (a ValueError)
    garbage   the status row above (c.details = {"message": raw text, "status": reason})
    (>=400)
    hang      httpx.ReadTimeout (unwrapped; an httpx.TimeoutException), no status

Success-response headers: ChatOpenAI/ChatTogether with ``include_response_headers=True``
put them (lower-cased dict) in ``AIMessage.response_metadata["headers"]``; when streaming
only the FIRST chunk carries them. ChatGroq never exposes them; pass
``http_client=httpx.Client(event_hooks={"response": [hook]})`` (and ``http_async_client``)
to see them. Streaming usage: ChatOpenAI/ChatTogether with a custom ``base_url`` only
send ``stream_options.include_usage`` (and so only report ``usage_metadata`` when
streaming) if built with ``stream_usage=True``; ChatGroq reads ``x_groq.usage``; Gemini
sends cumulative ``usageMetadata`` per chunk.

CLI (for subprocess tests)::

    python -m tests.fakes.provider_server --kind openai --port 0 --ready-file F
        [--model M] [--script-json S]

writes ``base_url`` to F once listening (atomically) and serves until SIGTERM/SIGINT.
S is JSON ``{"text": "fixed answer", "replies": [{"type": "rate_limit",
"retry_after": 3}, ...]}``: ``replies`` are queued first (see ``Reply.from_spec``), then
every request gets ``text``.

The request / reply model lives in ``tests.fakes.wire``, the wire formats in
``tests.fakes.wire_openai`` / ``tests.fakes.wire_gemini`` (dispatched by
``tests.fakes.wire_render``) and the HTTP plumbing in ``tests.fakes.wire_http``; every
public name is re-exported here.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.fakes.wire import (
    GEMINI_PATH,
    Reply,
    Request,
    auth_error,
    error,
    garbage,
    hang,
    json_content,
    rate_limit,
    ratelimit_headers,
    raw,
    structured,
    text,
    tool_call,
)
from tests.fakes.wire_http import Handler, Rendered, Server, json_body
from tests.fakes.wire_render import Renderer

__all__ = [
    "FakeProvider",
    "Reply",
    "Request",
    "auth_error",
    "error",
    "garbage",
    "hang",
    "json_content",
    "rate_limit",
    "ratelimit_headers",
    "raw",
    "structured",
    "text",
    "tool_call",
]

_KINDS: tuple[str, ...] = ("gemini", "openai")


def _default_responder(_: Request) -> Reply:
    return Reply.text("ok")


class FakeProvider:
    """A fake provider HTTP server on 127.0.0.1 (see module docstring)."""

    def __init__(
        self,
        kind: str,
        *,
        model: str = "fake-model",
        responder: Callable[[Request], Reply] | None = None,
        port: int = 0,
    ) -> None:
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.kind = kind
        self.model = model
        self.responder: Callable[[Request], Reply] = responder or _default_responder
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []  # exceptions raised by a responder
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._renderer = Renderer(kind, model)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.port = port  # 0 = ephemeral; the real port once started
        self.base_url = ""  # set by start()

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> FakeProvider:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = Server(("127.0.0.1", self.port), Handler)
        server.fake = self
        self._server = server
        self.port = int(server.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"FakeProvider-{self.kind}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes up hanging handlers
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting --------------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        """Queue replies consumed first, in order; then ``responder`` answers."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def last_request(self) -> Request | None:
        with self._lock:
            return self.requests[-1] if self.requests else None

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.errors.clear()

    # -- request handling ---------------------------------------------------------------
    def _route_ok(self, req: Request) -> bool:
        if self.kind == "gemini":
            m = GEMINI_PATH.search(req.path)
            return (
                req.method == "POST"
                and m is not None
                and m.group("method") in ("generateContent", "streamGenerateContent")
            )
        return req.method == "POST" and req.path.rstrip("/").endswith("/chat/completions")

    def _handle(self, req: Request) -> Rendered:
        with self._lock:
            self.requests.append(req)
        if (
            self.kind == "openai"
            and req.method == "GET"
            and req.path.rstrip("/").endswith("/models")
        ):
            return json_body(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}
                    ],
                },
                None,
            )
        if not self._route_ok(req):
            return self._renderer.render(
                Reply.error(404, f"fake {self.kind} provider: no route {req.method} {req.path}"),
                req,
            )
        with self._lock:
            reply = self._queue.popleft() if self._queue else None
        try:
            if reply is None:
                reply = self.responder(req)
            while reply.action == "hang":
                if self._stopping.wait(reply.seconds):
                    return Rendered(503, {}, body=b"")
                reply = reply.then or Reply.text("ok")
            return self._renderer.render(reply, req)
        except Exception as exc:  # a broken responder should fail the test visibly
            with self._lock:
                self.errors.append(exc)
            return self._renderer.render(Reply.error(500, f"fake responder crashed: {exc!r}"), req)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kind", choices=_KINDS, required=True)
    parser.add_argument("--port", type=int, default=0, help="0 = ephemeral")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument(
        "--ready-file",
        type=Path,
        required=True,
        help="base_url is written here once the server listens",
    )
    parser.add_argument(
        "--script-json",
        type=Path,
        help='JSON: {"text": "fixed answer", "replies": [{"type": "rate_limit", ...}, ...]}',
    )
    args = parser.parse_args(argv)

    responder: Callable[[Request], Reply] | None = None
    replies: list[Reply] = []
    if args.script_json is not None:
        spec = json.loads(args.script_json.read_text())
        if isinstance(spec, str):
            spec = {"text": spec}
        fixed = Reply.text(str(spec.get("text", "ok")))
        responder = lambda _req: fixed  # noqa: E731
        replies = [Reply.from_spec(r) for r in spec.get("replies") or []]

    fake = FakeProvider(args.kind, model=args.model, responder=responder, port=args.port)
    done = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with fake:
        fake.script(*replies)
        tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
        tmp.write_text(fake.base_url)
        tmp.replace(args.ready_file)
        while not done.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
