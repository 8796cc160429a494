"""Gemini wire format of the fake provider (ChatGoogleGenerativeAI).

Errors are ``{"error": {code, message, status[, details]}}`` bodies (a rate limit carries
QuotaFailure / RetryInfo details); answers are ``generateContent`` JSON or
``streamGenerateContent`` SSE chunks with cumulative ``usageMetadata``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.fakes.wire import Reply, Request
from tests.fakes.wire_http import Rendered, fmt_seconds, json_body, split_text, sse

GEMINI_STATUS = {
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


def gemini_error(reply: Reply) -> Any:
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
                    "retryDelay": fmt_seconds(reply.retry_after),
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
            "status": GEMINI_STATUS.get(status, "UNKNOWN"),
        }
    }


def render_gemini(reply: Reply, req: Request, headers: dict[str, str], default_model: str) -> Rendered:
    model = req.model or default_model
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
    calls = [(reply.tool_name, reply.args or {})] if reply.action == "tool_call" else [
        (name, json.loads(args)) for name, args in reply.calls]
    if calls:
        text = [{"text": reply.content}] if reply.content else []
        part_lists = [[*text, *({"functionCall": {"name": name, "args": args}} for name, args in calls)]]
    else:
        part_lists = [[{"text": piece}] for piece in split_text(reply.content)]
    if not req.stream:
        parts = part_lists[0] if calls else [{"text": reply.content}]
        return json_body(200, response(parts, c, True), headers)
    events = []
    n = len(part_lists)
    for i, pl in enumerate(part_lists):
        # Gemini reports cumulative usage on every chunk (LangChain subtracts).
        events.append(sse(response(pl, round(c * (i + 1) / n), i == n - 1)))
    return Rendered(200, {"content-type": "text/event-stream", **headers}, events=events)
