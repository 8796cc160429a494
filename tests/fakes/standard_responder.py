"""Answers LangChain's standard chat-model tests (``langchain-tests``) the way a good model would.

A ``FakeProvider`` responder for ``tests/test_standard_suites.py``. The suites ask real
questions; this reads each request like a model would:

* tools declared and the last message is not a tool result: call the forced tool, else the
  tool the prompt names, else the first one; arguments from the tool's JSON schema and the
  prompt (``magic_function(3)`` -> ``{"input": 3}``, ``What is 3 + 4`` -> ``{"a": 3, "b": 4}``,
  a quoted name -> that name, a joke schema -> a joke);
* JSON asked for (``response_format``): an object for the schema, or a joke for JSON mode;
* otherwise a short text answer, cut at the first stop sequence like a real model's.

Both wire kinds are read (OpenAI-compatible and Gemini). Token counts are rough
(characters / 4) but consistent, so usage metadata adds up.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fakes.provider_server import Reply, Request

JOKE = {"setup": "Why don't cats play poker in the jungle?", "punchline": "Too many cheetahs."}
HAIKUS = (
    "Morning light on snow\nA sparrow shakes the branches\nSilence falls again\n\n"
    "Old pond in the rain\nCircles meet and disappear\nThe frog does not care"
)
# Values a model would pick for well-known argument names when the prompt does not say.
_BY_ARG = {
    "location": "San Francisco, CA",
    "answer_style": "pirate",
    "description": "a technology company",
    "fav_color": "purple",
}


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


# ------------------------------------------------------------------------------- request reading


def _tools(req: Request) -> list[tuple[str, dict[str, Any]]]:
    """(name, JSON schema of the arguments) of every declared tool, in order."""
    body = req.json or {}
    out: list[tuple[str, dict[str, Any]]] = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        if req.kind == "gemini":
            for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
                schema = decl.get("parametersJsonSchema") or decl.get("parameters") or {}
                out.append((str(decl.get("name")), _lower_types(schema)))
        else:
            fn = tool.get("function") or {}
            out.append((str(fn.get("name")), fn.get("parameters") or {}))
    return out


def _lower_types(schema: Any) -> Any:
    """Gemini's OpenAPI schemas spell types in capitals (``STRING``)."""
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


def _last_is_tool_result(req: Request) -> bool:
    body = req.json or {}
    if req.kind == "gemini":
        contents = body.get("contents") or []
        parts = (contents[-1].get("parts") or []) if contents else []
        return any(isinstance(p, dict) and ("functionResponse" in p or "function_response" in p) for p in parts)
    messages = body.get("messages") or []
    return bool(messages) and messages[-1].get("role") == "tool"


def _last_user_text(req: Request) -> str:
    body = req.json or {}
    if req.kind == "gemini":
        users = [c for c in body.get("contents") or [] if c.get("role", "user") == "user"]
        return "\n".join(p.get("text", "") for p in (users[-1].get("parts") or [])) if users else ""
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    if not users:
        return ""
    content = users[-1].get("content")
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def _stop(req: Request) -> list[str]:
    body = req.json or {}
    stop = (body.get("generationConfig") or {}).get("stopSequences") if req.kind == "gemini" else body.get("stop")
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop or [] if isinstance(s, str) and s]


def _json_schema(req: Request) -> dict[str, Any] | None:
    """The schema of a JSON-schema answer (None for plain JSON mode)."""
    body = req.json or {}
    if req.kind == "gemini":
        cfg = body.get("generationConfig") or {}
        schema = cfg.get("responseJsonSchema") or cfg.get("responseSchema")
        return _lower_types(schema) if isinstance(schema, dict) else None
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
    return schema if isinstance(schema, dict) else None


# ------------------------------------------------------------------------------- answers


def _value(name: str, prop: dict[str, Any], prompt: str, numbers: list[int]) -> Any:
    kind = prop.get("type")
    if kind is None and isinstance(prop.get("anyOf"), list):  # Optional[...]: the non-null branch
        kind = next((p.get("type") for p in prop["anyOf"] if p.get("type") != "null"), "string")
    if kind in ("integer", "number"):
        return numbers.pop(0) if numbers else 1
    if kind == "boolean":
        return True
    if name in JOKE:
        return JOKE[name]
    quoted = re.findall(r"'([^']+)'", prompt)
    if name.endswith("name") and quoted:
        return quoted[0]
    return _BY_ARG.get(name, "example")


def _fill(schema: dict[str, Any], prompt: str) -> dict[str, Any]:
    """An object for ``schema``: numbers from the prompt, jokes for joke fields, names from quotes."""
    numbers = [int(n) for n in re.findall(r"-?\d+", prompt)]
    props: dict[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or props)
    skip_punchline = "no punchline" in prompt.lower()
    return {
        name: _value(name, prop, prompt, numbers)
        for name, prop in props.items()
        if not (name == "punchline" and skip_punchline and name not in required)
    }


def _pick_tool(req: Request, tools: list[tuple[str, dict[str, Any]]], prompt: str) -> tuple[str, dict[str, Any]]:
    forced = req.forced_tool
    named = [t for t in tools if forced == t[0]] or [t for t in tools if re.search(rf"\b{re.escape(t[0])}\b", prompt)]
    return (named or tools)[0]


def _text_answer(prompt: str) -> str:
    low = prompt.lower()
    if "haiku" in low:
        return HAIKUS
    if "how are you" in low:
        return "I'm doing well, thank you! How can I help you today?"
    if "joke" in low:
        return f"{JOKE['setup']} {JOKE['punchline']}"
    if any(w in low for w in ("describe", "description", "summarize", "title")):
        return "A short description of the attached content."
    if "weather" in low or "result" in low:
        return "The answer is ready: the tool reported its result."
    return "Hello! How are you doing today? How can I help you?"


def respond(req: Request) -> Reply:
    """The standard suites' questions, answered."""
    prompt = _last_user_text(req)
    tools = _tools(req)
    required = req.forced_tool or (req.json or {}).get("tool_choice") in ("required", "any")
    if tools and (required or not _last_is_tool_result(req)):
        name, schema = _pick_tool(req, tools, prompt)
        args = _fill(schema, prompt)
        return Reply.tool_call(name, args, prompt_tokens=_tokens(req.text), completion_tokens=_tokens(json.dumps(args)))
    if req.wants_json:
        wanted = _json_schema(req)
        obj = _fill(wanted, prompt) if wanted else dict(JOKE)
        return Reply.json_content(obj, prompt_tokens=_tokens(req.text), completion_tokens=_tokens(json.dumps(obj)))
    answer = _text_answer(prompt)
    for stop in _stop(req):
        answer = answer.split(stop, 1)[0]
    return Reply.text(answer, prompt_tokens=_tokens(req.text), completion_tokens=_tokens(answer))
