"""Finding JSON in raw LLM text: fenced or bare objects/arrays, tolerating prose around
them, trailing commas, comments, smart quotes, python-literal style and JSON cut off by
``max_tokens`` (closed after its last complete value). Pure functions."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["FENCE", "extract_json", "iter_json"]

FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+#.-]*)[^\n]*\n"
    r"(?P<body>.*?)(?:\n?[ \t]*(?P=fence)[ \t]*$|\Z)",
    re.M | re.S,
)
_JSON_LANGS = frozenset({"", "json", "jsonc", "json5"})
_SMART = str.maketrans({"“": '"', "”": '"', "„": '"', "‟": '"', "‘": "'", "’": "'", "‚": "'"})
_STRINGS = r"""(?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\\n])*')|(?P<comment>//[^\n]*|/\*.*?\*/)"""
_BRACKETS = r"(?P<open>[\[{])|(?P<close>[\]}])"
_SCAN = re.compile(rf"{_STRINGS}|{_BRACKETS}", re.S)
_TOKEN = re.compile(rf"{_STRINGS}|(?P<word>[A-Za-z_]\w*)|{_BRACKETS}", re.S)
_OPEN = re.compile(r"[\[{]")
_CLOSERS = {"[": "]", "{": "}"}
_PY_WORDS = {"true": "True", "false": "False", "null": "None"}


def _span_ends(text: str, start: int) -> dict[int, int | None]:
    """End (None: unbalanced) of every bracketed span on the token stream from ``start``."""
    ends: dict[int, int | None] = {}
    stack: list[tuple[int, str]] = []
    for m in _SCAN.finditer(text, start):
        if m.lastgroup == "open":
            stack.append((m.start(), _CLOSERS[m.group()]))
        elif m.lastgroup == "close" and stack:
            if stack[-1][1] == m.group():
                ends[stack.pop()[0]] = m.end()
            else:  # a mismatch spoils every bracket still open
                ends.update((pos, None) for pos, _ in stack)
                stack = []
    ends.update((pos, None) for pos, _ in stack)
    return ends


def _clean(span: str, *, pythonic: bool) -> str:
    """Drop comments and trailing commas; with ``pythonic`` also map true/false/null."""
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(span):
        out.append(span[pos : m.start()])
        pos, token = m.end(), m.group()
        if m.lastgroup == "comment":
            continue
        if m.lastgroup == "close":  # remove a ',' right before the bracket
            last = next((i for i in range(len(out) - 1, -1, -1) if out[i].strip()), None)
            if last is not None and out[last].rstrip().endswith(","):
                out[last] = out[last].rstrip()[:-1]
        elif m.lastgroup == "word" and pythonic:
            token = _PY_WORDS.get(token, token)
        out.append(token)
    return "".join(out) + span[pos:]


def _load(span: str) -> Any | None:
    """``span`` as JSON, cleaned JSON, then a python literal; None unless a dict or list."""
    for attempt in (
        lambda: json.loads(span, strict=False),
        lambda: json.loads(_clean(span, pythonic=False), strict=False),
        lambda: ast.literal_eval(_clean(span, pythonic=True)),
    ):
        try:
            value = attempt()
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict | list):
            return value
    return None


def _close_truncated(span: str, tries: int = 40) -> Any | None:
    """A JSON value cut off mid-way (``max_tokens``), closed after its last complete string or
    bracket: ``{"tasks": ["a", "b", "c`` -> ``{"tasks": ["a", "b"]}``."""
    stack: list[str] = []
    cuts: list[tuple[int, tuple[str, ...]]] = []
    for m in _SCAN.finditer(span):
        if m.lastgroup == "open":
            stack.append(_CLOSERS[m.group()])
        elif m.lastgroup == "close":
            if not stack or stack[-1] != m.group():
                return None
            stack.pop()
            cuts.append((m.end(), tuple(stack)))
        elif m.lastgroup == "str":
            cuts.append((m.end(), tuple(stack)))
    for pos, still_open in reversed(cuts[-tries:]):
        if still_open and (value := _load(span[:pos] + "".join(reversed(still_open)))) is not None:
            return value
    return None


def iter_json(text: str) -> Iterator[tuple[Any, bool]]:
    """Every JSON object/array in ``text`` as ``(value, from_fence)``, fenced ones first; an
    unbalanced (cut off) one is closed after its last complete value."""
    fenced = [(m["body"], True) for m in FENCE.finditer(text) if m["lang"].lower() in _JSON_LANGS]
    for chunk, in_fence in [*fenced, (text, False)]:
        for variant in dict.fromkeys((chunk, chunk.translate(_SMART))):
            pos, ends = 0, dict[int, int | None]()
            closed_one = False
            while (m := _OPEN.search(variant, pos)) is not None:
                if m.start() not in ends:
                    ends.update(_span_ends(variant, m.start()))
                end = ends[m.start()]
                if end is None and not closed_one:  # the outermost unbalanced span: cut off?
                    closed_one = True
                    value = _close_truncated(variant[m.start() :])
                else:
                    value = None if end is None else _load(variant[m.start() : end])
                if value is not None:
                    yield value, in_fence
                pos = end or m.start() + 1


def extract_json(text: str) -> Any | None:
    """The first JSON object or array in ``text`` (```json fences first), else None.

    Tolerates prose around it, trailing commas, ``//`` and ``/* */`` comments, smart
    quotes and python-literal style (single quotes, ``True``/``None``).
    """
    return next((value for value, _ in iter_json(text)), None)
