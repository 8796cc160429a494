"""While a run goes: a task's output on screen as it is printed (bounded, shown as text, never as markup
or terminal escapes), the summary's line per task, and ``threads`` showing a thread another process runs.

The end-to-end tests run the real CLI against a loopback fake model; Open Interpreter really runs the
code (sandboxed where bubblewrap works). A task waits for a file the test creates (a handshake, no
timing): what the test sees before it creates the file was shown while the task was still running.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pexpect
import pyte
import pytest
from rich.console import Console

from free_llm_agent.cli.commands_info import when
from free_llm_agent.cli.progress import PANEL_LINES, Progress
from free_llm_agent.graph.state import Task
from free_llm_agent.nodes.reflect import _judge
from free_llm_agent.nodes.schemas import Verdict
from free_llm_agent.nodes.task_line import informative_line, task_line
from free_llm_agent.tools.executor_support import OutputStream
from tests.fakes.provider_server import FakeProvider
from tests.support.cli import as_json, cli, options
from tests.support.paths import CLI

pytestmark = pytest.mark.timeout(300)
Agent = Callable[..., tuple[FakeProvider, Path]]

# The task's code builds what it prints, so the code (which the panel prints before it runs) never holds
# the printed text: what the test finds on screen is output.
WAITS = ("import os, time\n"
         "open('started', 'w').close()\n"
         "print('fir' + 'st-line', flush=True)\n"
         "print('[' + 'bold]x[/bold] and [' + 'link=file:///etc]y', flush=True)\n"
         "print(chr(27) + '[31mred' + chr(27) + '[0m text', flush=True)\n"
         "deadline = time.time() + 150\n"
         "while not os.path.exists('go') and time.time() < deadline:\n"
         "    time.sleep(0.05)\n"
         "print('sec' + 'ond-line')\n")
PLAN = (("print, wait for go, print", WAITS), ("say done", "print('all ' + 'good')"))


def screen(raw: str, rows: int = 50, cols: int = 140) -> pyte.Screen:
    """The terminal after ``raw`` (cursor moves and erasures applied)."""
    shown = pyte.Screen(cols, rows)
    pyte.Stream(shown).feed(raw.replace("\r\n", "\n").replace("\n", "\r\n"))
    return shown


def text_of(shown: pyte.Screen) -> str:
    return "\n".join(line.rstrip() for line in shown.display)


def waiting_agent(agent: Agent) -> tuple[FakeProvider, Path]:
    return agent(PLAN, execution={"task_timeout_seconds": 200})


# ----------------------------------------------------------------------------- on screen, while it runs


def test_a_tasks_output_is_on_screen_while_it_runs_as_text(agent: Agent, home: Path, var_tmp: Path) -> None:
    _, cfg = waiting_agent(agent)
    project = var_tmp / "project"
    project.mkdir()
    seen = io.StringIO()
    child = pexpect.spawn(sys.executable, [*CLI[1:], *options(home, cfg), "run", "wait for me", "--yes",
                                           "--thread-id", "live"],
                          cwd=str(project), encoding="utf-8", use_poll=True, timeout=150, dimensions=(50, 140))
    child.logfile_read = seen
    try:
        child.expect_exact("first-line")
        child.expect_exact(r"\x1b[31mred\x1b[0m text")  # the escape sequence as text
        assert not (project / "go").exists()  # the task is still waiting: this was shown while it ran
        shown = screen(seen.getvalue())
        now = text_of(shown)
        assert re.search(r"│ first-line$", now, re.MULTILINE), now  # in the panel, under the running task
        assert "│ [bold]x[/bold] and [link=file:///etc]y" in now  # markup as written
        row = next(i for i, line in enumerate(shown.display) if r"\x1b[31mred" in line)
        col = shown.display[row].index("red\\x1b")
        assert all(shown.buffer[row][c].fg == "default" for c in range(col, col + 3))  # "red" is not red
        assert "second-line" not in now
        (project / "go").touch()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, seen.getvalue()[-3000:]
    final = text_of(screen(seen.getvalue(), rows=200))
    assert "✔ Task 1: print, wait for go, print — second-line" in final  # the summary's line: its last output
    assert "✔ Task 2: say done — all good" in final


def test_output_shows_line_by_line_in_a_log_and_not_at_all_with_json(agent: Agent, home: Path,
                                                                       var_tmp: Path) -> None:
    _, cfg = agent((("count", "for i in range(3):\n    print('line', i + 100)"), ("end", "print('bye')")))
    logged = cli(["run", "count to three", "--yes"], home, cfg, cwd=var_tmp)
    assert logged.returncode == 0, logged.stderr
    assert "task 1 │ line 100\n" in logged.stderr and "task 1 │ line 102\n" in logged.stderr  # stderr: no terminal
    assert "│" not in logged.stdout  # the summary alone on stdout
    quiet = cli(["run", "count to three", "--yes", "--json"], home, cfg, cwd=var_tmp)
    assert "line 100" not in quiet.stderr and "│" not in quiet.stderr
    assert "line 102" in as_json(quiet)["tasks"][0]["output"]  # stdout: the one JSON object


# ----------------------------------------------------------------------------- the summary's line per task


def test_the_summary_says_what_each_task_did(agent: Agent, home: Path, var_tmp: Path) -> None:
    plan = (
        ("add up", "print('reading numbers')\nprint('total: 42')\nprint()\nprint('-' * 20)"),
        ("write the report", "with open('report.md', 'w') as f:\n    f.write('# report\\n')"),
        ("parse the input", "print('step one')\nraise ValueError('bad input value')"),
        ("do nothing visible", "x = 1"),
    )
    _, cfg = agent(plan)
    proc = cli(["run", "make a report", "--yes"], home, cfg, cwd=var_tmp)
    assert proc.returncode == 1, proc.stderr  # task 3 failed
    lines = proc.stdout.splitlines()
    assert "✔ Task 1: add up — total: 42" in lines, proc.stdout  # not the separator, not the blank line
    assert "✔ Task 2: write the report" in lines, proc.stdout
    report = lines.index("✔ Task 2: write the report")  # printed nothing: the files it created say what it did
    assert lines[report + 1].strip().startswith("created report.md")
    assert "✘ Task 3: parse the input — ValueError: bad input value" in lines  # the exception, not a frame
    assert "✔ Task 4: do nothing visible — no output" in lines


IPYTHON_TRACEBACK = """step one
---------------------------------------------------------------------------
KeyError                                  Traceback (most recent call last)
Cell In[3], line 2
      1 print('step one')
