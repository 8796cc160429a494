"""Answers the agent's own prompts (plan / code / reflect) the way a good model would.

Used as a ``FakeProvider`` responder in end-to-end tests. The plan is given as a
list of (description, python code) pairs; code and verdicts follow from it.
Replies are structured output (a tool call when the request declares tools).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tests.fakes.provider_server import Reply, Request

DEFAULT_PLAN: tuple[tuple[str, str], ...] = (
    (
        "write numbers.txt with the numbers 1 to 10",
        "open('numbers.txt','w').write('\\n'.join(map(str, range(1, 11))))\nprint('wrote numbers.txt')",
    ),
    ("sum the numbers in numbers.txt", "print('sum', sum(int(x) for x in open('numbers.txt')))"),
    ("count the lines of numbers.txt", "print('lines', len(open('numbers.txt').read().splitlines()))"),
    ("write report.md with the sum", "open('report.md','w').write('sum is 55\\n')\nprint('wrote report.md')"),
    ("list the files of the workspace", "import os\nprint(sorted(os.listdir('.')))"),
)

_TASK_LINE = re.compile(r"^- Task (\d+): (.*)$", re.MULTILINE)


def make_responder(plan: Sequence[tuple[str, str]] = DEFAULT_PLAN, *, verdict: str = "done"):  # type: ignore[no-untyped-def]
    codes = {desc: code for desc, code in plan}

    def respond(req: Request) -> Reply:
        text = req.text
        if "Break this goal" in text or "Write a new plan" in text:
            return Reply.structured({"tasks": [desc for desc, _ in plan]})
        if "Write the code for each of these tasks" in text:
            todo = text.split("Write the code for each of these tasks", 1)[1]
            items = [
                {"task_id": int(tid), "language": "python", "code": codes.get(desc.strip(), "print('ok')")}
                for tid, desc in _TASK_LINE.findall(todo)
            ]
            return Reply.structured({"items": items})
        if "These tasks were just run" in text:
            ids = [int(tid) for tid, _ in _TASK_LINE.findall(text)]
            return Reply.structured(
                {"verdicts": [{"task_id": i, "verdict": verdict, "hint": ""} for i in ids], "decision": "continue"}
            )
        return Reply.text("OK")

    return respond
