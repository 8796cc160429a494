"""What a person reads in the terminal: LLM and user text is never read as rich markup; the
live panel's clock ticks while nothing happens; approved code stays in the scrollback; ``.env``
files in any editor's encoding; output paths checked before the work; ``--json`` alone on stdout."""

from __future__ import annotations

import codecs
import io
import itertools
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pyte
import pytest
from rich.console import Console
from rich.syntax import Syntax

import free_llm_agent.cli.progress as progress_module
from free_llm_agent.cli.progress import Progress
from free_llm_agent.config import ConfigError, load_env_file
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider, Reply
from tests.fakes.wire import Request
from tests.support.cli import cli, cli_in_process

HOSTILE = "use [/x] then [bold red]this[/] and [link=file:///etc]that"
PLAN = ((HOSTILE, "print('[/x] one')"), ("second [/] task", "print(2)"), ("third [red]task", "print(3)"))
pytestmark = pytest.mark.timeout(180)


def screen_of(raw: str, rows: int = 60, cols: int = 160) -> str:
    """What a terminal shows after ``raw`` (cursor moves and erasures applied)."""
    screen = pyte.Screen(cols, rows)
    pyte.Stream(screen).feed(raw.replace("\r\n", "\n").replace("\n", "\r\n"))
    return "\n".join(line.rstrip() for line in screen.display)


def events(p: Progress) -> None:
    p("updates", {"plan": {"tasks": [{"id": i, "description": d, "status": "pending"}
                                     for i, (d, _) in enumerate(PLAN, 1)]}})
    p("custom", {"event": "llm_call", "purpose": "[/code]", "cached": False, "provider": "[x]"})
    p("custom", {"event": "task_running", "task_id": 1, "description": HOSTILE, "language": "python",
                 "code": PLAN[0][1]})
    p("custom", {"event": "task_finished", "task_id": 1, "status": "failed", "error": "[/red] boom [b]",
                 "duration_s": 0.1})
    p("updates", {"reflect": {"decision": "[/retry]"}})


@pytest.mark.parametrize("live", [False, True], ids=["pipe", "terminal"])
def test_llm_text_is_printed_as_written_never_as_markup(live: bool) -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=live, width=160, color_system=None)
    with Progress(console, live=live) as p:
        events(p)
    shown = screen_of(buf.getvalue()) if live else buf.getvalue()
    for text in (HOSTILE, "[/red] boom [b]", "reflect: [/retry]", "LLM [/code]: [x]", "print('[/x] one')",
                 "second [/] task", "third [red]task"):
        assert text in shown, text


def test_the_live_clock_ticks_while_no_event_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = itertools.count(1000)  # every reading is one second later: a task that runs for a while
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(time=lambda: float(next(clock))))
    buf = io.StringIO()
    with Progress(Console(file=buf, force_terminal=True, width=160, color_system=None), live=True):
        deadline = time.monotonic() + 60
        while len(set(re.findall(r"(\d+)s elapsed", buf.getvalue()))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(set(re.findall(r"(\d+)s elapsed", buf.getvalue()))) >= 3  # redrawn with a new time, no event


def test_approved_code_stays_in_the_scrollback_and_runs_are_shown_once() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160, color_system=None)
    with Progress(console, live=True) as p:
        events(p)
        p.pause()  # what the approval prompt does
        console.print(Syntax("print('APPROVED')\nvalue = 42", "python"))
        console.print("Run this code? [y]es", markup=False)
        p.mark_shown(2, "print('APPROVED')\nvalue = 42")
        p.resume()
        p("custom", {"event": "task_running", "task_id": 2, "description": "second [/] task",
                     "language": "python", "code": "print('APPROVED')\nvalue = 42"})
        p("custom", {"event": "task_finished", "task_id": 2, "status": "done", "error": "", "duration_s": 0.1})
    shown = screen_of(buf.getvalue())
    assert "print('APPROVED')" in shown and "value = 42" in shown and "Run this code?" in shown
    assert buf.getvalue().count("print('APPROVED')") == 1  # shown at approval, not again when it ran
    assert "print('[/x] one')" in shown  # code nobody was asked about (--yes) is shown when it runs


def test_a_resumed_run_shows_the_checklist_with_descriptions() -> None:
    buf = io.StringIO()
    p = Progress(Console(file=buf, force_terminal=True, width=160, color_system=None), live=True)
    p.seed([{"id": 1, "description": HOSTILE, "status": "done"}, {"id": 2, "description": "second [/] task"}])
    with p:
        p("custom", {"event": "task_running", "task_id": 2, "description": "", "code": "", "language": "python"})
    shown = screen_of(buf.getvalue())
    assert re.search(r"✔ 1\. " + re.escape(HOSTILE), shown) and re.search(r"▶ 2\. second \[/\] task", shown)