----> 2 {}['x']

KeyError: 'x'"""
PYTHON_TRACEBACK = """Traceback (most recent call last):
  File "/w/job.py", line 3, in <module>
    main()
    ~~~~^^
ZeroDivisionError: division by zero
"""


@pytest.mark.parametrize(("task", "line"), [
    ({"status": "done", "output": "12 rows\n3 files written\n\n=====\n"}, "3 files written"),
    ({"status": "done", "output": "   7 warnings\n"}, "7 warnings"),  # a number first is output, not a frame
    ({"status": "done", "output": "", "changes": [{"path": "a"}]}, ""),  # its changes are listed under it
    ({"status": "done", "output": ""}, "no output"),
    ({"status": "failed", "output": IPYTHON_TRACEBACK, "error": "KeyError: 'x'"}, "KeyError: 'x'"),
    ({"status": "failed", "output": "ls: cannot access 'x': No such file\n", "error": "exit status 2"},
     "exit status 2: ls: cannot access 'x': No such file"),
    ({"status": "failed", "output": "step 1\nstep 2\n", "error": "timeout after 5s"},
     "timeout after 5s; last output: step 2"),
    ({"status": "failed", "output": "x" * 300, "error": ""}, "x" * 159 + "…"),
    ({"status": "skipped", "error": "rejected by the user"}, "not run (rejected by the user)"),
])
def test_a_tasks_line_is_its_most_informative(task: dict[str, object], line: str) -> None:
    assert task_line(task) == line


def test_a_traceback_gives_its_exception_line() -> None:
    assert informative_line(PYTHON_TRACEBACK) == "ZeroDivisionError: division by zero"
    assert informative_line(IPYTHON_TRACEBACK) == "KeyError: 'x'"


def test_a_task_the_judge_failed_says_why() -> None:
    ran: Task = {"id": 1, "status": "done", "attempts": 2, "error": ""}
    judged = _judge(ran, Verdict(task_id=1, verdict="failed", hint="the file is empty"), 2)
    assert judged["error"] == "judged not achieved: the file is empty"
    gave_up = _judge(ran, Verdict(task_id=1, verdict="retry", hint="sort it"), 2)
    assert gave_up["status"] == "failed" and gave_up["error"] == "not achieved after 2 attempts: sort it"
    assert task_line({**ran, **judged}) == "judged not achieved: the file is empty"


# ----------------------------------------------------------------------------- the panel and the stream


def test_the_panel_keeps_the_last_lines_and_a_progress_bar_redraws_one() -> None:
    buf = io.StringIO()
    with Progress(Console(file=buf, force_terminal=True, width=80, color_system=None), live=True) as p:
        p("custom", {"event": "task_running", "task_id": 1, "description": "d", "language": "python", "code": ""})
        p("custom", {"event": "task_output", "task_id": 1,
                     "text": "".join(f"row {i}\n" for i in range(20)) + "10%\r50%\r"})
        p("custom", {"event": "task_output", "task_id": 1, "text": "100%\n" + "w" * 500 + "\n\u202eevil\n"})
        assert p.output is not None
        assert p.output[1] == ("row 17", "row 18", "row 19", "100%", "w" * 400 + "…", "\\u202eevil")
        assert len(p.output[1]) == PANEL_LINES
        p("custom", {"event": "task_finished", "task_id": 1, "status": "done", "error": "", "duration_s": 1.0})
        assert p.output is None  # the panel shows the running task's output only


def stream(marker: str = "__MARK__") -> tuple[OutputStream, list[str]]:
    got: list[str] = []
    return OutputStream(got.append, marker), got


def test_the_stream_passes_whole_lines_without_the_status_marker() -> None:
    out, got = stream()
    out.add("first\nsec")
    out.flush()
    assert got == ["first\n"]  # "sec" is not a whole line yet
    out.add("ond\n\n__MARK__null\n")
    out.flush(final=True)
    assert got == ["first\n", "second\n\n"]
    out, got = stream()
    out.add("no newline at the end__MARK__0\n")  # a shell task's marker after output without a newline
    out.flush(final=True)
    assert got == ["no newline at the end\n"]


def test_the_stream_is_bounded() -> None:
    out, got = stream()
    out.add("".join(f"{i}\n" for i in range(1000)) + "y" * 5000)
    out.flush()
    lines = "".join(got).splitlines()
    assert len(lines) == OutputStream.MAX_LINES + 1 and lines[-1] == "y" * OutputStream.MAX_LINE + "…"
    assert lines[0].startswith("… (more output") and lines[-2] == "999"
    out.add("y" * 100 + "\nafter\n")  # the rest of the long line is dropped, up to its end
    out.flush()
    assert got[-1] == "after\n"
    out.add("z" * (OutputStream.MAX_PENDING * 2) + "\nlast\n")  # more than can wait between two flushes
    out.flush()
    assert got[-1] == "… (more output; the task's result keeps its head and tail)\nlast\n"


def test_a_failing_watcher_never_stops_the_task() -> None:
    def broken(text: str) -> None:
        raise RuntimeError("the screen went away")

    out = OutputStream(broken, "__MARK__")
    out.add("a line\n")
    out.flush(final=True)  # no exception


# ----------------------------------------------------------------------------- threads


def threads(home: Path, cfg: Path, database_url: str | None) -> dict[str, dict[str, object]]:
    listed = as_json(cli(["threads", "--json"], home, cfg, database_url=database_url))
    return {str(t["thread_id"]): t for t in listed["threads"]}


def started_task(project: Path, run: subprocess.Popen[str]) -> bool:
    """Whether the waiting task has started (it creates ``started``); False when the run ended first."""
    while not (project / "started").exists():
        try:
            run.wait(timeout=0.05)
            return (project / "started").exists()
        except subprocess.TimeoutExpired:
            continue
    return True


def test_threads_shows_a_thread_another_process_runs(agent: Agent, home: Path, var_tmp: Path,
                                                     database_url: str | None) -> None:
    _, cfg = waiting_agent(agent)
    project = var_tmp / "project"
    project.mkdir()
    run = subprocess.Popen([*CLI, *options(home, cfg, database_url), "run", "wait for me", "--yes", "--json",
                            "--thread-id", "busy"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        assert started_task(project, run), run.communicate()[1]
        row = threads(home, cfg, database_url)["busy"]
        assert row["status"] == "running" and f"pid {run.pid} " in str(row["holder"])
        assert row["workdir"] == str(project.resolve())
        started, updated = (datetime.fromisoformat(str(row[k])) for k in ("started_at", "updated_at"))
        assert started <= updated and started.tzinfo is not None
        table = cli(["threads"], home, cfg, database_url=database_url)
        assert table.returncode == 0, table.stderr
        line = next(line for line in table.stdout.splitlines() if "busy" in line)
        assert "running" in line and when(str(row["started_at"]), datetime.now().astimezone()) in line
        assert project.name in table.stdout  # the folder (the table may wrap a long path)
        (project / "go").touch()
        out, err = run.communicate(timeout=200)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, err
    assert json.loads(out)["status"] == "completed"  # stdout: the one JSON object
    assert "first-line" not in err  # with --json nothing of the output is shown
    after = threads(home, cfg, database_url)["busy"]
    assert after["status"] == "completed" and after["holder"] is None


def test_times_read_as_local_time() -> None:
    now = datetime.fromisoformat("2025-06-11T15:00:00+00:00")
    assert when("2025-06-11T09:05:00+00:00", now) == "09:05"
    assert when("2025-06-10T09:05:00+00:00", now) == "yesterday 09:05"
    assert when("2025-06-08T09:05:00+00:00", now) == "Sun 09:05"
    assert when("2025-01-02T09:05:00+00:00", now) == "2 Jan 09:05"
    assert when("2024-01-02T09:05:00+00:00", now) == "2024-01-02"
    assert when(None, now) == ""


HOLD = """
import sys
from pathlib import Path
from free_llm_agent.storage.registry import open_guards
open_guards(None, Path(sys.argv[1])).lock("t1").acquire()
print("held", flush=True)
sys.stdin.readline()
"""


def test_without_the_kernels_lock_table_a_live_holder_on_this_machine_decides(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ``/proc/locks`` cannot be read (not Linux), a lock file's note names a live process here or not."""
    import free_llm_agent.storage.sqlite.guard as file_guard
    from free_llm_agent.storage.registry import open_guards

    monkeypatch.setattr(file_guard, "_flocks", lambda: None)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(home)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    guards = open_guards(None, home)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert list(guards.holders(["t1", "t2"])) == ["t1"]
        holder.kill()  # kill -9: the note stays in the lock file, its process is gone
        holder.wait(timeout=30)
        assert (home / "locks" / "t1.lock").read_text().startswith(f"pid {holder.pid} ")
        assert guards.holders(["t1"]) == {}
    finally:
        guards.close()
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
