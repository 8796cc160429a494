"""See, and undo, what a run did to the folder (issue 20), through the real CLI: real task code run by the
real executor (in the sandbox where there is one) against a loopback fake provider.

The change list of every task (``show --json``), ``show --diff``, ``undo`` to before the run and to before
a task (byte-identical trees), the refusal when the user edited a file after the run, large and ignored
files listed but not stored, the total cap, and kill -9 during a task: the resume shows what the cut-short
attempt changed before asking, and ``undo --task N`` takes it back.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import psutil
import pytest
import yaml

from tests.fakes.provider_server import FakeProvider
from tests.support.cli import as_json
from tests.support.cli import cli as support_cli
from tests.support.paths import CLI, ROOT

pytestmark = pytest.mark.timeout(300)
Plan = tuple[tuple[str, str], ...]
KEYS = ("path", "change", "bytes_before", "bytes_after")


def cli(args: list[str], home: Path, config: Path, *, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return support_cli(args, home, config, cwd=cwd, timeout=240)


def tree(folder: Path) -> dict[str, str]:
    """Every file (sha256 of its bytes) and folder ("dir") under ``folder``: the whole tree, comparable."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), folder) + "/"] = "dir"
        for f in files:
            path = Path(root, f)
            out[os.path.relpath(path, folder)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def digest(folder: Path) -> str:
    return hashlib.sha256(json.dumps(tree(folder), sort_keys=True).encode()).hexdigest()


BINARY = bytes(range(256))
PLAN: Plan = (
    ("write docs/new.md and add a line to notes.txt",
     "import os\nos.makedirs('docs', exist_ok=True)\nopen('docs/new.md', 'w').write('hello\\nworld\\n')\n"
     "open('notes.txt', 'a').write('gamma\\n')\nprint('ok')"),
    ("append to the binary file and delete old.txt",
     "import os\nopen('img.bin', 'ab').write(bytes([0, 1, 2, 3]))\nos.remove('old.txt')\nprint('ok')"),
    ("move sub/move_me.txt to sub/deeper/moved.txt",
     "import os\nos.makedirs('sub/deeper')\nos.rename('sub/move_me.txt', 'sub/deeper/moved.txt')\nprint('ok')"),
)


def _project(var_tmp: Path) -> Path:
    project = var_tmp / "project"  # outside /tmp, which the sandbox replaces by a private one
    (project / "sub").mkdir(parents=True)
    (project / "notes.txt").write_text("alpha\nbeta\n")
    (project / "img.bin").write_bytes(BINARY)
    (project / "old.txt").write_text("old\n")
    (project / "sub" / "move_me.txt").write_text("move\n")
    return project


def _change(path: str, change: str, before: int | None, after: int | None) -> dict[str, Any]:
    return {"path": path, "change": change, "bytes_before": before, "bytes_after": after}


@pytest.mark.both_backends
def test_change_lists_diff_and_undo_to_before_the_run_and_before_a_task(
    agent: Callable[..., tuple[FakeProvider, Path]], home: Path, var_tmp: Path
) -> None:
    project = _project(var_tmp)
    initial = digest(project)
    _, cfg = agent(PLAN)
    run = cli(["run", "tidy my folder", "--workdir", str(project), "--yes"], home, cfg)
    assert run.returncode == 0, run.stderr
    assert "created docs/new.md (12 B, +2 −0 lines)" in run.stdout  # the run's summary lists each task's files
    assert "task 2 changed:" in run.stderr and "deleted old.txt (4 B)" in run.stderr  # as each task finishes
    thread = next(line.split()[-1] for line in run.stderr.splitlines() if line.startswith("thread "))

    shown = as_json(cli(["show", thread, "--json"], home, cfg))
    changes = {t["id"]: [{k: c[k] for k in KEYS} for c in t["changes"]] for t in shown["tasks"]}
    assert changes == {
        1: [_change("docs/new.md", "created", None, 12), _change("notes.txt", "modified", 11, 17)],
        2: [_change("img.bin", "modified", 256, 260), _change("old.txt", "deleted", 4, None)],
        3: [_change("sub/deeper/moved.txt", "created", None, 5), _change("sub/move_me.txt", "deleted", 5, None)],
    }
    notes = shown["tasks"][0]["changes"][1]
    assert (notes["lines_added"], notes["lines_removed"], notes["not_stored"]) == (1, 0, None)
    assert shown["tasks"][1]["changes"][0]["lines_added"] is None  # binary: no line counts
    assert not any(t["undone"] for t in shown["tasks"]) and shown["undos"] == []

    diff = cli(["show", thread, "--diff", "--task", "1"], home, cfg)
    assert diff.returncode == 0, diff.stderr
    assert "+++ b/notes.txt" in diff.stdout and "\n+gamma\n" in diff.stdout and "+++ b/docs/new.md" in diff.stdout
    binary = cli(["show", thread, "--diff", "--task", "2"], home, cfg).stdout
    assert "modified img.bin (binary): 256 B → 260 B" in binary and "-old" in binary

    # The user edits a file after the run: undo refuses, naming it, unless --force.
    after_run = (project / "notes.txt").read_text()
    (project / "notes.txt").write_text("my own edit\n")
    refused = cli(["undo", thread, "--yes"], home, cfg)
    assert refused.returncode == 2 and "notes.txt" in refused.stderr and "--force" in refused.stderr
    assert (project / "notes.txt").read_text() == "my own edit\n"  # nothing was touched
    (project / "notes.txt").write_text(after_run)  # same bytes again: no longer "changed after the run"

    # undo --task 2: the folder as it was after task 1 (task 1's changes kept, 2 and 3 taken back).
    expected_after_1 = {**tree(_project(var_tmp / "expected")), "docs/": "dir",
                        "docs/new.md": hashlib.sha256(b"hello\nworld\n").hexdigest(),
                        "notes.txt": hashlib.sha256(b"alpha\nbeta\ngamma\n").hexdigest()}
    undo2 = cli(["undo", thread, "--task", "2", "--yes"], home, cfg)
    assert undo2.returncode == 0, undo2.stderr
    assert "delete  sub/deeper/moved.txt" in undo2.stdout and "restore old.txt" in undo2.stdout
    assert tree(project) == expected_after_1

    undo_all = cli(["undo", thread, "--yes"], home, cfg)
    assert undo_all.returncode == 0, undo_all.stderr
    assert digest(project) == initial  # byte-identical to before the run, folders included
    shown = as_json(cli(["show", thread, "--json"], home, cfg))
    assert [t["undone"] for t in shown["tasks"]] == [True, True, True]
    assert [u["tasks"] for u in shown["undos"]] == [[2, 3], [1, 2, 3]]
    text = cli(["show", thread], home, cfg).stdout
    assert "undone on" in text and "created docs/new.md" in text


def test_force_undo_and_bad_input(agent: Callable[..., tuple[FakeProvider, Path]], home: Path,
                                  var_tmp: Path) -> None:
    project = _project(var_tmp)
    initial = digest(project)
    _, cfg = agent(PLAN[:1])
    out = as_json(cli(["run", "one task", "--workdir", str(project), "--yes", "--json"], home, cfg))
    thread = out["thread_id"]
    (project / "docs" / "new.md").write_text("edited by me\n")
    never = cli(["undo", thread, "--task", "7", "--yes"], home, cfg)
    assert never.returncode == 2 and "task 7" in never.stderr and "tasks that ran: 1" in never.stderr
    unknown = cli(["undo", "no-such-thread", "--yes"], home, cfg)
    assert unknown.returncode == 2 and "no-such-thread" in unknown.stderr
    asks = cli(["undo", thread, "--force"], home, cfg)  # no terminal and no --yes: asks, so refuses
    assert asks.returncode == 2 and "--yes" in asks.stderr
    wrong = cli(["show", thread, "--task", "1"], home, cfg)
    assert wrong.returncode == 2 and "--diff" in wrong.stderr
    for proc in (never, unknown, asks, wrong):
        assert "Traceback" not in proc.stderr
    forced = cli(["undo", thread, "--yes", "--force"], home, cfg)
    assert forced.returncode == 0, forced.stderr
    assert digest(project) == initial


def test_large_and_ignored_files_are_listed_not_stored_and_the_total_cap_holds(
    agent: Callable[..., tuple[FakeProvider, Path]], home: Path, var_tmp: Path
) -> None:
    project = var_tmp / "big"
    project.mkdir()
    (project / ".gitignore").write_text("*.log\nbuild/\n")
    (project / "big.dat").write_bytes(b"x" * 300_000)
    plan: Plan = (
        ("grow big.dat and write logs",
         "import os\nopen('big.dat', 'ab').write(b'y' * 10)\nopen('run.log', 'w').write('log line\\n')\n"
         "os.makedirs('build', exist_ok=True)\nopen('build/out.txt', 'w').write('built\\n')\n"
         "open('small.txt', 'w').write('small\\n')\nprint('ok')"),
    )
    _, cfg = agent(plan)
    limits = yaml.safe_load((cfg / "limits.yaml").read_text())
    limits["snapshots"] = {"max_file_mb": 0.2, "max_total_mb": 0.25}
    (cfg / "limits.yaml").write_text(yaml.safe_dump(limits))
    out = as_json(cli(["run", "make files", "--workdir", str(project), "--yes", "--json"], home, cfg))
    shown = as_json(cli(["show", out["thread_id"], "--json"], home, cfg))
    notes = {c["path"]: (c["change"], c["not_stored"]) for c in shown["tasks"][0]["changes"]}
    assert notes == {"big.dat": ("modified", "over snapshots.max_file_mb (0.2 MB)"),
                     "build/out.txt": ("created", "ignored by .gitignore"),
                     "run.log": ("created", "ignored by .gitignore"),
                     "small.txt": ("created", None)}
    store = home / "snapshots" / "objects"
    stored = [p for p in store.rglob("*") if p.is_file() and p.parent.name != "staging"]
    assert sum(p.stat().st_size for p in stored) <= 0.25 * (1 << 20)
    assert not any(p.stat().st_size >= 300_000 for p in stored)  # the large file was never copied
    undo = cli(["undo", out["thread_id"], "--yes"], home, cfg)
    assert "cannot restore big.dat (not stored: over snapshots.max_file_mb (0.2 MB))" in undo.stdout
    assert not (project / "run.log").exists() and not (project / "build").exists()  # created ones: deleted
    assert not (project / "small.txt").exists() and (project / "big.dat").stat().st_size == 300_010


KILL_PLAN: Plan = (
    ("write first.txt", "open('first.txt', 'w').write('first\\n')\nprint('one')"),
    ("write part.txt then wait for go", "import os, time\nopen('part.txt', 'w').write('partial work\\n')\n"
     "t = time.time()\nwhile not os.path.exists('go') and time.time() - t < 120:\n    time.sleep(0.05)\n"
     "print('two')"),
)


def test_kill_9_during_a_task_then_resume_shows_its_changes_before_asking_and_undo_takes_them_back(
    agent: Callable[..., tuple[FakeProvider, Path]], home: Path, var_tmp: Path
) -> None:
    project = var_tmp / "killed"
    project.mkdir()
    _, cfg = agent(KILL_PLAN)
    base = [*CLI, "--config-dir", str(cfg), "--home", str(home)]
    proc = subprocess.Popen([*base, "run", "crash", "--workdir", str(project), "--thread-id", "k9", "--yes",
                             "--json"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (project / "part.txt").exists():
        time.sleep(0.2)
    assert (project / "part.txt").exists(), "task 2 never started"
    family = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    psutil.wait_procs(family, timeout=30)

    child = pexpect.spawn(sys.executable, [*base[1:], "resume", "k9"], cwd=str(ROOT), env=dict(os.environ),
                          encoding="utf-8", timeout=120, dimensions=(50, 160),
                          use_poll=True)  # late in a full run this process may hold more than select()'s 1024 fds
    try:
        child.expect(r"Run this code\? \[y\]es / \[n\]o / \[e\]dit:")
        before_prompt = child.before or ""
        child.sendeof()  # Ctrl-D: pause, run nothing
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert "Its first attempt changed:" in before_prompt, before_prompt[-3000:]
    assert "created part.txt (13 B" in before_prompt and "undo k9 --task 2" in before_prompt
    shown = as_json(cli(["show", "k9", "--json"], home, cfg))
    assert [c["path"] for c in shown["tasks"][1]["changes"]] == ["part.txt"] and shown["tasks"][1]["interrupted"]

    undo = cli(["undo", "k9", "--task", "2", "--yes"], home, cfg)
    assert undo.returncode == 0, undo.stderr
    assert not (project / "part.txt").exists() and (project / "first.txt").exists()
    (project / "go").write_text("")  # from now on task 2 finishes at once
    asks = cli(["resume", "k9", "--json"], home, cfg)  # no terminal: a thread with undone tasks is not resumed
    assert asks.returncode == 2 and "undone" in asks.stderr and "--yes" in asks.stderr
    done = as_json(cli(["resume", "k9", "--yes", "--json"], home, cfg))
    assert done["status"] == "completed"
    assert (project / "part.txt").read_text() == "partial work\n"


def test_scratch_runs_list_their_changes_and_undo_too(agent: Callable[..., tuple[FakeProvider, Path]],
                                                        home: Path) -> None:
    _, cfg = agent((("write a.txt", "open('a.txt', 'w').write('a\\n')\nprint('ok')"),))
    out = as_json(cli(["run", "scratch work", "--scratch", "--yes", "--json"], home, cfg))
    shown = as_json(cli(["show", out["thread_id"], "--json"], home, cfg))
    assert [{k: c[k] for k in KEYS} for c in shown["tasks"][0]["changes"]] == [_change("a.txt", "created", None, 2)]
    scratch = Path(shown["workdir"])
    assert scratch.parent == (home / "workspaces").resolve() and (scratch / "a.txt").exists()
    assert cli(["undo", out["thread_id"], "--yes"], home, cfg).returncode == 0
    assert scratch.is_dir() and not any(scratch.iterdir())