# -- .env ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be-bom"])
def test_env_files_in_any_editor_encoding_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    encoding: str) -> None:
    monkeypatch.delenv("FLA_TEST_KEY", raising=False)
    text = "# keys\nFLA_TEST_KEY=sk-é-1\n"
    path = tmp_path / ".env"
    raw = codecs.BOM_UTF16_BE + text.encode("utf-16-be") if encoding == "utf-16-be-bom" else text.encode(encoding)
    path.write_bytes(raw)
    assert load_env_file(path) == path
    assert os.environ["FLA_TEST_KEY"] == "sk-é-1"


def test_a_malformed_env_line_is_named_with_its_file_and_line_never_its_text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLA_TEST_GOOD", raising=False)
    path = tmp_path / ".env"
    path.write_text("FLA_TEST_GOOD=1\nsk-secret-pasted-alone\nsk secret with spaces\n")
    warnings: list[str] = []
    load_env_file(path, warn=warnings.append)
    assert os.environ["FLA_TEST_GOOD"] == "1"
    assert [w.split(":")[0] for w in warnings] == [f"{path} line 2", f"{path} line 3"]
    assert all("NAME=value" in w and "ignored" in w and "sk" not in w.split(":", 1)[1] for w in warnings)


def test_an_env_file_in_another_encoding_is_exit_2_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], home: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pyproject.toml").write_text("")  # a checkout: its .env is read
    (repo / ".env").write_bytes(b"GROQ_API_KEY=caf\xe9\n")  # Latin-1
    monkeypatch.setattr("free_llm_agent.config.env_file.REPO_DIR", repo)
    with pytest.raises(ConfigError, match="save it as UTF-8"):
        load_env_file(repo / ".env")
    code, out, err = cli_in_process(["threads"], capsys, home)
    assert code == 2 and str(repo / ".env") in err and "UTF-8" in err and out == ""


def test_env_warnings_reach_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], home: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pyproject.toml").write_text("")  # a checkout: its .env is read
    (repo / ".env").write_text("just words\n")
    monkeypatch.setattr("free_llm_agent.config.env_file.REPO_DIR", repo)
    code, _, err = cli_in_process(["threads"], capsys, home)
    assert code == 0 and f"warning: {repo / '.env'} line 1" in err


# -- output files ---------------------------------------------------------------------------------------


def test_output_files_in_a_missing_folder_are_exit_2_before_any_work(
        tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str], fake_server: Callable[..., FakeProvider],
        make_config: Callable[..., Path]) -> None:
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": fake_server("openai").base_url}})
    missing = tmp_path / "missing_dir"
    for args, flag in ((["usage", "--plot", str(missing / "u.png")], "--plot"),
                       (["graph", "--format", "png", "-o", str(missing / "g.png")], "-o")):
        code, _, err = cli_in_process(args, capsys, home, cfg)
        assert code == 2, err
        assert f"{flag} {missing}" in err and "does not exist" in err and "mkdir -p" in err
    code, _, err = cli_in_process(["usage", "--plot", str(tmp_path)], capsys, home, cfg)
    assert code == 2 and "that is a folder" in err
    assert not missing.exists()


# -- the CLI with hostile text, and --json alone on stdout ------------------------------------------------


def test_hostile_task_text_never_breaks_run_resume_threads_or_show(
        home: Path, capsys: pytest.CaptureFixture[str], fake_server: Callable[..., FakeProvider],
        make_config: Callable[..., Path], tmp_path: Path) -> None:
    server = fake_server("openai", responder=make_responder(PLAN))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    code, out, err = cli_in_process(["run", "[/x] goal [bold]", "--scratch", "--thread-id", "hx"], capsys, home, cfg)
    assert code == 0 and HOSTILE in err  # paused for approval (no terminal), plan printed as written
    code, out, err = cli_in_process(["resume", "hx"], capsys, home, cfg)
    assert code == 0 and "Waiting for approval" in err
    code, out, _ = cli_in_process(["threads"], capsys, home, cfg)
    assert code == 0 and "[/x] goal [bold]" in out
    code, out, _ = cli_in_process(["show", "hx"], capsys, home, cfg)
    assert code == 0 and "[/x] goal [bold]" in out and HOSTILE in out


def test_json_prints_only_the_json_object_even_when_gemini_answers_empty(
        home: Path, fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path]) -> None:
    empty = '{"candidates": [], "promptFeedback": {"blockReason": "OTHER"}}'

    def blocked(_: Request) -> Reply:
        return Reply.raw(200, empty)

    gemini = fake_server("gemini", responder=blocked)
    groq = fake_server("openai", responder=make_responder(PLAN))
    cfg = make_config({"google_gemini": {"kind": "gemini", "base_url": gemini.base_url},
                       "groq_llama": {"kind": "groq", "base_url": groq.base_url}},
                      routing={"priority": ["google_gemini", "groq_llama"]})
    proc = cli(["run", "a goal", "--scratch", "--json"], home, cfg)
    assert proc.returncode == 0, proc.stderr
    assert gemini.requests, "the empty provider was tried"
    result = json.loads(proc.stdout)  # one JSON object and nothing else
    assert result["status"] == "awaiting_approval" and result["llm_calls"].get("groq_llama")
    assert "empty response" not in proc.stderr and "Traceback" not in proc.stderr
