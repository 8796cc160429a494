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
by ``tests/test_fakes_smoke.py``). ``invoke`` and ``stream`` raise the same thing unless
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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

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

_GEMINI_PATH = re.compile(r"/(?P<version>v1[a-z0-9]*)/models/(?P<model>[^/:]+):(?P<method>\w+)$")
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_OPENAI_ERROR_TYPE = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_denied", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


# --------------------------------------------------------------------------- request


def _message_text(content: Any) -> str:
    """Text of an OpenAI message ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
        return "\n".join(out)
    return ""


def _parts_text(parts: Any) -> str:
    if not isinstance(parts, list):
        return ""
    return "\n".join(
        p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)
    )


@dataclass
class Request:
    """One HTTP request the fake received (headers lower-cased)."""

    kind: str
    method: str
    path: str  # URL path without the query string
    headers: dict[str, str]
    json: dict[str, Any] | None
    query: dict[str, str] = field(default_factory=dict)
    raw_body: bytes = b""

    @property
    def text(self) -> str:
        """All user/system(/developer) message text, newline-joined, in order."""
        body = self.json or {}
        chunks: list[str] = []
        if self.kind == "gemini":
            system = body.get("systemInstruction") or body.get("system_instruction")
            if isinstance(system, dict):
                chunks.append(_parts_text(system.get("parts")))
            for content in body.get("contents") or []:
                if isinstance(content, dict) and content.get("role", "user") == "user":
                    chunks.append(_parts_text(content.get("parts")))
        else:
            for msg in body.get("messages") or []:
                if isinstance(msg, dict) and msg.get("role") in ("system", "developer", "user"):
                    chunks.append(_message_text(msg.get("content")))
        return "\n".join(c for c in chunks if c)

    @property
    def model(self) -> str | None:
        if self.kind == "gemini":
            m = _GEMINI_PATH.search(self.path)
            return m.group("model") if m else None
        model = (self.json or {}).get("model")
        return model if isinstance(model, str) else None

    @property
    def stream(self) -> bool:
        if self.kind == "gemini":
            return self.path.endswith(":streamGenerateContent")
        return bool((self.json or {}).get("stream"))

    @property
    def has_tools(self) -> bool:
        return bool(self.tool_names)

    @property
    def tool_names(self) -> list[str]:
        """Declared function/tool names, in order."""
        body = self.json or {}
        names: list[str] = []
        for tool in body.get("tools") or []:
            if not isinstance(tool, dict):
                continue
            if self.kind == "gemini":
                decls = tool.get("functionDeclarations") or tool.get("function_declarations")
                for decl in decls or []:
                    if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                        names.append(decl["name"])
            else:
                fn = tool.get("function")
                if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                    names.append(fn["name"])
        return names

    @property
    def forced_tool(self) -> str | None:
        """The tool the client forces (OpenAI ``tool_choice`` / Gemini allowed names)."""
        body = self.json or {}
        if self.kind == "gemini":
            cfg = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
            allowed = cfg.get("allowedFunctionNames") or []
            return allowed[0] if len(allowed) == 1 else None
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            fn = choice.get("function") or {}
            name = fn.get("name")
            return name if isinstance(name, str) else None
        return None

    @property
    def wants_json(self) -> bool:
        """The client asked for JSON output (response_format / responseMimeType)."""
        body = self.json or {}
        if self.kind == "gemini":
            cfg = body.get("generationConfig") or {}
            return cfg.get("responseMimeType") == "application/json"
        fmt = body.get("response_format")
        return isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object")

    @property
    def stream_usage(self) -> bool:
        """OpenAI ``stream_options.include_usage`` was requested."""
        opts = (self.json or {}).get("stream_options") or {}
        return isinstance(opts, dict) and bool(opts.get("include_usage"))


# --------------------------------------------------------------------------- replies

Action = Literal[
    "text", "tool_call", "structured", "rate_limit", "error", "auth", "garbage", "hang", "raw"
]


@dataclass(frozen=True)
class Reply:
    """What the fake answers; rendered per provider kind and per request."""

    action: Action
    content: str = ""
    prompt_tokens: int = 10
    completion_tokens: int = 5
    headers: dict[str, str] | None = None
    tool_name: str | None = None
    args: dict[str, Any] | None = None
    status: int = 200
    message: str | None = None
    retry_after: float | None = None
    body: Any = None  # error body override (dict/str/bytes) or raw body
    content_type: str | None = None
    seconds: float = 0.0
    then: Reply | None = None

    # -- constructors -------------------------------------------------------------
    @classmethod
    def text(
        cls,
        content: str,
        *,
        prompt_tokens: int = 10,
        completion_tokens: int = 5,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        return cls(
            "text",
            content=content,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            headers=headers,
        )

    @classmethod
    def json_content(
        cls,
        obj: Any,
        *,
        prompt_tokens: int = 10,
        completion_tokens: int = 5,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """A text answer whose content is ``json.dumps(obj)`` (json_schema structured output)."""
        return cls.text(
            json.dumps(obj),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            headers=headers,
        )

    @classmethod
    def tool_call(
        cls,
        name: str,
        args: dict[str, Any],
        *,
        prompt_tokens: int = 10,
        completion_tokens: int = 5,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        return cls(
            "tool_call",
            tool_name=name,
            args=dict(args),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            headers=headers,
        )

    @classmethod
    def structured(
        cls,
        obj: dict[str, Any],
        *,
        prompt_tokens: int = 10,
        completion_tokens: int = 5,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Tool call if the request declares tools (forced/first tool), else JSON text."""
        return cls(
            "structured",
            args=dict(obj),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            headers=headers,
        )

    @classmethod
    def rate_limit(
        cls,
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> Reply:
        return cls("rate_limit", status=429, retry_after=retry_after, headers=headers, body=body)

    @classmethod
    def error(
        cls,
        status: int = 500,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> Reply:
        return cls("error", status=status, message=message, headers=headers, body=body)

    @classmethod
    def auth_error(cls, *, headers: dict[str, str] | None = None) -> Reply:
        """What a wrong key really gets: OpenAI/Groq/Together 401; Gemini 400 API_KEY_INVALID."""
        return cls("auth", status=401, headers=headers)

    @classmethod
    def garbage(cls, status: int = 200, *, headers: dict[str, str] | None = None) -> Reply:
        return cls("garbage", status=status, headers=headers)

    @classmethod
    def hang(cls, seconds: float, then: Reply | None = None) -> Reply:
        """Sleep ``seconds`` (interruptible by ``stop()``), then answer ``then`` (text "ok")."""
        return cls("hang", seconds=seconds, then=then)

    @classmethod
    def raw(
        cls,
        status: int,
        body: bytes | str,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        return cls("raw", status=status, body=body, content_type=content_type, headers=headers)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Reply:
        """Build from JSON, e.g. ``{"type": "rate_limit", "retry_after": 3}`` (CLI use)."""
        spec = dict(spec)
        kind = spec.pop("type", "text")
        if kind == "text":
            return cls.text(str(spec.pop("content", "ok")), **spec)
        if kind == "json_content":
            return cls.json_content(spec.pop("obj"), **spec)
        if kind == "tool_call":
            return cls.tool_call(spec.pop("name"), spec.pop("args", {}), **spec)
        if kind == "structured":
            return cls.structured(spec.pop("obj"), **spec)
        if kind == "rate_limit":
            return cls.rate_limit(**spec)
        if kind == "error":
            return cls.error(**spec)
        if kind == "auth_error":
            return cls.auth_error(**spec)
        if kind == "garbage":
            return cls.garbage(**spec)
        if kind == "hang":
            then = spec.pop("then", None)
            return cls.hang(float(spec.pop("seconds")), cls.from_spec(then) if then else None)
        if kind == "raw":
            return cls.raw(int(spec.pop("status")), spec.pop("body"), **spec)
        raise ValueError(f"unknown reply type {kind!r}")


text = Reply.text
json_content = Reply.json_content
tool_call = Reply.tool_call
structured = Reply.structured
rate_limit = Reply.rate_limit
error = Reply.error
auth_error = Reply.auth_error
garbage = Reply.garbage
hang = Reply.hang
raw = Reply.raw


def ratelimit_headers(
    limit_requests: int = 1000,
    remaining_requests: int = 999,
    reset_requests: str = "1m26s",
    limit_tokens: int = 12000,
    remaining_tokens: int = 11000,
    reset_tokens: str = "6s",
) -> dict[str, str]:
    """Groq-style ``x-ratelimit-*`` headers (pass as ``headers=``)."""
    return {
        "x-ratelimit-limit-requests": str(limit_requests),
        "x-ratelimit-remaining-requests": str(remaining_requests),
        "x-ratelimit-reset-requests": reset_requests,
        "x-ratelimit-limit-tokens": str(limit_tokens),
        "x-ratelimit-remaining-tokens": str(remaining_tokens),
        "x-ratelimit-reset-tokens": reset_tokens,
    }


def _default_responder(_: Request) -> Reply:
    return Reply.text("ok")


# --------------------------------------------------------------------------- rendering


@dataclass
class _Rendered:
    status: int
    headers: dict[str, str]
    body: bytes | None = None  # a complete body ...
    events: list[bytes] | None = None  # ... or SSE events, flushed one by one


def _fmt_seconds(seconds: float) -> str:
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds:g}s"


def _split_text(content: str, pieces: int = 3) -> list[str]:
    """Split into up to ``pieces`` non-empty chunks (word boundaries when possible)."""
    if not content:
        return [""]
    words = re.findall(r"\S+\s*|\s+", content)
    if len(words) < pieces:
        return words
    size = -(-len(words) // pieces)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def _sse(obj: Any) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj)
    return f"data: {data}\n\n".encode()


def _json_body(status: int, obj: Any, headers: dict[str, str] | None) -> _Rendered:
    body = (
        obj
        if isinstance(obj, bytes)
        else (obj.encode() if isinstance(obj, str) else json.dumps(obj).encode())
    )
    return _Rendered(status, {"content-type": "application/json", **(headers or {})}, body=body)


def _openai_error(reply: Reply) -> Any:
    if reply.body is not None:
        return reply.body
    if reply.action == "rate_limit":
        wait = (
            f" Please try again in {_fmt_seconds(reply.retry_after)}."
            if reply.retry_after is not None
            else " Please try again later."
        )
        return {
            "error": {
                "message": "Rate limit reached for model `fake-model` in organization "
                "`org_fake` service tier `on_demand` on requests per minute (RPM): "
                f"Limit 30, Used 30, Requested 1.{wait}",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        }
    status = reply.status
    etype, code = _OPENAI_ERROR_TYPE.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    default = {
        401: "Invalid API Key",
        404: "The model `fake-model` does not exist or you do not have access to it.",
    }.get(
        status,
        "The server had an error while processing your request."
        if status >= 500
        else f"Request failed with status {status}.",
    )
    return {"error": {"message": reply.message or default, "type": etype, "code": code}}


def _gemini_error(reply: Reply) -> Any:
    if reply.body is not None:
        return reply.body
    if reply.action == "rate_limit":
        details: list[dict[str, Any]] = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/"
                        "generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": "fake-model"},
                        "quotaValue": "50",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
        ]
        msg = (
            "You exceeded your current quota, please check your plan and billing details. "
            "For more information on this error, head to: "
            "https://ai.google.dev/gemini-api/docs/rate-limits."
        )
        if reply.retry_after is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": _fmt_seconds(reply.retry_after),
                }
            )
            msg += f" Please retry in {reply.retry_after:g}s."
        return {
            "error": {
                "code": 429,
                "message": msg,
                "status": "RESOURCE_EXHAUSTED",
                "details": details,
            }
        }
    if reply.action == "auth":  # what Gemini really answers for a bad key
        return {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            }
        }
    status = reply.status
    default = {
        401: "Request had invalid authentication credentials.",
        404: "models/fake-model is not found for API version v1beta.",
        500: "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
        503: "The model is overloaded. Please try again later.",
    }.get(status, f"Request failed with status {status}.")
    return {
        "error": {
            "code": status,
            "message": reply.message or default,
            "status": _GEMINI_STATUS.get(status, "UNKNOWN"),
        }
    }


