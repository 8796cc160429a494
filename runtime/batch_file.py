"""A batch file: one goal per line, or one JSON object per line (``goal``, ``workdir``, ``priority``).

Blank lines and lines starting with ``#`` are skipped. A plain line is a goal that runs in the batch's
default working directory (``--workdir``, else the current folder). A JSON line may name its own
``workdir`` (relative paths are relative to the folder holding the batch file) and a ``priority``
(an integer, higher first; default 0).

Each goal gets a deterministic thread id (:func:`thread_id_for`): the file's name, then a hash of the
file's absolute path, the goal, its working directory and how many times the same goal and folder
appeared above it. A re-run of the same file finds the same threads, so completed goals are skipped
and paused ones resumed; moving a line up or down keeps its thread.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from free_llm_agent.config.text import escaped, undecodable

FIELDS = ("goal", "workdir", "priority")
PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1  # procrastinate's priority column (``batch --enqueue``)


class BatchFileError(ValueError):
    """The batch file cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class BatchGoal:
    line: int  # 1-based line in the batch file
    goal: str
    workdir: str  # absolute
    priority: int
    thread_id: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def thread_id_for(batch_file: Path, goal: str, workdir: str, occurrence: int) -> str:
    """``NAME-HASH``: NAME from the file's name (≤ 24 safe characters), HASH of what identifies the goal."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", batch_file.stem).strip("-.")[:24].strip("-.") or "batch"
    if not stem[0].isalnum():
        stem = "b" + stem
    digest = hashlib.sha256("\0".join([str(batch_file), goal, workdir, str(occurrence)]).encode(
        "utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{stem}-{digest}".replace("..", ".-")


def read_batch(path: str | Path, default_workdir: str | Path) -> list[BatchGoal]:
    """The goals of the batch file at ``path``, or :class:`BatchFileError` naming the first bad line.

    Working directories are made absolute here but not checked (the caller checks them as ``run`` does)."""
    file = Path(path).expanduser()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise BatchFileError(f"batch file {file} does not exist; give a file with one goal per line") from None
    except IsADirectoryError:
        raise BatchFileError(f"batch file {file} is a folder; give a file with one goal per line") from None
    except OSError as exc:
        raise BatchFileError(f"batch file {file} cannot be read ({exc.strerror or exc})") from None
    file = file.resolve()
    base = Path(default_workdir).expanduser().resolve()
    goals: list[BatchGoal] = []
    seen: Counter[tuple[str, str]] = Counter()
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        where = f"{file}, line {number}"
        text = line_bytes.decode("utf-8", "surrogateescape")
        if (at := undecodable(text)) is not None:
            raise BatchFileError(f"{where}: not UTF-8 text (character {at + 1}: {escaped(text[at])}); "
                                 "save the file as UTF-8")
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("{"):
            goal, workdir, priority = _json_line(stripped, where, file.parent, base)
        elif stripped.startswith(("[", '"')):
            raise BatchFileError(f"{where}: a JSON line must be an object such as "
                                 '{"goal": "…", "priority": 1}; a plain line is a goal as it is')
        else:
            goal, workdir, priority = stripped, str(base), 0
        seen[(goal, workdir)] += 1
        tid = thread_id_for(file, goal, workdir, seen[(goal, workdir)])
        goals.append(BatchGoal(line=number, goal=goal, workdir=workdir, priority=priority, thread_id=tid))
    if not goals:
        raise BatchFileError(f"batch file {file} holds no goal; write one goal per line "
                             '(or JSON lines: {"goal": "…", "workdir": "…", "priority": 1})')
    return goals


def _json_line(text: str, where: str, folder: Path, base: Path) -> tuple[str, str, int]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BatchFileError(f"{where}: not valid JSON ({exc}); write a plain goal, or an object such as "
                             '{"goal": "…", "priority": 1}') from None
    if not isinstance(data, dict):
        raise BatchFileError(f"{where}: a JSON line must be an object with a \"goal\"")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise BatchFileError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
                             f"a line may have {', '.join(FIELDS)}")
    goal = data.get("goal")
    if not isinstance(goal, str) or not goal.strip():
        raise BatchFileError(f"{where}: \"goal\" must be a non-empty text")
    workdir = data.get("workdir")
    if workdir is not None and (not isinstance(workdir, str) or not workdir.strip()):
        raise BatchFileError(f"{where}: \"workdir\" must be a folder's path (text)")
    priority = data.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise BatchFileError(f"{where}: \"priority\" must be a whole number (higher runs first), "
                             f"not {json.dumps(priority)}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:  # the job queue stores it as a 32-bit integer
        raise BatchFileError(f"{where}: \"priority\" must be a whole number from {PRIORITY_MIN} to {PRIORITY_MAX} "
                             f"(higher runs first), not {priority}")
    folder_of = (folder / Path(workdir).expanduser()).resolve() if workdir else base
    return goal.strip(), str(folder_of), priority

