"""The one line the run's summary says about each task (:mod:`nodes.finalize`): how it ended, in words a
person can act on.

* done — the most informative line the task printed: the last one that is not blank, not a separator
  (``-----``), not part of a traceback, not the output cap's note; "no output" when it printed nothing and
  changed no file (the files it changed are listed under the line, by the summary);
* failed — why: the exception line (``ZeroDivisionError: division by zero``), the safety check's reason,
  the judge's reason when its code ran without error; a bare exit status or timeout gets the last
  informative line the task printed (``exit status 2: ls: cannot access 'x': No such file or directory``);
* skipped — "not run", with the reason when there is one (rejected by the user).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

LIMIT = 160  # characters of a task's line

# A traceback starts with its header (Python's, or IPython's: "KeyError   Traceback (most recent call last)");
# its frames and source lines are indented, or IPython's "Cell In[3], line 2", "File /x.py:3, in f()",
# "----> 2 x"; the first other line is the exception's, which ends it.
_TRACEBACK = re.compile(r"^(Traceback \(most recent call last\):|\S+\s{2,}Traceback \(most recent call last\))$")
_FRAME = re.compile(r"^(\s|-+>|Cell In\s*\[|Input In \[|File \S)")
_NOISE = (
    re.compile(r"^\s*[^\w\s]+\s*$"),  # separators and carets: -----, =====, ^^^^
    re.compile(r"^… \[\d+ chars omitted\] …$"),  # the output cap's note
)
# Errors that say how it ended but not why: the output's last informative line is added.
_BARE = re.compile(r"^(exit status -?\d+|timeout after \S+|no exit status reported .*)$")


def informative_line(text: str) -> str:
    """The last line of ``text`` worth reading on its own ("" when there is none), cut at :data:`LIMIT`."""
    found, in_traceback = "", False
    for raw in (text or "").splitlines():
        line = raw.rstrip()
        if _TRACEBACK.match(line):
            in_traceback = True
            continue
        noise = not line.strip() or any(pattern.match(line) for pattern in _NOISE)
        if not noise and not (in_traceback and _FRAME.match(line)):
            found, in_traceback = line.strip(), False
    return _cut(found)


def task_line(task: Mapping[str, Any]) -> str:
    """What the summary says after the task's description ("" for nothing); see the module docstring."""
    status, error = task.get("status"), str(task.get("error") or "").strip()
    said = informative_line(str(task.get("output") or ""))
    if status == "failed":
        if not error:
            return said
        if said and _BARE.match(error):
            return _cut(f"{error}; last output: {said}" if error.startswith("timeout") else f"{error}: {said}")
        return _cut(error.splitlines()[0])
    if status == "skipped":
        return f"not run ({error})" if error else "not run"
    if status == "done":
        return said or ("" if task.get("changes") else "no output")
    return said


def _cut(line: str) -> str:
    return line if len(line) <= LIMIT else line[: LIMIT - 1] + "…"