class _Renderer:
    def __init__(self, kind: str, default_model: str) -> None:
        self.kind = kind
        self.default_model = default_model

    def render(self, reply: Reply, req: Request) -> _Rendered:
        headers = dict(reply.headers or {})
        if reply.action in ("rate_limit", "error", "auth"):
            status = reply.status
            if (
                reply.action == "rate_limit"
                and reply.retry_after is not None
                and self.kind == "openai"
            ):
                headers.setdefault("retry-after", f"{reply.retry_after:g}")
            if self.kind == "gemini":
                body = _gemini_error(reply)
                if reply.action == "auth":
                    status = 400  # Gemini answers a bad API key with 400 API_KEY_INVALID
            else:
                body = _openai_error(reply)
            return _json_body(status, body, headers)
        if reply.action == "garbage":
            return _json_body(reply.status, b"<html>oops", headers)
        if reply.action == "raw":
            body = reply.body if isinstance(reply.body, bytes) else str(reply.body).encode()
            return _Rendered(
                reply.status,
                {"content-type": reply.content_type or "application/json", **headers},
                body=body,
            )
        if reply.action == "structured":
            name = req.forced_tool or (req.tool_names[0] if req.tool_names else None)
            if name is not None:
                reply = Reply.tool_call(
                    name,
                    reply.args or {},
                    prompt_tokens=reply.prompt_tokens,
                    completion_tokens=reply.completion_tokens,
                    headers=reply.headers,
                )
            else:
                reply = Reply.json_content(
                    reply.args or {},
                    prompt_tokens=reply.prompt_tokens,
                    completion_tokens=reply.completion_tokens,
                    headers=reply.headers,
                )
        if reply.action not in ("text", "tool_call"):
            raise ValueError(f"cannot render {reply.action!r}")
        if self.kind == "gemini":
            return self._gemini(reply, req, headers)
        return self._openai(reply, req, headers)

    # -- openai ---------------------------------------------------------------------
    def _openai(self, reply: Reply, req: Request, headers: dict[str, str]) -> _Rendered:
        model = req.model or self.default_model
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        usage = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }
        groq = "/openai/v1/" in req.path
        call_id = f"call_{uuid.uuid4().hex[:20]}"
        finish = "tool_calls" if reply.action == "tool_call" else "stop"
        arguments = json.dumps(reply.args or {})
        if not req.stream:
            message: dict[str, Any] = {"role": "assistant", "content": None}
            if reply.action == "tool_call":
                message["tool_calls"] = [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": reply.tool_name, "arguments": arguments},
                    }
                ]
            else:
                message["content"] = reply.content
            body: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
                "usage": usage,
                "system_fingerprint": "fp_fake",
            }
            if groq:
                body["x_groq"] = {"id": f"req_{uuid.uuid4().hex[:26]}"}
            return _json_body(200, body, headers)

        include_usage = req.stream_usage

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            c: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if include_usage:
                c["usage"] = None
            return c

        chunks: list[dict[str, Any]] = []
        if reply.action == "tool_call":
            chunks.append(
                chunk(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": call_id,
                                "type": "function",
                                "function": {"name": reply.tool_name, "arguments": ""},
                            }
                        ],
                    }
                )
            )
            for piece in _split_text(arguments):
                chunks.append(
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                )
        else:
            chunks.append(chunk({"role": "assistant", "content": ""}))
            for piece in _split_text(reply.content):
                if piece:
                    chunks.append(chunk({"content": piece}))
        final = chunk({}, finish)
        if groq:
            final["x_groq"] = {"id": f"req_{uuid.uuid4().hex[:26]}", "usage": usage}
        chunks.append(final)
        if include_usage:
            usage_chunk = chunk({})
            usage_chunk["choices"] = []
            usage_chunk["usage"] = usage
            chunks.append(usage_chunk)
        events = [_sse(c) for c in chunks] + [_sse("[DONE]")]
        return _Rendered(
            200,
            {
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                **headers,
            },
            events=events,
        )

    # -- gemini ---------------------------------------------------------------------
    def _gemini(self, reply: Reply, req: Request, headers: dict[str, str]) -> _Rendered:
        model = req.model or self.default_model
        rid = uuid.uuid4().hex[:22]
        p, c = reply.prompt_tokens, reply.completion_tokens

        def response(
            parts: list[dict[str, Any]], candidates_tokens: int, finish: bool
        ) -> dict[str, Any]:
            cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if finish:
                cand["finishReason"] = "STOP"
            return {
                "candidates": [cand],
                "usageMetadata": {
                    "promptTokenCount": p,
                    "candidatesTokenCount": candidates_tokens,
                    "totalTokenCount": p + candidates_tokens,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": p}],
                },
                "modelVersion": model,
                "responseId": rid,
            }

        part_lists: list[list[dict[str, Any]]]
        if reply.action == "tool_call":
            call = {"name": reply.tool_name, "args": reply.args or {}}
            part_lists = [[{"functionCall": call}]]
        else:
            part_lists = [[{"text": piece}] for piece in _split_text(reply.content)]
        if not req.stream:
            parts = part_lists[0] if reply.action == "tool_call" else [{"text": reply.content}]
            return _json_body(200, response(parts, c, True), headers)
        events = []
        n = len(part_lists)
        for i, pl in enumerate(part_lists):
            # Gemini reports cumulative usage on every chunk (LangChain subtracts).
            events.append(_sse(response(pl, round(c * (i + 1) / n), i == n - 1)))
        return _Rendered(200, {"content-type": "text/event-stream", **headers}, events=events)


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeProvider

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
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

    def _write(self, r: _Rendered) -> None:
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
        self._renderer = _Renderer(kind, model)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = port  # 0 = ephemeral; the real port once started
        self.base_url = ""  # set by start()

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> FakeProvider:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", self.port), _Handler)
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
            m = _GEMINI_PATH.search(req.path)
            return (
                req.method == "POST"
                and m is not None
                and m.group("method") in ("generateContent", "streamGenerateContent")
            )
        return req.method == "POST" and req.path.rstrip("/").endswith("/chat/completions")

    def _handle(self, req: Request) -> _Rendered:
        with self._lock:
            self.requests.append(req)
        if (
            self.kind == "openai"
            and req.method == "GET"
            and req.path.rstrip("/").endswith("/models")
        ):
            return _json_body(
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
                    return _Rendered(503, {}, body=b"")
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
