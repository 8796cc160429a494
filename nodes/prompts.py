"""Every prompt the agent sends. Short on purpose: free tiers count tokens too."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from free_llm_agent.snapshots.changes import human_size

SYSTEM = (
    "You are the planning and coding brain of an autonomous agent that runs code on the user's "
    "machine through Open Interpreter. The code runs in the user's working directory (the current "
    "directory, shown below with its files); read and write files there only, and change the "
    "user's files only when the goal asks for it. Prefer the Python standard library; print results."
)

WORKDIR = """Working directory: {path}
Its files (names and sizes; hidden files left out):
{listing}"""
UNDECODABLE_NAMES = """A name shown with \\xNN escapes holds bytes that are not UTF-8: open it in Python as
os.fsdecode(b'<the name as shown>'), e.g. open(os.fsdecode(b'caf\\xe9.txt'))."""

PLAN = """Goal: {goal}

{workdir}

Break this goal into {min_tasks}-{max_tasks} concrete, executable tasks. Each task must be doable by one
short Python or shell script and its result must be visible in what the script prints.
Answer with the Plan tool, or as JSON {{"tasks": ["...", "..."]}}, or as
Task1: description | Task2: description | Task3: description"""

REPLAN = """Goal: {goal}

{workdir}

A previous plan did not reach the goal. What happened so far:
{history}

Reviewer's advice: {advice}
Write a new plan of {min_tasks}-{max_tasks} tasks for what is still missing (do not repeat finished work).
Answer with the Plan tool, or as JSON {{"tasks": ["...", "..."]}}."""

CODE = """Goal: {goal}

{workdir}

Results of finished tasks (their files are in the current directory):
{done}

Write the code for each of these tasks:
{tasks}

Rules: language "python" or "shell"; complete, self-contained code; print what shows the task is done;
raise/exit non-zero on failure; no sudo, no installs outside the working directory, no interactive input.
To read a web page in Python: from free_llm_agent.tools.web_tools import fetch_text; print(fetch_text(url).text)
Answer with the CodeBatch tool, or as JSON {{"items": [{{"task_id": 1, "language": "python", "code": "..."}}]}}."""

REFLECT = """Goal: {goal}

These tasks were just run:
{results}

For each task decide: "done" (the output shows it was achieved), "retry" (fixable: give a short hint),
or "failed" (cannot be achieved: say why in the hint). Then decide for the whole run: "continue" (go on with the plan),
"replan" (the plan itself is wrong) or "finish" (the goal is reached or cannot be reached).
Answer with the Review tool, or as JSON
{{"verdicts": [{{"task_id": 1, "verdict": "done", "hint": ""}}], "decision": "continue"}}."""

FILES_CHANGED = "\n  files changed: {changes}"
NO_FILES_CHANGED = "\n  files changed: none"
FILE_CHANGE = "{path} {change} ({sizes})"

RETRY_NOTE = """Your previous answer to this could not be used ({error}).
Answer again, exactly in the format asked above."""

REPAIR = """Your last answer could not be read ({error}).
Answer again with ONLY a JSON object matching this schema, no prose, no code fences:
{schema}"""


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit // 2] + "\n…\n" + text[-limit // 2 :]


def workdir(path: str, listing: str) -> str:
    text = WORKDIR.format(path=path, listing=listing)
    return f"{text}\n{UNDECODABLE_NAMES}" if "\\x" in listing else text


def plan(goal: str, where: str, *, min_tasks: int = 3, max_tasks: int = 5) -> list[BaseMessage]:
    """``where``: :func:`workdir`'s description of the working directory."""
    text = PLAN.format(goal=goal, workdir=where, min_tasks=min_tasks, max_tasks=max_tasks)
    return [SystemMessage(SYSTEM), HumanMessage(text)]


def replan(
    goal: str, tasks: Sequence[Mapping[str, Any]], advice: str, where: str, *, max_tasks: int = 5
) -> list[BaseMessage]:
    history = "\n".join(
        f"- Task {t['id']} [{t.get('status')}]: {t['description']}\n  output: {_clip(t.get('output', ''), 300)}"
        for t in tasks
    )
    text = REPLAN.format(goal=goal, workdir=where, history=history or "(nothing)", advice=advice or "(none)",
                         min_tasks=1, max_tasks=max_tasks)
    return [SystemMessage(SYSTEM), HumanMessage(text)]


def code(
    goal: str, batch: Sequence[Mapping[str, Any]], done: Sequence[Mapping[str, Any]], where: str
) -> list[BaseMessage]:
    finished = "\n".join(
        f"- Task {t['id']}: {t['description']}\n  output: {_clip(t.get('output', ''), 600)}" for t in done
    )
    todo = "\n".join(f"- Task {t['id']}: {t['description']}" + _previous_attempt(t) for t in batch)
    text = CODE.format(goal=goal, workdir=where, done=finished or "(none yet)", tasks=todo)
    return [SystemMessage(SYSTEM), HumanMessage(text)]


def _previous_attempt(task: Mapping[str, Any]) -> str:
    """What went wrong last time (code, exit status, output tail, hint), so a retry is a new question."""
    if not task.get("attempts") and not task.get("hint"):
        return ""
    parts = [f"\n  previous attempt failed ({task.get('error') or 'judged not done'})"]
    if task.get("hint"):
        parts.append(f"\n  hint: {task['hint']}")
    if task.get("code"):
        parts.append(f"\n  previous code:\n{_indent(_clip(task['code'], 800))}")
    if task.get("output"):
        parts.append(f"\n  end of its output:\n{_indent(task['output'].strip()[-400:])}")
    return "".join(parts)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _files_changed(task: Mapping[str, Any], limit: int = 20) -> str:
    """The task's change list as evidence for the judge (absent when snapshots are off)."""
    if "changes" not in task:
        return ""
    changes = list(task["changes"] or [])
    if not changes:
        return NO_FILES_CHANGED
    parts = []
    for c in changes[:limit]:
        if c["change"] == "modified":
            sizes = f"{human_size(c['bytes_before'])} → {human_size(c['bytes_after'])}"
        else:
            sizes = human_size(c["bytes_after"] if c["change"] == "created" else c["bytes_before"])
        if c.get("lines_added") is not None and c["change"] == "modified":
            sizes += f", +{c['lines_added']} -{c['lines_removed']} lines"
        parts.append(FILE_CHANGE.format(path=c["path"], change=c["change"], sizes=sizes))
    more = f"; and {len(changes) - limit} more" if len(changes) > limit else ""
    return FILES_CHANGED.format(changes="; ".join(parts) + more)


def reflect(goal: str, batch: Sequence[Mapping[str, Any]]) -> list[BaseMessage]:
    results = "\n".join(
        f"- Task {t['id']}: {t['description']}\n  status: {'ok' if t.get('status') != 'failed' else 'error'}"
        + (f" ({t['error']})" if t.get("error") else "")
        + _files_changed(t)
        + f"\n  output:\n{_clip(t.get('output', ''), 1500)}"
        for t in batch
    )
    return [SystemMessage(SYSTEM), HumanMessage(REFLECT.format(goal=goal, results=results))]


def retry_note(error: str) -> str:
    return RETRY_NOTE.format(error=_clip(error, 300))


def repair(schema: type[BaseModel], error: str) -> str:
    return REPAIR.format(error=_clip(error, 200), schema=json.dumps(schema.model_json_schema()))
