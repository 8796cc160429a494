"""Offline tests for the code-batch and review parsers in ``nodes/parsing.py``."""

from __future__ import annotations

import pytest

from free_llm_agent.nodes.parsing import ParseError, parse_code_batch
from free_llm_agent.nodes.parsing_review import parse_review
from free_llm_agent.nodes.schemas import CodeItem, Verdict

# ----------------------------------------------------------------------------- code batch

CODE_CASES: list[tuple[str, str, list[int], list[CodeItem]]] = [
    (
        "json-schema",
        '{"items": [{"task_id": 1, "language": "python", "code": "print(1)"},'
        ' {"task_id": 2, "language": "shell", "code": "ls -la"}]}',
        [1, 2],
        [
            CodeItem(task_id=1, language="python", code="print(1)"),
            CodeItem(task_id=2, language="shell", code="ls -la"),
        ],
    ),
    (
        "json-task-and-id-keys-unknown-dropped",
        '[{"task": "Task 2", "lang": "bash", "code": "echo hi"},'
        ' {"id": 1, "code": "```py\\nx = {\\"a\\": 1}\\n```"}, {"id": 7, "code": "print(7)"}]',
        [1, 2],
        [
            CodeItem(task_id=1, language="python", code='x = {"a": 1}'),
            CodeItem(task_id=2, language="shell", code="echo hi"),
        ],
    ),
    (
        "json-in-fence-with-prose-python-literal",
        "Here:\n```json\n{'items': [{'task_id': 3, 'code': 'pip install pandas'},]}\n```\nBye",
        [3],
        [CodeItem(task_id=3, language="shell", code="pip install pandas")],
    ),
    (
        "markdown-sections",
        "Here is the code.\n\n### Task 1\n```python\nimport os\n\n# Task 2 is next\n"
        'data = {"tasks": [1]}\nprint(os.getcwd())\n```\n\n### Task 2\n```bash\nls -la\n```\n'
        "Hope this helps!",
        [1, 2],
        [
            CodeItem(
                task_id=1,
                language="python",
                code='import os\n\n# Task 2 is next\ndata = {"tasks": [1]}\nprint(os.getcwd())',
            ),
            CodeItem(task_id=2, language="shell", code="ls -la"),
        ],
    ),
    (
        "bold-labels-all-fence-languages",
        "**Task 1:** a\n```py\nx = 1\n```\n**Task 2:** b\n```sh\nmkdir out\n```\n"
        "**Task 3:** c\n```zsh\necho 3\n```\n**Task 4:** d\n```shell\ncd /tmp\n```\n"
        "**Task 5:** e\n```python3\nprint(5)\n```",
        [1, 2, 3, 4, 5],
        [
            CodeItem(task_id=1, language="python", code="x = 1"),
            CodeItem(task_id=2, language="shell", code="mkdir out"),
            CodeItem(task_id=3, language="shell", code="echo 3"),
            CodeItem(task_id=4, language="shell", code="cd /tmp"),
            CodeItem(task_id=5, language="python", code="print(5)"),
        ],
    ),
    (
        "single-fence-single-task",
        "Sure, here's the script:\n```python\nprint('hello')\n```\nRun it with python.",
        [4],
        [CodeItem(task_id=4, language="python", code="print('hello')")],
    ),
    (
        "unlabeled-shebang-is-shell",
        "```\n#!/usr/bin/env bash\nset -e\necho hi\n```",
        [2],
        [CodeItem(task_id=2, language="shell", code="#!/usr/bin/env bash\nset -e\necho hi")],
    ),
    (
        "unlabeled-shell-looking-first-line",
        "```\n# fetch the file\ncurl -O https://example.com/a.csv\n```",
        [1],
        [CodeItem(task_id=1, language="shell", code="# fetch the file\ncurl -O https://example.com/a.csv")],
    ),
    (
        "unlabeled-python-shebang-and-plain",
        "### Task 1\n```\n#!/usr/bin/env python3\nprint(1)\n```\n### Task 2\n```\ncat = 3\n```",
        [1, 2],
        [
            CodeItem(task_id=1, language="python", code="#!/usr/bin/env python3\nprint(1)"),
            CodeItem(task_id=2, language="python", code="cat = 3"),
        ],
    ),
    (
        "unknown-heading-dropped-missing-absent",
        "### Task 1\n```python\nprint(1)\n```\n### Task 9\n```python\nprint(9)\n```",
        [1, 2],
        [CodeItem(task_id=1, language="python", code="print(1)")],
    ),
    (
        "first-code-wins-output-fence-ignored",
        "### Task 1\n```python\nprint(1)\n```\nOutput:\n```text\n1\n```\n```python\nprint(2)\n```",
        [1],
        [CodeItem(task_id=1, language="python", code="print(1)")],
    ),
    (
        "indented-fence-is-dedented",
        "1. Task 1\n   ```python\n   def f():\n       return 1\n   ```",
        [1],
        [CodeItem(task_id=1, language="python", code="def f():\n    return 1")],
    ),
    (
        "task-comment-on-first-line-of-fence",
        "```python\n# Task 1: download\nprint(1)\n```\n```bash\n# task 2\nls\n```",
        [1, 2],
        [
            CodeItem(task_id=1, language="python", code="# Task 1: download\nprint(1)"),
            CodeItem(task_id=2, language="shell", code="# task 2\nls"),
        ],
    ),
    (
        "code-for-task-n-lines",
        "Here's the code for Task 2:\n```python\nprint(2)\n```\nThis reuses Task 1 output:\n"
        "```python\nprint(3)\n```",
        [1, 2],
        [CodeItem(task_id=2, language="python", code="print(2)")],
    ),
    (
        "id-less-json-for-single-task",
        '{"language": "bash", "code": "echo 5"}',
        [5],
        [CodeItem(task_id=5, language="shell", code="echo 5")],
    ),
    (
        "dict-literal-inside-code-is-not-json",
        '```python\npayload = {"task_id": 5, "code": "abc"}\nprint(payload)\n```',
        [5],
        [
            CodeItem(
                task_id=5,
                language="python",
                code='payload = {"task_id": 5, "code": "abc"}\nprint(payload)',
            )
        ],
    ),
    (
        "truncated-final-fence",
        "### Task 2\n```python\nimport sys\nprint(sys.argv)",
        [2],
        [CodeItem(task_id=2, language="python", code="import sys\nprint(sys.argv)")],
    ),
    (
        "closing-fence-glued-to-code",
        "### Task 1\n```bash\nwget http://x/y.zip```\n",
        [1],
        [CodeItem(task_id=1, language="shell", code="wget http://x/y.zip")],
    ),
]


