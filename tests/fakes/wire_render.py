"""Renders a ``Reply`` for one ``Request`` in the fake provider's wire format.

Errors, garbage and raw bodies are handled here; ``structured`` becomes a tool call or JSON
content depending on the request; text and tool calls go to the per-kind renderers.
"""

from __future__ import annotations

from tests.fakes.wire import Reply, Request
from tests.fakes.wire_gemini import gemini_error, render_gemini
from tests.fakes.wire_http import Rendered, json_body
from tests.fakes.wire_openai import openai_error, render_openai


class Renderer:
    def __init__(self, kind: str, default_model: str) -> None:
        self.kind = kind
        self.default_model = default_model

    def render(self, reply: Reply, req: Request) -> Rendered:
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
                body = gemini_error(reply)
                if reply.action == "auth":
                    status = 400  # Gemini answers a bad API key with 400 API_KEY_INVALID
            else:
                body = openai_error(reply)
            return json_body(status, body, headers)
        if reply.action == "garbage":
            return json_body(reply.status, b"<html>oops", headers)
        if reply.action == "raw":
            body = reply.body if isinstance(reply.body, bytes) else str(reply.body).encode()
            return Rendered(
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
        if reply.action not in ("text", "tool_call", "tool_calls"):
            raise ValueError(f"cannot render {reply.action!r}")
        if self.kind == "gemini":
            return render_gemini(reply, req, headers, self.default_model)
        return render_openai(reply, req, headers, self.default_model)

