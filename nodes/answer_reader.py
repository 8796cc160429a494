"""One tolerant reader for every channel of an answer: tool-call arguments, ``invalid_tool_calls``
(arguments LangChain could not parse), calls written into the text (``{"name": ..., "parameters":
...}``, ``<function=X>{...}</function>``, fenced JSON) and plain prose.

Each channel becomes candidate texts for the schema's tolerant text parser (``nodes/parsing.py``,
``nodes/parsing_review.py``), so every channel gets the same mapping: ids by position, enum
synonyms, ``Task N:`` prose. Before that, call envelopes and wrapper keys are unwrapped
(``{"CodeBatch": {...}}``, ``{"properties": {...}}``), double-encoded or Python-literal arguments
decoded, and several calls (one per task, or bare items) merged into one answer. Pure functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, get_origin

from langchain_core.messages import AIMessage
from pydantic import BaseModel

from free_llm_agent.nodes.json_text import extract_json, iter_json
from free_llm_agent.nodes.parsing import ParseError, strip_reasoning
from free_llm_agent.nodes.schemas import CodeBatch, Review

__all__ = ["candidates", "message_text", "read_answer"]

T = TypeVar("T", bound=BaseModel)

_ARGS = ("parameters", "arguments", "args", "input", "tool_input", "params", "function")
_WRAPPERS = frozenset({*_ARGS, "properties", "codebatch", "code_batch", "review", "plan", "codeitem", "code_item",
                       "answer", "output", "result", "response", "data"})
_META = frozenset({"name", "type", "id", "call_id", "index", "title", "description", "required", "$schema",
                   "additionalproperties", "tool", "tool_name", "function_name"})
_LISTS = frozenset({"items", "tasks", "steps", "plan", "verdicts", "results", "reviews", "codes", "code_items",
                    "batch", "subtasks"})


def message_text(message: AIMessage) -> str:
    """The text of ``message`` (content parts joined)."""
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)


def _decode(value: Any) -> Any:
    """A string holding JSON or a Python literal (double-encoded arguments) as that value."""
    for _ in range(3):
        if not isinstance(value, str):
            return value
        head = value.strip()[:1]
        if head == '"':
            try:
                value = json.loads(value)
                continue
            except ValueError:
                return value
        if head not in ("{", "["):
            return value
        found = extract_json(value)
        return value if found is None else found
    return value


def _low(value: dict[Any, Any]) -> dict[str, Any]:
    return {str(k).strip().lower(): v for k, v in value.items()}


def _unwrap(value: Any, names: frozenset[str]) -> Any:
    """``value`` without call envelopes and wrapper keys, nested JSON strings decoded."""
    for _ in range(8):
        value = _decode(value)
        if not isinstance(value, dict):
            break
        low = _low(value)
        rest = [k for k in low if k not in _META]
        if len(rest) == 1 and (rest[0] in _WRAPPERS or rest[0] in names):
            inner = _decode(low[rest[0]])
            if isinstance(inner, dict | list):
                value = inner
                continue
        break
    if isinstance(value, dict):  # {"items": "[{...}]"}, {"items": ["{...}", ...]}
        value = {k: _decode_list(v) if str(k).strip().lower() in _LISTS else v for k, v in value.items()}
    return _decode_list(value) if isinstance(value, list) else value


def _decode_list(value: Any) -> Any:
    value = _decode(value)
    if isinstance(value, list):
        return [_decode(v) if isinstance(v, str) and v.strip()[:1] == "{" else v for v in value]
    return value


def _is_envelope(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    keys = set(_low(value))
    return bool(keys & set(_ARGS)) and keys <= {*_META, *_ARGS}


def _payloads(values: Iterable[Any], names: frozenset[str]) -> list[Any]:
    """Each call's arguments, unwrapped; a list of call envelopes counts as its calls."""
    out: list[Any] = []
    for value in values:
        value = _decode(value)
        if value in (None, "", {}, []):
            continue
        if isinstance(value, list) and all(_is_envelope(v) for v in value):
            out += [p for v in value if (p := _unwrap(v, names)) not in (None, "", {}, [])]
        else:
            out.append(_unwrap(value, names))
    return out


def _list_field(schema: type[BaseModel]) -> str:
    return next((n for n, f in schema.model_fields.items() if get_origin(f.annotation) is list), "items")


