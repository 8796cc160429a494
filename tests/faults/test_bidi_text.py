"""Bidirectional-text controls (issue 21, case 6): a right-to-left override in a goal or a task's text used to
reverse what ``threads``, ``show`` and the progress panel display. The terminal now shows them as escapes
(``\\u202e``); ``--json`` keeps the text exactly as given."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from free_llm_agent.cli import main as cli
from free_llm_agent.cli.support import visible
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider

RLO, ISOLATE = "\u202e", "\u2066"
GOAL = f"rename the files {RLO}txt.exe"
PLAN = ((f"list {ISOLATE}every{chr(0x2069)} file", "print(1)"), ("count them", "print(2)"))
pytestmark = pytest.mark.timeout(180)


def test_visible_writes_each_control_as_its_escape_and_leaves_other_text_alone() -> None:
    assert visible(GOAL) == "rename the files \\u202etxt.exe"
    assert visible("naïve ☃ שלום") == "naïve ☃ שלום"  # right-to-left letters are text, not controls


def test_a_goal_with_a_right_to_left_override_is_shown_escaped_in_the_terminal_and_kept_in_json(
        home: Path, capsys: pytest.CaptureFixture[str], fake_server: Callable[..., FakeProvider],
        make_config: Callable[..., Path]) -> None:
    server = fake_server("openai", responder=make_responder(PLAN))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    base = ["--config-dir", str(cfg), "--home", str(home)]
    assert cli.main([*base, "run", GOAL, "--scratch", "--thread-id", "bidi"]) == 0  # paused for approval
    shown = capsys.readouterr()
    assert RLO not in shown.err + shown.out and ISOLATE not in shown.err + shown.out
    assert "list \\u2066every\\u2069 file" in shown.err  # the plan, as the panel printed it
    for command in (["threads"], ["show", "bidi"]):
        assert cli.main([*base, *command]) == 0
        out = capsys.readouterr().out
        assert RLO not in out and "rename the files \\u202etxt.exe" in " ".join(out.split())
    assert cli.main([*base, "show", "bidi", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["goal"] == GOAL and data["tasks"][0]["description"] == PLAN[0][0]
