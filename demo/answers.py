"""What the demo's scripted model answers: the purpose of each request read from the request itself (the
structured-output tool it declares, else the words of its last question), then the answer a good free model
would give for the demo's goal (:mod:`demo.sample`).

Pure functions over the OpenAI ``/chat/completions`` request body; :mod:`demo.server` puts the answer on the
wire. An :class:`Answer` is a tool call when the request declares tools (the agent forces its schema's tool),
else JSON text (the repair question, or a client asking for JSON), else plain text ("OK", e.g. ``check``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from free_llm_agent.demo import sample
from free_llm_agent.nodes.schemas import CodeBatch, Plan, Review

Purpose = Literal["plan", "code", "reflect", "chat"]
SCHEMAS: dict[Purpose, type[BaseModel]] = {"plan": Plan, "code": CodeBatch, "reflect": Review}
# Words of the agent's questions (nodes/prompts.py) beside the schemas' own names and fields.
PHRASES: dict[Purpose, tuple[str, ...]] = {
    "plan": ("break this goal", "write a new plan", "previous plan did not reach"),
    "code": ("write the code for each", "complete, self-contained code"),
    "reflect": ("were just run", "for each task decide"),
}
_TASK_LINE = re.compile(r"^- Task (\d+): (.*)$", re.MULTILINE)
_HISTORY_LINE = re.compile(r"^- Task \d+ \[(\w+)\]: (.*)$", re.MULTILINE)  # a new plan's "what happened so far"


@dataclass(frozen=True)
class Answer:
    purpose: Purpose
    kind: Literal["tool_call", "json", "text"]
    content: str = ""  # the text, or the JSON text
    tool: str = ""  # the tool called (kind tool_call)
    arguments: dict[str, Any] | None = None


# ----------------------------------------------------------------------------------------- reading


def text_of(content: Any) -> str:
    """The text of a message's ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content
                         if isinstance(p, str | dict))
    return ""


def questions(body: dict[str, Any]) -> list[str]:
    """The text of the request's user messages, last first."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    return [text_of(m.get("content")) for m in reversed(messages)]


def tool_names(body: dict[str, Any]) -> list[str]:
    """The declared tools, the forced one first."""
    names = [str((t.get("function") or {}).get("name")) for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    forced = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    return [forced, *[n for n in names if n != forced]] if forced in names else names


def _score(purpose: Purpose, text: str) -> int:
    schema = SCHEMAS[purpose]
    low = text.lower()
    hits = sum(low.count(p) for p in PHRASES[purpose])
    hits += sum(text.count(f'"{field}"') for field in schema.model_fields)  # {"tasks": …} / the repair schema
    return hits + text.count(schema.__name__)  # "Answer with the Plan tool" / "title": "Plan"


def purpose_of(body: dict[str, Any]) -> Purpose:
    """What the request asks for: the schema of its tool, else the purpose its latest question speaks of."""
    by_tool = {schema.__name__: purpose for purpose, schema in SCHEMAS.items()}
    for name in tool_names(body):
        if name in by_tool:
            return by_tool[name]
    for text in questions(body):
        scores = {purpose: _score(purpose, text) for purpose in SCHEMAS}
        best = max(scores.values())
        if best and list(scores.values()).count(best) == 1:
            return max(scores, key=scores.__getitem__)
    return "chat"


def tasks_asked(text: str, after: str = "") -> list[tuple[int, str]]:
    """``(id, description)`` of the ``- Task N: …`` lines of ``text`` (those after ``after`` when it is there)."""
    head, found, tail = text.partition(after) if after else ("", "", text)
    return [(int(tid), desc.strip()) for tid, desc in _TASK_LINE.findall(tail if found else head + tail)]


# ----------------------------------------------------------------------------------------- answers


def plan(question: str) -> dict[str, Any]:
    """The demo's plan; for a new plan, the planned tasks the history does not show done."""
    done = {desc.strip() for status, desc in _HISTORY_LINE.findall(question) if status == "done"}
    todo = [t for t in sample.TASKS if t not in done] or list(sample.TASKS)
    return {"tasks": todo}


def code(question: str) -> dict[str, Any]:
    """The code of every task the question asks code for."""
    todo = tasks_asked(question, after="Write the code for each")
    return {"items": [{"task_id": tid, "language": "python", "code": sample.code_for(desc)} for tid, desc in todo]}


def review(question: str) -> dict[str, Any]:
    """A verdict per task from its evidence: done when it ran without error (the report task: when the
    report was written), else retry with a hint; the run goes on."""
    blocks = re.split(r"^(?=- Task \d+: )", question, flags=re.MULTILINE)
    verdicts = []
    for block in blocks:
        head = _TASK_LINE.match(block)
        if head is None:
            continue
        failed = re.search(r"^\s*status: error", block, re.MULTILINE) is not None
        needs_report = sample.code_for(head[2]) == sample.REPORT_CODE
        if failed:
            verdicts.append({"task_id": int(head[1]), "verdict": "retry",
                             "hint": "the script stopped with an error: read its output and fix that line"})
        elif needs_report and sample.REPORT_FILE not in block.split("\n", 1)[-1]:
            verdicts.append({"task_id": int(head[1]), "verdict": "retry", "hint": f"write {sample.REPORT_FILE}"})
        else:
            verdicts.append({"task_id": int(head[1]), "verdict": "done", "hint": ""})
    return {"verdicts": verdicts, "decision": "continue"}


def answer(body: dict[str, Any]) -> Answer:
    """The answer to one ``/chat/completions`` request body."""
    purpose = purpose_of(body)
    if purpose == "chat":
        return Answer("chat", "text", content="OK")
    asked = questions(body)
    # A repair question carries no task lines: the task lines are in the question it repairs.
    question = next((q for q in asked if _score(purpose, q) and (purpose == "plan" or _TASK_LINE.search(q))),
                    asked[0] if asked else "")
    made = {"plan": plan, "code": code, "reflect": review}[purpose](question)
    names = tool_names(body)
    if names:
        return Answer(purpose, "tool_call", tool=names[0], arguments=made)
    return Answer(purpose, "json", content=json.dumps(made, ensure_ascii=False))
