"""Request / reply model of the fake provider servers (``tests.fakes.provider_server``).

``Request`` is what the fake received, read per provider kind; ``Reply`` is what it should
answer, rendered per kind and per request by ``tests.fakes.wire_render``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

GEMINI_PATH = re.compile(r"/(?P<version>v1[a-z0-9]*)/models/(?P<model>[^/:]+):(?P<method>\w+)$")


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
            m = GEMINI_PATH.search(self.path)
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
    "text", "tool_call", "tool_calls", "structured", "rate_limit", "error", "auth", "garbage", "hang", "raw"
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
    calls: tuple[tuple[str, str], ...] = ()  # tool_calls: (name, raw arguments text) each


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
    def tool_calls(
        cls, calls: list[tuple[str, str]], *, content: str = "", prompt_tokens: int = 10, completion_tokens: int = 5
    ) -> Reply:
        """Several tool calls (and ``content`` text beside them), each ``(name, arguments)`` with the
        arguments sent as written: not JSON, double-encoded, Python literals (OpenAI wire). Gemini's
        wire carries arguments as objects, so there they must be a JSON object."""
        return cls("tool_calls", content=content, calls=tuple(calls), prompt_tokens=prompt_tokens,
                   completion_tokens=completion_tokens)

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
tool_calls = Reply.tool_calls
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

