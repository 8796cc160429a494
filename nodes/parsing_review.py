"""Tolerant parser for the judge's verdicts (``Review``): JSON, ``Task N: done - hint`` lines,
✅/❌ and yes/no lists by id or order, markdown tables, headings with ``Verdict:`` lines, and
blanket statements ("All tasks completed successfully."). Pure functions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from free_llm_agent.nodes.json_text import iter_json
from free_llm_agent.nodes.parsing import (
    _BOLD,
    _ID_KEYS,
    _PREFIX,
    _TASK_KEY_RE,
    _TASK_N,
    Entry,
    ParseError,
    _as_id,
    _by_position,
    _first,
    _lines,
    _lower_keys,
    _table,
    strip_reasoning,
    tagged,
    yaml_values,
)
from free_llm_agent.nodes.schemas import Review, Verdict

__all__ = ["parse_review"]

VerdictName = Literal["done", "retry", "failed"]
Decision = Literal["continue", "replan", "finish"]

# ---------------------------------------------------------------------------------- review
_VERDICTS: dict[str, VerdictName] = {
    "done": "done", "success": "done", "successful": "done", "succeeded": "done", "ok": "done",
    "okay": "done", "pass": "done", "passed": "done", "complete": "done", "completed": "done",
    "retry": "retry", "redo": "retry", "rerun": "retry", "fail": "failed", "failed": "failed",
    "failure": "failed", "error": "failed", "errored": "failed", "yes": "done", "achieved": "done",
    "no": "retry", "incomplete": "retry", "partial": "retry", "partially": "retry", "unsuccessful": "failed",
}  # fmt: skip
_MARKS = {"✅": " done ", "✔️": " done ", "✔": " done ", "✓": " done ", "☑️": " done ", "❌": " failed ",
          "✖️": " failed ", "✗": " failed ", "✘": " failed ", "⚠️": " retry ", "⚠": " retry ", "🔁": " retry "}
_MARK_RE = re.compile("|".join(map(re.escape, sorted(_MARKS, key=len, reverse=True))))
_LIST_LINE = re.compile(rf"{_PREFIX}(?P<rest>.*)$")
_LEAD_MARK = re.compile(rf"^\s*(?P<word>done|failed|retry)\s+{_TASK_N}\b(?P<rest>.*)$", re.I)
_FIELD_VERDICT = re.compile(r"^\W*(?:verdict|status|result|outcome)\W*(?P<rest>.*)$", re.I)
_BLANKET = re.compile(
    r"\b(?:all|every|each|both)\b(?:\s+(?:of\s+)?(?:the\s+)?(?:\w+\s+)?)?(?:tasks?|steps?)\b"
    r"(?:\s+\w+){0,3}?\s+(?:(?:were|was|have\s+been|has\s+been|are|is)\s+)?"
    r"(?:(?P<done>completed?|done|succeeded|successful(?:ly)?|passed|achieved|finished|ran\s+successfully)"
    r"|(?P<failed>failed))\b"
    r"|\b(?:everything|all)\s+(?:(?P<done2>worked|went\s+well|succeeded|(?:was|is)\s+(?:done|completed|successful))"
    r"|(?P<failed2>failed))\b",
    re.I,
)
_DECISIONS: dict[str, Decision] = {
    "continue": "continue", "proceed": "continue", "replan": "replan", "re-plan": "replan",
    "finish": "finish", "finished": "finish", "complete": "finish", "stop": "finish", "done": "finish",
    "completed": "finish", "end": "finish", "next": "continue", "go on": "continue", "re_plan": "replan",
}  # fmt: skip
_VERDICT_LINE = re.compile(rf"{_PREFIX}{_TASK_N}(?:[ \t]*\([^)\n]*\))?(?P<rest>.*)$", re.I)
_REST_RE = re.compile(
    r"^\W*(?:(?:is|was|has|been|status|verdict|result|needs|a|should)\b\W*)*"
    r"(?P<word>[A-Za-z]+)(?P<hint>.*)$",
    re.S,
)
_DECISION_RE = re.compile(
    r"\b(?:decision|next(?:[ _]step|[ _]action)?)\b\W*"
    r"(?P<word>re-?plan|continue|proceed|finish(?:ed)?|complete|stop)\b",
    re.I,
)


def _split_word(text: str) -> tuple[str, str]:
    """``"retry - use pandas"`` -> ``("retry", "use pandas")``."""
    m = _REST_RE.match(text)
    if m is None:
        return "", ""
    hint = _BOLD.sub(r"\1", m["hint"]).strip().lstrip("-–—:;,.)!*_| \t")
    hint = re.sub(r"^(?:because|since|reason:?)\s+", "", hint, flags=re.I).rstrip(" \t|;*")
    first, _, rest = hint.partition(" ")
    if m["word"].lower() in _VERDICTS and first.strip("*_:.,!").lower() in _VERDICTS:  # "✅ done": one verdict
        hint = rest.strip().lstrip("-–—:;,.)!*_| \t")
    return m["word"], hint if any(c.isalnum() for c in hint) else ""


def _verdict_entries(value: Any) -> list[Entry]:
    if isinstance(value, list):
        return [entry for item in value for entry in _verdict_entries(item)]
    low = _lower_keys(value) if isinstance(value, dict) else {}
    if (raw := _first(low, ("verdict", "status", "result", "outcome"))) is not None:
        word, extra = _split_word(str(raw))
        hint = _first(low, ("hint", "reason", "feedback", "comment", "fix", "note"))
        return [(_as_id(_first(low, _ID_KEYS)), word, extra if hint is None else str(hint))]
    entries: list[Entry] = []  # mapping form: {"1": "done", "task 2": {"verdict": "retry"}}
    for key, item in low.items():
        if _TASK_KEY_RE.match(key) and isinstance(item, dict | str):
            sub = _verdict_entries(item) if isinstance(item, dict) else [(None, *_split_word(item))]
            entries += [(_as_id(key), word, hint) for _, word, hint in sub]
    return entries


def _json_review(value: Any) -> tuple[list[Entry], Decision | None] | None:
    decision: Decision | None = None
    entries = value
    if isinstance(value, dict):
        low = _lower_keys(value)
        raw = _first(low, ("decision", "next", "next_action", "action"))
        decision = _DECISIONS.get(str(raw).strip().lower()) if raw is not None else None
        inner = _first(low, ("verdicts", "results", "reviews", "tasks", "items"))
        entries = value if inner is None else inner
    found = [e for e in _verdict_entries(entries) if e[1].lower() in _VERDICTS]
    return (found, decision) if found or decision else None


def _table_review(text: str) -> list[Entry]:
    """Rows of a verdict table: an id cell ("3", "Task 3"), a verdict cell, the rest as the hint."""
    _, rows = _table(_MARK_RE.sub(lambda m: _MARKS[m[0]], text))
    entries: list[Entry] = []
    for cells in rows:
        tid = next((_as_id(c) for c in cells if _as_id(c) is not None), None)
        words = [(i, *_split_word(c)) for i, c in enumerate(cells)]
        found = next(((i, w, h) for i, w, h in words if w.lower() in _VERDICTS), None)
        if tid is not None and found is not None:
            rest = [c for i, c in enumerate(cells) if i != found[0] and _as_id(c) is None and c]
            hint = " ".join([found[2], *rest]).strip()
            entries.append((tid, found[1], hint if hint.lower() not in ("none", "-", "n/a") else ""))
    return entries


def _prose_review(text: str) -> tuple[list[Entry], Decision | None]:
    """Verdicts from ``Task N: <verdict> [- hint]`` lines (else from list items in order, ``1. ✅``,
    ``- yes``), the decision from the other lines."""
    entries: list[Entry] = _table_review(text)
    listed: list[Entry] = []
    others: list[str] = []
    heading: int | None = None  # "### Task N" alone; its verdict on a later "Verdict: X" line
    for raw in _lines(text):
        marked = bool(_MARK_RE.match(raw.strip()))  # "✅ Task 1 — ..." / "✅ wrote the file"
        line = _MARK_RE.sub(lambda m: _MARKS[m[0]], raw)
        if marked and (flip := _LEAD_MARK.match(line)):
            line = f"Task {flip['n']}: {flip['word']} {flip['rest']}"
        m = _VERDICT_LINE.match(line)
        if m and not _split_word(m["rest"])[0] and not m["rest"].strip(" \t:*#_"):
            heading = int(m["n"])
            continue
        if heading is not None and (v := _FIELD_VERDICT.match(line)):
            word, hint = _split_word(v["rest"])
            if word.lower() in _VERDICTS:
                entries.append((heading, word, hint))
                heading = None
                continue
        word, hint = _split_word(m["rest"]) if m else ("", "")
        if m and word.lower() in _VERDICTS:
            entries.append((int(m["n"]), word, hint))
            continue
        item = _LIST_LINE.match(line)
        if item and (item["num"] or item["bullet"] or marked):
            word, hint = _split_word(item["rest"])
            if word.lower() in _VERDICTS:
                listed.append((None, word, hint))
                continue
        others.append(line)
    entries = entries or listed
    text = "\n".join(others)
    if m := _DECISION_RE.search(text):
        return entries, _DECISIONS.get(m["word"].lower(), "continue")
    if re.search(r"\bre-?plan", text, re.I):
        return entries, "replan"
    if re.search(r"\b(?:finish(?:ed)?|complete)\b", text, re.I):
        return entries, "finish"
    return entries, "continue" if re.search(r"\bcontinue\b", text, re.I) else None


_TAGGED = re.compile(r"<(verdict|result|task)\b[^>]*>.*?</\1\s*>", re.I | re.S)


def _tag_review(text: str) -> list[Entry]:
    """``<verdict id="2">done</verdict>``, ``<verdict task_id="2" status="failed">hint</verdict>``."""
    entries: list[Entry] = []
    for attrs, body in tagged(text):
        tid = _as_id(_first(attrs, ("task_id", "task", "id", "number")))
        said = _first(attrs, ("status", "verdict", "result", "outcome"))
        word, hint = (said, body.strip()) if said else _split_word(body.strip())
        if word.lower() in _VERDICTS:
            entries.append((tid, word, hint))
    return entries


def parse_review(text: str, task_ids: Sequence[int]) -> Review:
    """Read verdicts and the decision from JSON or ``Task N: done|retry - hint`` lines.

    Verdict synonyms (and ✅/❌, yes/no) are normalised; a blanket statement ("All tasks
    completed successfully.") applies to every task; verdicts without ids, or with ids that
    name none of the batch's tasks, map by order when the counts match; other unknown ids are
    ignored, the first verdict per task wins. The decision comes from JSON, else
    from a "Decision: ..." line or "replan"/"finish"/"complete" outside verdict lines,
    else "continue". Raises :class:`ParseError` when neither verdicts nor a decision
    appear.
    """
    text = strip_reasoning(text)
    values = [v for v, _ in iter_json(text)] or yaml_values(text)
    parsed = next((r for v in values if (r := _json_review(v)) is not None), None)
    if parsed is None and (tags := _tag_review(text)):
        parsed = tags, _prose_review(_TAGGED.sub("", text))[1]
    if parsed is None:
        entries, decision = _prose_review(text)
        if not entries and (blanket := _BLANKET.search(_BOLD.sub(r"\1", text))):
            word = "done" if blanket["done"] or blanket["done2"] else "failed"
            entries = [(tid, word, "") for tid in dict.fromkeys(task_ids)]
        if not entries and decision is None:
            raise ParseError("task verdicts like 'Task 1: done' or a review JSON", text)
    else:
        entries, decision = parsed
    lone = task_ids[0] if len(set(task_ids)) == 1 else None
    entries = _by_position(entries, task_ids)  # a lone task's verdict under another id is its verdict too
    verdicts: dict[int, Verdict] = {}
    for tid, word, hint in entries:
        tid = lone if tid is None else tid
        verdict = _VERDICTS.get(word.strip().lower())
        if verdict and tid is not None and tid in task_ids and tid not in verdicts:
            verdicts[tid] = Verdict(task_id=tid, verdict=verdict, hint=hint)
    ordered = [verdicts[tid] for tid in dict.fromkeys(task_ids) if tid in verdicts]
    return Review(verdicts=ordered, decision=decision or "continue")
