"""The storage conformance suite: every test here runs once per backend (``both_backends``).

A test gets the backend's database URL (None: SQLite files in the home) and a home, and opens what it
needs through :mod:`storage.registry`, as the application does; it asserts what a caller can observe,
never how a backend does it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from free_llm_agent.storage.registry import resolve_database_url
from tests.support.paths import ROOT

# A process that takes a thread's run lock, says so, and holds it until a line arrives on stdin.
HOLDER = """
import sys
from pathlib import Path
from free_llm_agent.storage.registry import open_guards
guards = open_guards(sys.argv[1] or None, Path(sys.argv[2]))
lock = guards.lock(sys.argv[3])
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
guards.close()
print("released", flush=True)
"""


@pytest.fixture
def url(state_backend: str) -> str | None:
    """The backend's database URL: None on SQLite, a fresh database on PostgreSQL."""
    return resolve_database_url(None)


@pytest.fixture
def store_home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def hold_lock(url: str | None, store_home: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """``hold_lock(thread_id)``: a process that holds the thread's run lock (killed at the end if still alive)."""
    started: list[subprocess.Popen[str]] = []

    def start(thread_id: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, url or "", str(store_home), thread_id],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT)
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "held", proc.stderr.read() if proc.stderr else line
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Whether ``check()`` turns true within ``timeout`` seconds (a server notices a dead client soon, not at once)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