def _merge(payloads: list[Any], schema: type[BaseModel]) -> Any:
    """One answer from several calls: their lists joined, bare items (a ``CodeItem``, a ``Verdict``, a
    plan step) appended, top-level fields (``decision``) from the first call that has them."""
    if len(payloads) == 1:
        return payloads[0]
    key, fields = _list_field(schema), set(schema.model_fields)
    items: list[Any] = []
    extra: dict[str, Any] = {}
    for payload in payloads:
        if isinstance(payload, list):
            items += payload
            continue
        if not isinstance(payload, dict):
            items.append(payload)
            continue
        lists = [v for v in payload.values() if isinstance(v, list)]
        scalars = {str(k): v for k, v in payload.items() if not isinstance(v, list)}
        if len(lists) == 1 or (not lists and set(_low(payload)) <= fields):
            items += lists[0] if lists else []
            extra = {**scalars, **extra}
        else:
            items.append(payload)
    return {**extra, key: items}


def _holds_list(value: Any) -> bool:
    """A whole answer (a list, or an object holding one), not a bare item: several of them in the
    text are an answer and the objects nested in it (``iter_json`` also yields those of a cut-off one)."""
    return isinstance(value, list) or (isinstance(value, dict) and any(isinstance(v, list) for v in value.values()))


def _jsonable(value: Any) -> Any:
    return sorted(value, key=str) if isinstance(value, set | frozenset) else str(value)


def _dump(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=_jsonable)


def _names(schema: type[BaseModel]) -> frozenset[str]:
    return frozenset({schema.__name__.lower(), _list_field(schema)} - {"items", "tasks", "verdicts"})


def candidates(message: AIMessage, schema: type[BaseModel]) -> list[str]:
    """Texts the schema's parser should try, best channel first: the tool calls (valid and invalid)
    merged, the content as it is, the calls written into the content merged."""
    names = _names(schema)
    out: list[str] = []
    args: list[Any] = [c.get("args") for c in message.tool_calls or []]
    args += [c.get("args") for c in message.invalid_tool_calls or []]
    if payloads := _payloads(args, names):
        out.append(_dump(_merge(payloads, schema)))
    text = message_text(message)
    if text.strip():
        out.append(text)
        seen: dict[str, Any] = {}
        for value, _ in iter_json(strip_reasoning(text)):
            seen.setdefault(json.dumps(value, sort_keys=True, default=_jsonable), value)
        values = list(seen.values())
        payloads = _payloads(values, names)
        if payloads and (payloads != values or (len(values) > 1 and not any(map(_holds_list, values)))):
            out.append(_dump(_merge(payloads, schema)))
    return list(dict.fromkeys(out))


def _coverage(result: BaseModel) -> int:
    field = _list_field(type(result))
    value = getattr(result, field, None)
    return len(value) if isinstance(value, list) else 0


def read_answer(message: AIMessage, schema: type[T], parse: Callable[[str], T]) -> T:
    """The answer in ``message``, from whichever channel covers the most (the first on a tie); raises
    the first channel's :class:`ParseError` when none holds anything usable."""
    best: T | None = None
    first_error: ParseError | None = None
    read: list[T] = []
    for text in candidates(message, schema):
        try:
            result = parse(text)
        except ParseError as exc:
            first_error = first_error or exc
            continue
        read.append(result)
        if best is None or _coverage(result) > _coverage(best):
            best = result
    if best is not None:
        return _with_items_from(best, read) if schema in (CodeBatch, Review) else best
    raise first_error or ParseError(f"a {schema.__name__} answer", message_text(message))


def _with_items_from(best: T, read: list[T]) -> T:
    """``best`` plus the items only other channels hold (the tool call has task 1's code or verdict, the
    text tasks 2 and 3): a task gets "no code", or is judged by its exit status, only when no channel
    has anything for it. The first channel that covers a task wins it."""
    field = _list_field(type(best))
    items = list(getattr(best, field, []))
    seen = {item.task_id for item in items}
    for other in read:
        for item in getattr(other, field, []):
            if item.task_id not in seen:
                items.append(item)
                seen.add(item.task_id)
    return best.model_copy(update={field: items}) if len(items) > _coverage(best) else best
