"""Tolerant parsers turning raw LLM text (prose, markdown lists and tables, fenced almost-JSON,
python literals, thinking blocks) into the schemas of ``nodes/schemas.py``, for models that
ignore the structured-output tool. Pure functions: no I/O, no state, no prompts. Plans and code
here, verdicts in :mod:`nodes.parsing_review`, the helpers shared by both here."""

from __future__ import annotations

import html
import itertools
import re
import textwrap
from collections.abc import Sequence
from typing import Any, Literal

import yaml

from free_llm_agent.nodes.json_text import FENCE, extract_json, iter_json
from free_llm_agent.nodes.schemas import CodeBatch, CodeItem, Plan

__all__ = ["ParseError", "extract_json", "parse_code_batch", "parse_plan", "strip_reasoning"]

Language = Literal["python", "shell"]
Entry = tuple[int | None, str, str]  # (task id, verdict word | language label, hint | code)


class ParseError(ValueError):
    """The text holds nothing usable for the requested schema."""

    def __init__(self, expected: str, text: str) -> None:
        head = text.strip()
        super().__init__(f"expected {expected}; got {head[:160] + '...' * (len(head) > 160)!r}")
        self.expected, self.text = expected, text


# --------------------------------------------------------------------------------- helpers
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.S | re.I)
_LONE_CLOSE = re.compile(r"^.*</(?:think|thinking|reasoning)>", re.S | re.I)


def strip_reasoning(text: str) -> str:
    """The answer without ``<think>…</think>`` blocks (Qwen, DeepSeek R1 and other thinking models),
    and without everything before a lone closing ``</think>`` (R1 distills through Ollama drop the
    opening tag): that reasoning is never read as code or verdicts."""
    return _LONE_CLOSE.sub("", _THINK.sub("", text)).strip()


_PREFIX = (  # indent, "| " (table), "### ", "**", then a bullet or "1." / "1)" / "(1)"
    r"^(?P<indent>[ \t]*)(?:\|[ \t]*)?(?:#{1,6}[ \t]*)?(?:\*\*|__)?"
    r"(?:(?P<bullet>[-*•+])[ \t]+|(?P<num>\(?\d+[.)])[ \t]+)?"
)
_TASK_N = r"(?:\*\*|__)?\b(?:task|step)[ \t]*#?[ \t]*(?P<n>\d+)"
_LABEL = rf"{_TASK_N}[ \t]*(?:(?:\*\*|__)[ \t]*[:.)\-–—]?|[:.)\-–—][ \t]*(?:\*\*|__)?)"
_ITEM_RE = re.compile(rf"{_PREFIX}(?P<label>{_LABEL})?[ \t]*(?P<body>.*)$", re.I)
_MENTION_RE = re.compile(rf"{_TASK_N}\b", re.I)
_TASK_KEY_RE = re.compile(r"^(?:task|step)?[ _-]*#?\d+$")
_ID_KEYS = ("task_id", "taskid", "task id", "id", "task", "task_no", "number")
_BOLD = re.compile(  # **bold** pairs, then stray ** at a word's edge; 2**10 is left alone
    r"(?<!\w)\*\*(?=\S)(.+?)(?<=\S)\*\*(?!\w)|(?:^|(?<=\s))\*\*|\*\*(?=\s|$)"
)


def _lower_keys(value: dict[Any, Any]) -> dict[str, Any]:
    return {str(k).strip().lower(): v for k, v in value.items()}


def _first(d: dict[str, Any], keys: Sequence[str]) -> Any:
    return next((d[k] for k in keys if d.get(k) is not None), None)


def _as_id(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value) if float(value).is_integer() else None
    m = re.match(r"\s*(?:task|step)?[\s_-]*#?\s*(\d+)\b", value, re.I) if isinstance(value, str) else None
    return int(m[1]) if m else None