@pytest.mark.parametrize(
    ("text", "task_ids", "expected"),
    [c[1:] for c in CODE_CASES],
    ids=[c[0] for c in CODE_CASES],
)
def test_parse_code_batch_shapes(text: str, task_ids: list[int], expected: list[CodeItem]) -> None:
    assert parse_code_batch(text, task_ids).items == expected


def test_parse_code_batch_lone_fence_needs_single_task() -> None:
    assert parse_code_batch("```python\nprint(1)\n```", [1, 2]).items == []


@pytest.mark.parametrize("text", ["", "I wrote the code in my head.", '{"answer": 42}'])
def test_parse_code_batch_without_code_raises(text: str) -> None:
    with pytest.raises(ParseError, match="expected code"):
        parse_code_batch(text, [1])


# ----------------------------------------------------------------------------- review

REVIEW_CASES: list[tuple[str, str, list[int], list[Verdict], str]] = [
    (
        "json-schema",
        '{"verdicts": [{"task_id": 1, "verdict": "done"}, {"task_id": 2, "verdict": "retry",'
        ' "hint": "use pandas"}], "decision": "continue"}',
        [1, 2],
        [
            Verdict(task_id=1, verdict="done"),
            Verdict(task_id=2, verdict="retry", hint="use pandas"),
        ],
        "continue",
    ),
    (
        "json-synonyms-case-insensitive",
        '[{"id": 1, "status": "SUCCESS"}, {"id": 2, "status": "ok"}, {"id": 3, "status": "Pass"},'
        ' {"id": 4, "status": "fail", "reason": "boom"}, {"id": 5, "status": "Error"},'
        ' {"id": 6, "status": "REDO", "feedback": "add header"}, {"id": 7, "status": "maybe"}]',
        [1, 2, 3, 4, 5, 6, 7],
        [
            Verdict(task_id=1, verdict="done"),
            Verdict(task_id=2, verdict="done"),
            Verdict(task_id=3, verdict="done"),
            Verdict(task_id=4, verdict="failed", hint="boom"),
            Verdict(task_id=5, verdict="failed"),
            Verdict(task_id=6, verdict="retry", hint="add header"),
        ],
        "continue",
    ),
    (
        "json-fence-with-prose-replan",
        "My review:\n```json\n{'verdicts': [{'task_id': 2, 'verdict': 'failed'},],"
        " 'decision': 'Re-plan'}\n```\nThe plan was wrong.",
        [2],
        [Verdict(task_id=2, verdict="failed")],
        "replan",
    ),
    (
        "json-mapping-form",
        '{"1": "ok", "task 2": "retry: add a header row", "decision": "finish"}',
        [1, 2],
        [
            Verdict(task_id=1, verdict="done"),
            Verdict(task_id=2, verdict="retry", hint="add a header row"),
        ],
        "finish",
    ),
    (
        "prose-lines-with-hints",
        "Review:\nTask 1: done\nTask 2: retry - use pandas instead\n"
        "Task 3: FAILED because the input file is missing\n",
        [1, 2, 3],
        [
            Verdict(task_id=1, verdict="done"),
            Verdict(task_id=2, verdict="retry", hint="use pandas instead"),
            Verdict(task_id=3, verdict="failed", hint="the input file is missing"),
        ],
        "continue",
    ),
    (
        "prose-replan-word",
        "Task 1: Failed - the API is gone.\nWe need to re-plan around a different source.",
        [1],
        [Verdict(task_id=1, verdict="failed", hint="the API is gone.")],
        "replan",
    ),
    (
        "prose-finish-complete",
        "- **Task 1**: ✅ done\n- **Task 2** — **success**\n\nThe goal is complete.",
        [1, 2],
        [Verdict(task_id=1, verdict="done"), Verdict(task_id=2, verdict="done")],
        "finish",
    ),
    (
        "explicit-decision-line-wins",
        "Task 1: complete\nTask 2: ok\nDecision: continue (re-plan not needed)",
        [1, 2],
        [Verdict(task_id=1, verdict="done"), Verdict(task_id=2, verdict="done")],
        "continue",
    ),
    (
        "unknown-ids-ignored-no-invented-verdict",
        "Task 1: looks fine I think\nTask 2: pass\nTask 5: done\nTask 1 (download): ok",
        [1, 2],
        [Verdict(task_id=1, verdict="done"), Verdict(task_id=2, verdict="done")],
        "continue",
    ),
    (
        "task-without-verdict-absent",
        "Task 1: the output looks plausible\nTask 2: error: division by zero",
        [1, 2],
        [Verdict(task_id=2, verdict="failed", hint="division by zero")],
        "continue",
    ),
    (
        "inline-sentences-and-pipes",
        "Task 1 is done. Task 2 has failed: timeout | Task 3: redo - smaller batch",
        [1, 2, 3],
        [
            Verdict(task_id=1, verdict="done"),
            Verdict(task_id=2, verdict="failed", hint="timeout"),
            Verdict(task_id=3, verdict="retry", hint="smaller batch"),
        ],
        "continue",
    ),
    (
        "first-verdict-wins-numbered-list",
        "1. Task 1 - retry: print the head\n2. Task 1 - done",
        [1],
        [Verdict(task_id=1, verdict="retry", hint="print the head")],
        "continue",
    ),
    (
        "markdown-table",
        "## Review\n| Task | Verdict |\n|---|---|\n| Task 1 | done |\n| Task 2 | retry - fix path |",
        [1, 2],
        [Verdict(task_id=1, verdict="done"), Verdict(task_id=2, verdict="retry", hint="fix path")],
        "continue",
    ),
    (
        "json-without-id-for-single-task",
        '{"verdict": "Retry", "hint": "sort the rows first"}',
        [3],
        [Verdict(task_id=3, verdict="retry", hint="sort the rows first")],
        "continue",
    ),
    (
        "dict-in-prose-hint-is-not-review-json",
        "Task 1: done - output {'result': 42}\nTask 2: retry - header missing",
        [1, 2],
        [
            Verdict(task_id=1, verdict="done", hint="output {'result': 42}"),
            Verdict(task_id=2, verdict="retry", hint="header missing"),
        ],
        "continue",
    ),
    (
        "decision-only",
        "Nothing worked as intended; we should replan.",
        [1, 2],
        [],
        "replan",
    ),
]


