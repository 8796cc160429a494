"""Processes of the executor: spawned from one long-lived thread, killed with their whole tree.

Children are spawned from one process-wide thread (:func:`spawn`): the parent-death signal
(``PR_SET_PDEATHSIG``, bubblewrap's ``--die-with-parent``) fires when the *thread* that forked exits,
and LangGraph runs nodes in short-lived pool threads.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a tree is killed: not on the way to the worker's start
    import psutil

_spawn_queue: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
_spawner_lock = threading.Lock()
_spawner: threading.Thread | None = None


def kill_tree(proc: subprocess.Popen[Any], sandboxed: bool) -> None:
    """SIGKILL ``proc`` and its descendants; return when they are gone. ``sandboxed``: ``proc`` is bubblewrap,
    which exits by itself once its child is killed (killed with it, its child would be left a zombie)."""
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    for p in tree:  # first what runs inside: a sandbox's bubblewrap then reaps its child and exits itself
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5 if tree and sandboxed else 0)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    deadline = time.monotonic() + 5  # SIGKILL is delivered at once, but a process takes a moment to be gone
    while time.monotonic() < deadline and any(running(p) for p in tree):
        time.sleep(0.005)


def running(proc: psutil.Process) -> bool:
    """Whether ``proc`` is still alive (a zombie is not)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def process_tree(pid: int | None) -> list[psutil.Process]:
    """The process ``pid`` and its descendants (none when it is gone)."""
    import psutil

    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL ``procs``; reap our own children, wait (<= 3 s) until the others are gone."""
    import psutil

    alive = [p for p in procs if running(p)]
    own = {child.pid for child in psutil.Process().children()}
    mine = [p for p in alive if p.pid in own]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(mine, timeout=3)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(running(p) for p in alive):
        time.sleep(0.02)


def _spawn_loop() -> None:
    while True:
        make, future = _spawn_queue.get()
        try:
            future.set_result(make())
        except BaseException as exc:
            future.set_exception(exc)


def spawn(make: Callable[[], subprocess.Popen[Any]]) -> subprocess.Popen[Any]:
    """Run ``make`` (a Popen) on the process-wide spawner thread, which lives as long as the process."""
    global _spawner
    with _spawner_lock:
        if _spawner is None or not _spawner.is_alive():
            _spawner = threading.Thread(target=_spawn_loop, name="fla-spawner", daemon=True)
            _spawner.start()
    future: Future[subprocess.Popen[Any]] = Future()
    _spawn_queue.put((make, future))
    return future.result()


def pump(stream: IO[str] | None, answers: queue.Queue[str | None]) -> None:
    assert stream is not None
    for line in stream:
        answers.put(line)
    answers.put(None)  # the child exited
