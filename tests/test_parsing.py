"""Offline tests for the plan parser and the JSON extraction behind all the tolerant LLM-output parsers
(``nodes/parsing.py``, ``nodes/json_text.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from free_llm_agent.nodes.parsing import ParseError, extract_json, parse_plan

THREE = ["download data", "clean it", "plot"]

# ----------------------------------------------------------------------------- plan

PLAN_CASES: list[tuple[str, str, list[str]]] = [
    ("json-object", '{"tasks": ["download data", "clean it", "plot"]}', THREE),
    ("json-array-of-strings", '["download data", "clean it", "plot"]', THREE),
    (
        "json-array-of-objects",
        '[{"id": 1, "description": "download data"}, {"id": 2, "task": "clean it"},'
        ' {"step": 3, "title": "plot"}]',
        THREE,
    ),
    (
        "json-fence-with-prose",
        'Sure! Here is the plan:\n```json\n{"tasks": ["download data", "clean it", "plot"]}\n'
        "```\nLet me know if you want changes.",
        THREE,
    ),
    (
        "bare-fence",
        'Plan below.\n```\n["download data", "clean it", "plot"]\n```',
        THREE,
    ),
    (
        "trailing-commas",
        '{"tasks": ["download data", "clean it", "plot",],}',
        THREE,
    ),
    (
        "python-literal-single-quotes",
        "Here you go: {'tasks': ['download data', 'clean it', 'plot'], 'final': True}",
        THREE,
    ),
    ("smart-quotes", "{“tasks”: [“download data”, “clean it”, “plot”]}", THREE),
    (
        "json-with-comments",
        '{\n  // the plan (don\'t change the order)\n  "tasks": [\n    "download data", // first\n'
        '    /* then */ "clean it",\n    "plot"\n  ]\n}',
        THREE,
    ),
    ("spec-pipes", "Task1: download data | Task2: clean it | Task3: plot", THREE),
    ("spec-pipes-spaced", "Task 1: download data | Task 2: clean it | Task 3: plot", THREE),
    (
        "spec-after-header-on-one-line",
        "Here is the plan: Task1: download data | Task2: clean it | Task3: plot.",
        ["download data", "clean it", "plot."],
    ),
    ("spec-newlines", "Task1: download data\nTask2: clean it\nTask3: plot\n", THREE),
    (
        "numbered-dot-with-header-and-closing",
        "Here is the plan:\n\n1. download data\n2. clean it\n3. plot\n\n"
        "Let me know if you need anything else!",
        THREE,
    ),
    ("numbered-paren", "Plan:\n1) download data\n2) clean it\n3) plot", THREE),
    ("step-labels", "Step 1: download data\nStep 2: clean it\nStep 3: plot", THREE),
    ("dash-bullets", "The tasks are:\n- download data\n- clean it\n- plot\nThat's it.", THREE),
    (
        "star-bullets-with-nested-details",
        "* download data\n  * use requests\n* clean it\n    - drop NaNs\n* plot",
        THREE,
    ),
    (
        "markdown-bold-labels",
        "Here is the plan:\n\n**Task 1:** download data\n**Task 2:** clean it\n"
        "**Task 3:** plot\n\nEach task is a short script.",
        THREE,
    ),
    (
        "bold-label-text-on-next-line",
        "**Task 1:**\ndownload data\n\n**Task 2:**\nclean it\n\n**Task 3:**\nplot",
        THREE,
    ),
    (
        "markdown-headings",
        "## Plan\n### Step 1: download data\nDetails...\n### Step 2: clean it\n### Step 3: plot",
        THREE,
    ),
    (
        "numbered-bold-labels-with-sub-bullets",
        "1. **Task 1** - download data\n   - from the URL\n2. **Task 2** - clean it\n"
        "3. **Task 3** - plot",
        THREE,
    ),
    (
        "numbered-items-with-inline-literal",
        "1. install ['pandas', 'numpy']\n2. clean it\n3. plot",
        ["install ['pandas', 'numpy']", "clean it", "plot"],
    ),
    ("nested-json-plan-steps", '{"plan": {"steps": ["download data", "clean it", "plot"]}}', THREE),
    (
        "json-mapping-task-keys",
        '{"Task1": "download data", "Task2": "clean it", "Task3": "plot"}',
        THREE,
    ),
    (
        "json-items-with-label-prefixes",
        '["Task 1: download data", "2. clean it", "- **plot**"]',
        THREE,
    ),
    (
        "fenced-json-beats-prose-bullets",
        "Overview:\n- quick and simple\n```json\n"
        '{"tasks": ["download data", "clean it", "plot"]}\n```',
        THREE,
    ),
    (
        "bold-numbers-with-stray-bold",
        "Sure, here's a breakdown:\n\n**1. download data:** with requests\n**2. clean it**\n"
        "**3. plot** 2**10 points",
        ["download data: with requests", "clean it", "plot 2**10 points"],
    ),
    ("python-literal-tuple", "{'tasks': ('download data', 'clean it', 'plot')}", THREE),
    (
        "dedupe-strip-markdown-drop-empty",
        "1. **download data**\n2.   Download   data  \n3. \n4. `clean it`\n5. *plot*",
        ["download data", "clean it", "plot"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in PLAN_CASES], ids=[c[0] for c in PLAN_CASES]
)
def test_parse_plan_shapes(text: str, expected: list[str]) -> None:
    assert parse_plan(text).tasks == expected


def test_parse_plan_keeps_first_max_tasks() -> None:
    text = "\n".join(f"{i}. task number {i}" for i in range(1, 9))
    assert parse_plan(text, max_tasks=3).tasks == [
        "task number 1",
        "task number 2",
        "task number 3",
    ]
    assert len(parse_plan(text).tasks) == 5


def test_parse_plan_too_few_tasks_raises() -> None:
    with pytest.raises(ParseError, match=r"at least 3 task.*Task1: download data"):
        parse_plan("Task1: download data | Task2: clean it", min_tasks=3)


@pytest.mark.parametrize("text", ["", "I cannot help with that.", '{"answer": 42}', "[]"])
def test_parse_plan_garbage_raises(text: str) -> None:
    with pytest.raises(ParseError):
        parse_plan(text)


def test_parse_error_shows_start_of_text() -> None:
    with pytest.raises(ParseError) as info:
        parse_plan("Sorry, " + "blah " * 100)
    message = str(info.value)
    assert message.startswith("expected a plan of at least 1 task(s)")
    assert "'Sorry, blah blah" in message and message.endswith("...'")
    assert isinstance(info.value, ValueError)


# ----------------------------------------------------------------------------- extract_json


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('prose [1, 2] then {"b": 2}', [1, 2]),
        ('say {"text": "a } and ] inside", "n": null}', {"text": "a } and ] inside", "n": None}),
        ("see (this) and [that] then ['x', None,]", ["x", None]),
        ('before [1]\n```json\n{"fenced": true}\n```', {"fenced": True}),
        ("{'code': 'it\\'s ok'}", {"code": "it's ok"}),
        ('{"code": "line1\nline2"}', {"code": "line1\nline2"}),
        ("no json here", None),
        ("{unbalanced", None),
    ],
)
def test_extract_json(text: str, expected: Any) -> None:
    assert extract_json(text) == expected