@pytest.mark.parametrize(
    ("text", "task_ids", "verdicts", "decision"),
    [c[1:] for c in REVIEW_CASES],
    ids=[c[0] for c in REVIEW_CASES],
)
def test_parse_review_shapes(
    text: str, task_ids: list[int], verdicts: list[Verdict], decision: str
) -> None:
    review = parse_review(text, task_ids)
    assert review.verdicts == verdicts
    assert review.decision == decision


@pytest.mark.parametrize("text", ["", "Looks good to me.", "[1, 2, 3]"])
def test_parse_review_garbage_raises(text: str) -> None:
    with pytest.raises(ParseError, match="expected task verdicts"):
        parse_review(text, [1])


def test_one_fence_is_split_at_its_task_markers_and_the_markers_are_dropped() -> None:
    text = "```python\nimport os\n\n# Task 1\nprint(1)\n# --- Task 2 ---\nprint(os.sep)\n// Task 3:\nprint(3)\n```"
    batch = parse_code_batch(text, [1, 2, 3])
    assert [(i.task_id, i.code) for i in batch.items] == [
        (1, "import os\nprint(1)"), (2, "import os\nprint(os.sep)"), (3, "import os\nprint(3)")]


def test_a_fence_naming_one_task_is_not_split() -> None:
    batch = parse_code_batch("```python\n# Task 2: sum\ntotal = 55\n# print it\nprint(total)\n```", [1, 2])
    assert [(i.task_id, i.code) for i in batch.items] == [(2, "# Task 2: sum\ntotal = 55\n# print it\nprint(total)")]


def test_reasoning_before_a_lone_closing_think_is_neither_code_nor_verdicts() -> None:
    code = "### Task 1\n```python\nprint('draft')\n```\n</think>\n### Task 1\n```python\nprint('final')\n```"
    assert parse_code_batch(code, [1]).items[0].code == "print('final')"
    review = parse_review("Task 1: failed? no.\n</think>\nTask 1: done", [1])
    assert [(v.task_id, v.verdict) for v in review.verdicts] == [(1, "done")]
