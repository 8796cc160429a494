"""Damaged state never gives a traceback (issue 9), and ``doctor [--repair]`` checks and repairs a home.

Real homes with real threads (the runner with a scripted model and a fake executor), damaged the
way disks and copies damage them: a truncated or overwritten file, garbage in one thread's rows, a
page of noise, an unwritable home, a lock left by a dead process. Commands run in process
(``tests.support.cli.cli_in_process``), so a traceback would fail the test rather than print.

Unwritable home: the tests run as root, and root ignores permission bits. So an unwritable home is
``chmod 0o500`` for other users, and for root ``/sys`` (sysfs: no file can be created there, even by
root); with neither, that test is skipped. ``agent.db`` being a folder gives SQLite the same "unable
to open database file" and is tested everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from free_llm_agent.graph.context import Context
from free_llm_agent.runtime.runner import Runner
from free_llm_agent.storage.sqlite.db import Database
from free_llm_agent.storage.sqlite.guard import ThreadLock
from tests.support.agent import Brain, FakeExecutor
from tests.support.cli import cli_in_process

THREADS = ("t-one", "t-two", "t-three")
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with three finished threads and a few quota records."""
    home = tmp_path_factory.mktemp("template") / "home"
    home.mkdir()
    for tid in THREADS:
        runner = Runner(home, llm=Brain([["first", "second"]]).model(), context=Context(auto_approve=True),
                        executor_factory=FakeExecutor().factory)
        try:
            runner.run(f"goal of {tid}", tid)
        finally:
            runner.close()
    db = Database(home / "agent.db")
    with db.transaction() as conn:
        conn.execute("INSERT INTO cooldowns (provider, until, reason) VALUES ('prov', 4102444800, 'quota')")
        conn.execute("INSERT INTO quota_periods (provider, period, start, requests, tokens)"
                     " VALUES ('prov', 'day', 1700000000, 1, 12)")
    db.close()
    return home


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "state"
    shutil.copytree(template, copy)
    return copy


@pytest.fixture(autouse=True)
def keep_sigint() -> Iterator[None]:
    """``run``/``resume`` install a Ctrl-C handler; in process, put pytest's back."""
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], make_config: Callable[..., Path]) -> Cli:
    """``cli(home, *args) -> (exit code, stdout, stderr)``: :func:`cli_in_process` with this file's one config
    bound (a thin adapter: every test here runs commands on a home and nothing else changes)."""
    config = make_config({"loc": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", "local": True,
                                  "api_key_env": None}})

    def call(home: Path, *args: str) -> tuple[int, str, str]:
        return cli_in_process(args, capsys, home, config)

    return call


def threads_json(cli: Cli, home: Path) -> dict[str, dict[str, object]]:
    code, out, _ = cli(home, "threads", "--json")
    assert code == 0
    return {t["thread_id"]: t for t in json.loads(out)["threads"]}


def spoil_thread(home: Path, thread_id: str) -> None:
    """Overwrite bytes inside every row of one thread (its goal text) on disk: SQLite sees nothing wrong."""
    path = home / "checkpoints.db"
    data = bytearray(path.read_bytes())
    needle = f"goal of {thread_id}".encode()
    start = data.find(needle)
    assert start >= 0
    while start >= 0:
        data[start:start + 4] = b"\xff\xfe\xff\xfe"
        start = data.find(needle, start + 1)
    path.write_bytes(bytes(data))


def damaged_copies(home: Path, name: str) -> list[Path]:
    """The databases moved aside (their ``-wal``/``-shm``, when a command left them, go along and are not listed)."""
    return sorted(p for p in home.glob(f"{name}.damaged-*") if not p.name.endswith(("-wal", "-shm")))


