"""OpenAI-compatible wire format of the fake provider (ChatOpenAI, ChatGroq, ChatTogether).

Errors are ``{"error": {message, type, code}}`` bodies; answers are ``chat.completion``
JSON or ``chat.completion.chunk`` SSE streams ending in ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.fakes.wire import Reply, Request
from tests.fakes.wire_http import Rendered, fmt_seconds, json_body, split_text, sse

OPENAI_ERROR_TYPE = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_denied", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def openai_error(reply: Reply) -> Any:
    if reply.body is not None:
        return reply.body
    if reply.action == "rate_limit":
        wait = (
            f" Please try again in {fmt_seconds(reply.retry_after)}."
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
    etype, code = OPENAI_ERROR_TYPE.get(
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


def render_openai(reply: Reply, req: Request, headers: dict[str, str], default_model: str) -> Rendered:
    model = req.model or default_model
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    usage = {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }
    groq = "/openai/v1/" in req.path
    calls = [(reply.tool_name, json.dumps(reply.args or {}))] if reply.action == "tool_call" else list(reply.calls)
    call_ids = [f"call_{uuid.uuid4().hex[:20]}" for _ in calls]
    finish = "tool_calls" if calls else "stop"
    if not req.stream:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
        if calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                for call_id, (name, arguments) in zip(call_ids, calls, strict=True)
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
        return json_body(200, body, headers)

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
    if calls:
        if reply.content:
            chunks.append(chunk({"role": "assistant", "content": reply.content}))
        for index, (call_id, (name, arguments)) in enumerate(zip(call_ids, calls, strict=True)):
            head = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            chunks.append(chunk({"role": "assistant", "content": None, "tool_calls": [head]}))
            for piece in split_text(arguments):
                chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    else:
        chunks.append(chunk({"role": "assistant", "content": ""}))
        for piece in split_text(reply.content):
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
    events = [sse(c) for c in chunks] + [sse("[DONE]")]
    return Rendered(
        200,
        {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            **headers,
        },
        events=events,
    )