def _lines(text: str) -> list[str]:
    """Lines, with ``Task1: a | Task2: b. Task3 ...`` split before each consecutively
    numbered label that follows one of ``| ; . , :``."""
    out: list[str] = []
    for line in text.splitlines():
        starts: list[int] = []
        last = -1
        for m in _MENTION_RE.finditer(line):
            before = line[: m.start()].rstrip(" \t*_")
            if not starts or (int(m["n"]) == last + 1 and before[-1:] in ("|", ";", ".", ",", ":")):
                starts, last = [*starts, m.start()], int(m["n"])
        bounds = [0, *starts, len(line)] if len(starts) > 1 else [0, len(line)]
        out += [line[a:b] for a, b in itertools.pairwise(bounds)]
    return out


_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """(header cells lower-cased, data rows) of the first markdown table in ``text``."""
    header: list[str] = []
    rows: list[list[str]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip().startswith("|"):
            if rows:
                break
            continue
        if _TABLE_SEP.match(line):
            continue
        cells = [_BOLD.sub(r"\1", c).strip() for c in line.strip().strip("|").split("|")]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if not header and not rows and _TABLE_SEP.match(nxt):
            header = [c.lower() for c in cells]
        else:
            rows.append(cells)
    return header, rows


# ------------------------------------------------------------------------------------ plan
_PLAN_KEYS = ("tasks", "plan", "steps", "subtasks", "todo", "items")
_TEXT_KEYS = ("description", "task", "text", "title", "name", "step", "content", "summary")


def _clean_item(text: str) -> str:
    m = _ITEM_RE.match(text.strip())
    s = _BOLD.sub(r"\1", m["body"] if m else text)  # no "1." / "- " / "Task 1:" / **bold**
    s = " ".join(s.split()).strip(" \t|;,")
    while len(s) > 2 and s[0] == s[-1] and s[0] in "\"'*_`":  # wrapping quotes/emphasis
        s = s[1:-1].strip()
    return s


def _json_plan(value: Any) -> list[str]:
    if isinstance(value, str):
        return _text_plan(value) or [value]
    if isinstance(value, list | tuple):
        texts = (_first(_lower_keys(v), _TEXT_KEYS) if isinstance(v, dict) else v for v in value)
        return [t for t in texts if isinstance(t, str)]
    low = _lower_keys(value) if isinstance(value, dict) else {}
    if (inner := _first(low, _PLAN_KEYS)) is not None:
        return _json_plan(inner)
    if low and all(_TASK_KEY_RE.match(k) for k in low):  # {"Task1": "...", "Task2": "..."}
        return _json_plan(list(low.values()))
    return []


def _text_plan(text: str) -> list[str]:
    """Items of the outermost list: ``Task N:`` labels, else numbers, else bullets."""
    lines = _lines(text)
    found: list[tuple[str, int, str]] = []
    for i, line in enumerate(lines):
        m = _ITEM_RE.match(line)
        if m is None or not (m["label"] or m["num"] or m["bullet"]):
            continue
        body = m["body"]
        if not _clean_item(body):  # "**Task 1:**" alone: the text is on the next line
            nxt = next((ln for ln in lines[i + 1 :] if ln.strip()), "")
            nm = _ITEM_RE.match(nxt)
            body = "" if nm and (nm["label"] or nm["num"]) else nxt
        kind = "label" if m["label"] else "num" if m["num"] else "bullet"
        found.append((kind, len(m["indent"].expandtabs(4)), body))
    for kind in ("label", "num", "bullet"):
        if chosen := [(indent, body) for k, indent, body in found if k == kind]:
            top = min(indent for indent, _ in chosen)
            return [body for indent, body in chosen if indent == top]
    return []


def _table_plan(text: str) -> list[str]:
    """The task column of a markdown table: "Description"/"Task"/"Step"-like, not an id column."""
    header, rows = _table(text)
    if not rows:
        return []
    width = max(map(len, rows))
    def textual(col: int) -> bool:
        return any(_as_id(r[col]) is None and r[col] for r in rows if col < len(r))
    named = [i for i, h in enumerate(header) if h in ("description", "task description", "what", "action")]
    named += [i for i, h in enumerate(header) if h in ("task", "tasks", "step", "steps", "title") and textual(i)]
    cols = named or [i for i in range(width) if textual(i)]
    if not cols:
        return []
    col = cols[0]
    return [r[col] for r in rows if col < len(r) and r[col]]


def parse_plan(text: str, *, min_tasks: int = 1, max_tasks: int = 5) -> Plan:
    """Read a plan from JSON, ``Task1: a | Task2: b``, numbered or bulleted lists.

    Fenced JSON and JSON objects win over markdown lists, which win over bare JSON
    arrays met in prose. Items are cleaned and de-duplicated, the first ``max_tasks``
    kept; fewer than ``min_tasks`` raises :class:`ParseError`.
    """
    text = strip_reasoning(text)
    values = list(iter_json(text))
    strong = [_json_plan(v) for v, fenced in values if fenced or isinstance(v, dict)]
    weak = [_json_plan(v) for v, fenced in values if not (fenced or isinstance(v, dict))]
    marked = [[body.strip() for attrs, body in tagged(text) if attrs["tag"] in ("task", "step", "item")],
              *map(_json_plan, yaml_values(text))]  # <task id="1">…</task>; tasks: / - task: … in YAML
    for raw in [*strong, *marked, _table_plan(text), _text_plan(text), *weak]:
        firsts: dict[str, str] = {}  # de-duplicated, case-insensitively, first one kept
        for task in filter(None, map(_clean_item, raw)):
            firsts.setdefault(task.casefold(), task)
        if (tasks := list(firsts.values())) and len(tasks) >= min_tasks:
            return Plan(tasks=tasks[:max_tasks])
    if min_tasks <= 0:
        return Plan(tasks=[])
    expected = f"a plan of at least {min_tasks} task(s): JSON, 'Task1: ... | Task2: ...' or a list"
    raise ParseError(expected, text)


# ------------------------------------------------------------------------------------ code
_LANGS: dict[str, Language] = {
    "python": "python", "py": "python", "python3": "python",
    "bash": "shell", "sh": "shell", "shell": "shell", "zsh": "shell", "console": "shell",
}  # fmt: skip
_SHELL_RE = re.compile(
    r"^(?:\$\s*)?(?:sudo\s+)?(?:pip3?|apt(?:-get)?|brew|conda|npm|curl|wget|ls|cd|mkdir|"
    r"echo|export|git|rm|cp|mv|chmod|tar|unzip|grep|touch|cat|python3?\s+[\w./-]+\.py)"
    r"(?=\s|$)(?!\s*(?:=|\(|\[|\.|:|[+\-*/%]=))"
)
_COMMENT_ID = re.compile(rf"\s*(?:#|//)\s*{_TASK_N}\b", re.I)
# "# Task 2", "# --- Task 2 ---", "// Task 3:", "## Step 1" as a whole line inside a fence
_MARKER_LINE = re.compile(r"^[ \t]*(?:#+|//+|--)[ \t#/*=\-]*(?:task|step)[ \t]*#?[ \t]*(\d+)\b.*$", re.I | re.M)
_HEADING_RE = re.compile(rf"{_PREFIX}(?:(?:\*\*|__)?[\w' ]{{0,30}}?\bfor[ \t]+)?{_TASK_N}\b", re.I | re.M)


def _guess_language(code: str) -> Language:
    lines = [ln.strip() for ln in code.splitlines() if ln.strip()]
    if lines and lines[0].startswith("#!"):
        return "python" if "python" in lines[0] else "shell"
    first = next((ln for ln in lines if not ln.startswith("#")), "")
    return "shell" if _SHELL_RE.match(first) else "python"


def _json_code(value: Any) -> list[Entry]:
    if isinstance(value, list):
        return [entry for item in value for entry in _json_code(item)]
    low = _lower_keys(value) if isinstance(value, dict) else {}
    if isinstance(code := _first(low, ("code", "source", "script")), str):
        lang = _first(low, ("language", "lang"))
        return [(_as_id(_first(low, _ID_KEYS)), lang if isinstance(lang, str) else "", code)]
    inner = _first(low, ("items", "code_items", "codes", "batch", "results", "tasks"))
    return [] if inner is None else _json_code(inner)


def _markdown_code(text: str, task_ids: Sequence[int]) -> list[Entry]:
    """Code fences, each owned by the nearest ``Task N`` heading above it, else by a
    ``# Task N`` comment on its first line, else by None."""
    fences = list(FENCE.finditer(text))
    headings = [
        (h.start(), int(h["n"]))
        for h in _HEADING_RE.finditer(text)
        if not any(f.start() <= h.start() < f.end() for f in fences)
    ]
    entries: list[Entry] = []
    for f in fences:
        if not f["lang"] or f["lang"].lower() in _LANGS:
            if parts := _split_by_markers(f["body"]):
                entries += [(tid, f["lang"], code) for tid, code in parts]
                continue
            owner = next((n for pos, n in reversed(headings) if pos < f.start()), None)
            if owner is None and (c := _COMMENT_ID.match(f["body"])):
                owner = int(c["n"])
            entries.append((owner, f["lang"], f["body"]))
    if len(set(task_ids)) == 1 and all(tid != task_ids[0] for tid, _, _ in entries):
        lone = [(task_ids[0], lang, code) for tid, lang, code in entries if tid is None]
        entries += lone[:1]  # the first unheaded fence
    return entries


_TAG = re.compile(r"<(?P<tag>task|step|code|script|item|verdict|result)\b(?P<attrs>[^>]*)>(?P<body>.*?)</(?P=tag)\s*>",
                  re.I | re.S)
_ATTR = re.compile(r"""(?P<key>[\w-]+)\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s>]+))""")
_YAML_START = re.compile(r"^(?:items|tasks|steps|plan|code_items|verdicts)\s*:\s*$|^-\s+task(?:_id)?\s*:",
                         re.I | re.M)


def tagged(text: str) -> list[tuple[dict[str, str], str]]:
    """``<task id="1">…</task>``, ``<code task="2">…</code>``, ``<verdict id="2">done</verdict>``:
    (attributes lower-cased, body with entities decoded), in order."""
    out = []
    for m in _TAG.finditer(text):
        attrs = {a["key"].lower(): a["dq"] if a["dq"] is not None else a["sq"] if a["sq"] is not None else a["bare"]
                 for a in _ATTR.finditer(m["attrs"])}
        out.append(({"tag": m["tag"].lower(), **attrs}, html.unescape(m["body"])))
    return out


def yaml_values(text: str) -> list[Any]:
    """YAML answers (```yaml fences, or a whole answer starting ``items:``) loaded; [] when none."""
    chunks = [f["body"] for f in FENCE.finditer(text) if f["lang"].lower() in ("yaml", "yml")]
    if not chunks and (start := _YAML_START.search(text)) is not None:
        chunks = [text[start.start() :]]
    values = []
    for chunk in chunks:
        try:
            value = yaml.safe_load(chunk)
        except yaml.YAMLError:
            continue
        if isinstance(value, dict | list):
            values.append(value)
    return values


def _tag_code(text: str) -> list[Entry]:
    entries: list[Entry] = []
    for attrs, body in tagged(text):
        if attrs["tag"] in ("task", "code", "script", "item"):
            tid = _as_id(_first(attrs, ("task_id", "task", "id", "number")))
            entries.append((tid, _first(attrs, ("language", "lang")) or "", body.strip("\n")))
    return entries


def _split_by_markers(body: str) -> list[tuple[int, str]]:
    """One fence holding several tasks' code, divided by ``# Task N`` marker comments: each part
    for its task (code before the first marker, imports say, goes before every part); [] when the
    fence names fewer than two tasks. The marker lines are dropped (``// Task 3`` is no python)."""
    marks = list(_MARKER_LINE.finditer(body))
    if len({int(m[1]) for m in marks}) < 2:
        return []
    head = body[: marks[0].start()].strip("\n")
    bounds = [*(m.start() for m in marks), len(body)]
    parts = [(int(m[1]), body[m.end() : b].strip("\n")) for m, b in zip(marks, bounds[1:], strict=True)]
    return [(tid, f"{head}\n{code}" if head.strip() else code) for tid, code in parts]


def _by_position(entries: list[Entry], task_ids: Sequence[int]) -> list[Entry]:
    """Entries whose ids do not name the batch's tasks, mapped by order: all of them when none
    matches and their count is the batch's (unlabeled fences, ids renumbered from 1 for a later
    batch); else the unlabeled ones onto the tasks still uncovered, when their counts agree."""
    ids = list(dict.fromkeys(task_ids))
    if not entries or not ids:
        return entries
    if not any(tid in ids for tid, _, _ in entries) and len(entries) == len(ids):
        return [(tid, label, body) for tid, (_, label, body) in zip(ids, entries, strict=True)]
    loose = [i for i, (tid, _, _) in enumerate(entries) if tid is None]
    uncovered = [tid for tid in ids if tid not in {e[0] for e in entries}]
    if loose and len(loose) == len(uncovered):
        out = list(entries)
        for i, tid in zip(loose, uncovered, strict=True):
            out[i] = (tid, *entries[i][1:])
        return out
    return entries


def parse_code_batch(text: str, task_ids: Sequence[int]) -> CodeBatch:
    """Read code from JSON items, ``### Task N`` + fence sections, or a lone fence.

    Items for ids not in ``task_ids`` are dropped, missing tasks are simply absent, the
    first code for a task wins; items follow ``task_ids`` order. Code without ids, or with
    ids that name none of the batch's tasks, maps by order when the counts match. With a single task id,
    JSON without ids counts when it is fenced or the whole answer. Raises
    :class:`ParseError` only when the text holds no code at all.
    """
    text = strip_reasoning(text)
    lone = task_ids[0] if len(set(task_ids)) == 1 else None
    bare = text.lstrip()[:1] in ("{", "[")
    no_code = FENCE.sub(lambda f: "" if f["lang"].lower() in _LANGS else f[0], text)
    found = (  # JSON inside ```python / ```bash fences is code, not an answer
        [(lone if tid is None and (fenced or bare) else tid, lang, code) for tid, lang, code in e]
        for e, fenced in ((_json_code(v), fenced) for v, fenced in iter_json(no_code))
    )
    entries = next((e for e in found if any(tid is not None for tid, _, _ in e)), None)
    if entries is None:  # <task id="1">…</task>, then YAML items, then markdown fences
        entries = _tag_code(text) or [e for v in yaml_values(text) for e in _json_code(v)] or None
    if entries is None:
        entries = _markdown_code(text, task_ids)
    if not entries:
        raise ParseError("code as JSON items or ```python / ```bash fenced blocks", text)
    entries = _by_position(entries, task_ids)
    items: dict[int, CodeItem] = {}
    for tid, label, raw in entries:
        inner = FENCE.match(raw.strip())
        if inner and not raw.strip()[inner.end() :].strip():  # JSON code wrapped in a fence
            label, raw = label or inner["lang"], inner["body"]
        code = textwrap.dedent(raw).strip()
        if tid is not None and tid in task_ids and tid not in items and code:
            language = _LANGS.get(label.strip().lower()) or _guess_language(code)
            items[tid] = CodeItem(task_id=tid, language=language, code=code)
    return CodeBatch(items=[items[tid] for tid in dict.fromkeys(task_ids) if tid in items])