def test_a_healthy_home_is_healthy(cli: Cli, home: Path) -> None:
    code, out, _ = cli(home, "doctor")
    assert code == 0 and "healthy" in out and "3 of 3 threads readable" in out
    code, out, _ = cli(home, "doctor", "--json")
    report = json.loads(out)
    assert code == 0 and report["healthy"] is True and report["actions"] == []
    code, out, err = cli(home, "doctor", "--database-url", "postgresql://agent:secret@127.0.0.1:1/agent")
    assert code == 2 and "cannot connect to the database postgresql://agent:***@127.0.0.1:1/agent" in err
    assert "secret" not in out + err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_agent_db_is_named_with_its_fix_and_repaired(cli: Cli, home: Path, damage: str) -> None:
    path = home / "agent.db"
    if damage == "truncate":
        os.truncate(path, path.stat().st_size // 2)
    else:
        path.write_bytes(b"this is not a database" * 300)
    before = path.read_bytes()
    for args in (["usage"], ["usage", "--json"], ["check"], ["run", "say hi", "--yes"], ["resume", "t-one", "--yes"]):
        code, out, err = cli(home, *args)
        assert code == 2, args
        assert f"{path} is damaged" in err and "doctor --repair" in err and f"--home {home}" in err
    assert path.read_bytes() == before  # nothing was rewritten
    assert threads_json(cli, home)["t-one"]["status"] == "completed"  # threads do not need agent.db

    code, out, _ = cli(home, "doctor")
    assert code == 1 and "agent.db" in out and "damaged" in out
    code, out, _ = cli(home, "doctor", "--repair")
    assert code == 0 and "moved agent.db aside" in out
    assert [p.read_bytes() for p in damaged_copies(home, "agent.db")] == [before]
    code, out, _ = cli(home, "usage", "--json")
    assert code == 0 and "loc" in json.loads(out)["providers"]
    code, out, _ = cli(home, "doctor", "--repair")
    assert code == 0 and "repaired" not in out and len(damaged_copies(home, "agent.db")) == 1  # twice: no-op


def test_one_unreadable_thread_never_hides_the_others(cli: Cli, home: Path) -> None:
    spoil_thread(home, "t-two")
    rows = threads_json(cli, home)
    assert {t: r["status"] for t, r in rows.items()} == {"t-one": "completed", "t-two": "damaged",
                                                         "t-three": "completed"}
    code, out, err = cli(home, "threads")
    assert code == 0 and "damaged" in out and "goal of t-three" in out and "doctor --repair" in err
    code, _, err = cli(home, "show", "t-two")
    assert code == 2 and "'t-two'" in err and "checkpoints.db" in err and "doctor --repair" in err
    code, _, err = cli(home, "resume", "t-two", "--yes")
    assert code == 2 and "'t-two'" in err and "doctor --repair" in err
    code, out, _ = cli(home, "show", "t-one")
    assert code == 0 and "goal of t-one" in out

    code, out, _ = cli(home, "doctor", "--json")
    report = json.loads(out)
    assert code == 1 and [f["subject"] for f in report["findings"] if not f["ok"]] == ["thread t-two"]
    (home / "journal").mkdir(exist_ok=True)
    (home / "journal" / "t-two.json").write_text(json.dumps({"key": "k", "state": "started", "task_id": 1}))
    code, out, _ = cli(home, "doctor", "--repair")
    assert code == 0 and "moved checkpoints.db aside" in out and "thread t-two: nothing readable" in out
    assert "moved journal/t-two.json aside" in out  # its thread is gone now: a second pass tidies it
    assert len(damaged_copies(home, "checkpoints.db")) == 1
    assert {t: r["status"] for t, r in threads_json(cli, home).items()} == {"t-one": "completed",
                                                                           "t-three": "completed"}
    code, out, _ = cli(home, "resume", "t-three", "--yes")
    assert code == 0 and "goal of t-three" in out
    code, out, _ = cli(home, "doctor", "--repair")
    assert code == 0 and "repaired" not in out  # twice: no-op


def test_a_truncated_checkpoints_db_keeps_what_it_can(cli: Cli, home: Path) -> None:
    path = home / "checkpoints.db"
    os.truncate(path, int(path.stat().st_size * 0.45))
    code, out, err = cli(home, "threads")
    assert code == 0 and "checkpoints.db is damaged" in err and "doctor --repair" in err
    for args in (["show", "t-three"], ["resume", "t-three", "--yes"], ["run", "again", "--thread-id", "t-three"]):
        code, _, err = cli(home, *args)
        assert code == 2, args
        assert "checkpoints.db" in err and "doctor --repair" in err
    code, out, _ = cli(home, "doctor")
    assert code == 1 and "checkpoints.db" in out
    code, out, _ = cli(home, "doctor", "--repair")
    assert code == 0 and damaged_copies(home, "checkpoints.db")
    rows = threads_json(cli, home)
    assert rows["t-one"]["status"] == "completed"  # on the pages that survived
    assert "damaged" not in {r["status"] for r in rows.values()}
    code, out, _ = cli(home, "show", "t-one")
    assert code == 0 and "goal of t-one" in out


def test_a_page_of_noise_in_checkpoints_db(cli: Cli, home: Path) -> None:
    path = home / "checkpoints.db"
    data = bytearray(path.read_bytes())
    page = data.find(b"goal of t-two") // 4096
    data[page * 4096:(page + 1) * 4096] = b"\xa5" * 4096
    path.write_bytes(bytes(data))
    code, out, _ = cli(home, "threads", "--json")
    assert code == 0 and {t["thread_id"] for t in json.loads(out)["threads"]} == set(THREADS)
    code, out, _ = cli(home, "doctor")
    assert code == 1 and "checkpoints.db" in out
    code, out, _ = cli(home, "doctor", "--repair")
    assert code == 0 and damaged_copies(home, "checkpoints.db")
    assert threads_json(cli, home)["t-three"]["status"] == "completed"
    code, out, _ = cli(home, "show", "t-three")
    assert code == 0 and "goal of t-three" in out


def _unwritable_home(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        path = tmp_path / "readonly"
        path.mkdir()
        path.chmod(0o500)
        return path
    sysfs = Path("/sys")
    try:
        (sysfs / "free-llm-agent-probe").touch()
    except OSError:
        return sysfs
    pytest.skip("no folder here is unwritable for root")


def test_an_unwritable_home_says_choose_a_writable_home(cli: Cli, tmp_path: Path) -> None:
    home = _unwritable_home(tmp_path)
    for args in (["usage"], ["check"], ["threads"], ["show", "x"], ["run", "say hi", "--yes"], ["resume", "x"]):
        code, _, err = cli(home, *args)
        assert code == 2, args
        assert str(home) in err and "writable --home" in err
    code, out, _ = cli(home, "doctor", "--repair")
    assert code == 1 and "cannot create files here" in out


def test_a_state_file_that_cannot_be_opened(cli: Cli, home: Path) -> None:
    (home / "agent.db").unlink()
    (home / "agent.db").mkdir()
    code, _, err = cli(home, "usage")
    assert code == 2 and f"{home / 'agent.db'} cannot be opened" in err and "writable --home" in err
    code, out, _ = cli(home, "doctor")
    assert code == 1 and "cannot be opened" in out
    assert threads_json(cli, home)["t-one"]["status"] == "completed"


def test_a_locks_folder_that_cannot_be_used(cli: Cli, home: Path) -> None:
    shutil.rmtree(home / "locks")
    (home / "locks").write_text("not a folder")
    code, _, _ = cli(home, "show", "t-one")
    assert code == 0
    code, _, err = cli(home, "resume", "t-one", "--yes")
    assert code == 2 and str(home / "locks") in err
    code, out, _ = cli(home, "doctor")
    assert code == 1 and "locks/" in out and "not a folder" in out


def test_stale_locks_and_leftover_journal_entries(cli: Cli, home: Path) -> None:
    stale = home / "locks" / "t-one.lock"
    stale.write_text("pid 999999999 on elsewhere")
    journal = home / "journal"
    journal.mkdir(exist_ok=True)
    (journal / "t-gone.json").write_text(json.dumps({"key": "k", "state": "started", "task_id": 1}))
    (journal / "t-two.json").write_text("{broken")
    (journal / "t-one.123.tmp").write_text("half")
    code, out, _ = cli(home, "doctor", "--json")
    problems = {f["subject"] for f in json.loads(out)["findings"] if not f["ok"]}
    assert code == 1 and problems == {"locks/t-one.lock", "journal/t-gone.json", "journal/t-two.json",
                                      "journal/t-one.123.tmp"}
    code, out, _ = cli(home, "doctor", "--repair")
    assert code == 0 and "cleared stale lock locks/t-one.lock" in out
    assert stale.read_text() == "" and not list(journal.glob("*.json")) and not list(journal.glob("*.tmp"))
    assert len(list(journal.glob("*.damaged-*"))) == 3  # moved aside, not deleted
    code, out, _ = cli(home, "resume", "t-one", "--yes")
    assert code == 0


def test_a_run_in_progress_is_not_repaired_under_it(cli: Cli, home: Path) -> None:
    spoil_thread(home, "t-two")
    with ThreadLock(home, "t-one"):
        code, out, _ = cli(home, "doctor", "--repair")
        assert code == 1 and "a run is in progress" in out and "held" in out
        assert not damaged_copies(home, "checkpoints.db")
    code, out, _ = cli(home, "doctor", "--repair")
    assert code == 0 and damaged_copies(home, "checkpoints.db")


def test_an_agent_db_from_a_newer_version_is_reported_not_moved(cli: Cli, home: Path) -> None:
    with sqlite3.connect(home / "agent.db") as conn:
        conn.execute("PRAGMA user_version = 99")
    code, out, _ = cli(home, "doctor", "--repair")
    assert code == 1 and "made by a newer version" in out and "upgrade" in out
    assert not damaged_copies(home, "agent.db")


def test_doctor_report_text_is_not_markup(cli: Cli, home: Path) -> None:
    (home / "journal").mkdir(exist_ok=True)
    (home / "journal" / "[red]x[bold].json").write_text("{")
    code, out, _ = cli(home, "doctor")
    assert code == 1 and "journal/[red]x[bold].json" in out
