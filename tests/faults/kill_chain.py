"""kill -9 at each node of one thread, one after the other (helpers of ``test_kill_at_each_node``).

One thread is run by the real CLI (subprocesses, real Open Interpreter in the sandbox) against a
loopback fake provider. Every process is stopped with ``kill -9`` (its whole process group) at
the next node, and the next ``resume`` must carry the thread past it: plan (its request held by
the fake), write_code (held), approve (the terminal prompt of a resume without --yes, in a pty),
run_task (the task's code waits for a file), reflect of the last batch (held), fallback (its
retry delay after a 503), finalize (just after the last answer reached the response cache). A
last ``resume`` completes it. N kill points cost N + 1 processes instead of 2 N, and only two of
them start Open Interpreter.

The fake's ``Gate`` holds or fails the next question of a kind and remembers every question that
got a real answer, so "no answered request paid twice" is checked on what reached the provider.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect

from free_llm_agent.runtime.runner import Runner
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider, Reply, Request
from tests.support.cli import options
from tests.support.paths import CLI, ROOT

THREAD = "killed"
WAIT_S = 90.0  # for any one kill point to be reached (a cold Open Interpreter start included)
RETRY_DELAY_S = 2.0  # fallback's sleep after a failed request: where the "fallback" kill lands
APPROVAL_PROMPT = r"Run this code\? \[y\]es / \[n\]o / \[e\]dit:"

PLAN: tuple[tuple[str, str], ...] = (
    ("step one", "open('runs.log','a').write('one\\n')\nprint('one')"),
    ("step two", "import os, time\nopen('runs.log','a').write('two-start\\n')\n"
                 "for _ in range(600):\n    if os.path.exists('go'):\n        break\n    time.sleep(0.1)\n"
                 "open('runs.log','a').write('two\\n')\nprint('two')"),
    ("step three", "open('runs.log','a').write('three\\n')\nprint('three')"),
    ("step four", "open('runs.log','a').write('four\\n')\nprint('four')"),
)
BATCH = 2  # batches [1, 2] and [3, 4]: plan + 2 × (code + review) = 5 answers in all
FINISHED_LINES = ("one", "two", "three", "four")


def question_kind(req: Request) -> str:
    text = req.text
    if "Break this goal" in text or "Write a new plan" in text:
        return "plan"
    if "Write the code for each of these tasks" in text:
        return "code"
    return "review" if "These tasks were just run" in text else "other"


class Gate:
    """A fake-provider responder that answers like a good model, except: ``hold(kind, after=n)`` keeps
    the next question of that kind (once ``n`` of that kind were answered) waiting (``arrived`` is
    set) until ``release()``; ``fail(kind)`` answers it with a 503. ``answered`` lists (kind, text)
    of the questions that got an answer."""

    def __init__(self) -> None:
        self._inner = make_responder(PLAN)
        self._lock = threading.Lock()
        self._hold: str | None = None
        self._after = 0
        self._fail: str | None = None
        self.arrived = threading.Event()
        self._released = threading.Event()
        self.answered: list[tuple[str, str]] = []

    def hold(self, kind: str, after: int = 0) -> None:
        with self._lock:
            self._hold, self._fail, self._after = kind, None, after
            self.arrived.clear()
            self._released.clear()

    def fail(self, kind: str) -> None:
        with self._lock:
            self._hold, self._fail = None, kind
            self.arrived.clear()

    def release(self) -> None:
        self._released.set()

    def __call__(self, req: Request) -> Reply:
        kind = question_kind(req)
        with self._lock:
            done = sum(1 for k, _ in self.answered if k == kind)
            held, failed = kind == self._hold and done >= self._after, kind == self._fail
            if held or failed:
                self._hold = self._fail = None
        if held:
            self.arrived.set()
            self._released.wait(WAIT_S)
            return Reply.error(503)  # to a dead client
        if failed:
            self.arrived.set()
            return Reply.error(503, "overloaded")
        with self._lock:
            self.answered.append((kind, req.text))
        return self._inner(req)


@dataclass
class Step:
    """One process of the chain and where it was killed."""

    node: str
    reached: bool = False
    next_nodes: tuple[str, ...] = ()  # the node(s) the thread's checkpoint has in flight, right after the kill
    status: str = ""  # the thread's status then, as ``threads`` shows it
    requests: int = 0  # requests the provider had received by then
    seconds: float = 0.0
    error: str = ""


@dataclass
class Chain:
    """One thread's processes. With ``database_url`` and ``other_home`` they alternate between two
    "machines" (two homes, one PostgreSQL database): each process resumes what the other's left."""

    home: Path
    config_dir: Path
    env: dict[str, str]
    server: FakeProvider
    gate: Gate
    steps: list[Step] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    final_seconds: float = 0.0
    database_url: str | None = None
    other_home: Path | None = None
    machines: list[str] = field(default_factory=list)  # the home each process ran in, in order
    workdir: Path | None = None  # None: --scratch (a folder in the first machine's home)

    @property
    def workspace(self) -> Path:
        return self.workdir or self.home / "workspaces" / THREAD

    def log_lines(self) -> list[str]:
        log = self.workspace / "runs.log"
        return log.read_text().splitlines() if log.exists() else []

    def argv(self, *args: str) -> list[str]:
        """The CLI's argv for the next process: machine A, then B, A, … when there are two."""
        home = self.other_home if self.other_home is not None and len(self.steps) % 2 else self.home
        self.machines.append(home.name)
        return [*CLI, *options(home, self.config_dir), *args]

    def snapshot(self) -> tuple[tuple[str, ...], str]:
        runner = Runner(self.home, database_url=self.database_url)
        try:
            snap = runner.graph.get_state(runner.config_for(THREAD))
            # the node(s) in flight: ``next``, plus one whose result was saved before the checkpoint was
            return tuple(dict.fromkeys([*snap.next, *(t.name for t in snap.tasks)])), runner.result(THREAD).status
        finally:
            runner.close()

    def cached_answers(self) -> int:
        if self.database_url:
            import psycopg

            with psycopg.connect(self.database_url) as pg:
                row = pg.execute("SELECT count(*) FROM response_cache").fetchone()
            return int(row[0]) if row else 0
        with sqlite3.connect(self.home / "agent.db", timeout=30) as conn:
            (count,) = conn.execute("SELECT count(*) FROM response_cache").fetchone()
        return int(count)


def start(chain: Chain, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            chain.argv(*args), cwd=ROOT, env=chain.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True,  # its own process group: kill -9 reaches the CLI and what it started
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job inherits SIG_IGN
        )


def wait_for(condition: Callable[[], bool], alive: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        if not alive():
            raise RuntimeError(f"the process ended before {what}")
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def kill_at(chain: Chain, node: str, args: list[str], reach: Callable[[], bool], log: Path) -> Step:
    """Start the CLI with ``args``, wait until ``reach()``, kill -9 its process group."""
    step, started = Step(node), time.monotonic()
    proc = start(chain, args, log)
    try:
        wait_for(reach, lambda: proc.poll() is None, f"the run to reach {node}")
        step.reached = True
    except RuntimeError as exc:
        step.error = f"{exc}; output: {log.read_text(errors='replace')[-2000:]}"
    finally:
        kill_group(proc.pid)
        proc.wait(timeout=30)
        step.seconds = time.monotonic() - started
        chain.gate.release()
    return finish(chain, step)


def kill_at_prompt(chain: Chain, log: Path) -> Step:
    """``resume`` without --yes in a terminal: kill -9 while the approval prompt waits for the user."""
    step, started = Step("approve"), time.monotonic()
    child = pexpect.spawn(sys.executable, chain.argv("resume", THREAD)[1:], cwd=str(ROOT), env=chain.env,
                          encoding="utf-8", use_poll=True, timeout=WAIT_S, dimensions=(50, 140))
    try:
        child.expect(APPROVAL_PROMPT)
        step.reached = True
    except (pexpect.TIMEOUT, pexpect.EOF):
        step.error = f"no approval prompt; output: {(child.before or '')[-2000:]}"
    finally:
        kill_group(child.pid)
        child.close(force=True)
        step.seconds = time.monotonic() - started
    log.write_text(child.before or "")
    return finish(chain, step)


def finish(chain: Chain, step: Step) -> Step:
    step.next_nodes, step.status = chain.snapshot()
    step.requests = sum(1 for r in chain.server.requests if r.method == "POST")
    chain.steps.append(step)
    return step


def run_chain(chain: Chain, logs: Path) -> None:
    """Every kill point in graph order, then the resume that completes; stops at the first miss."""
    gate, yes = chain.gate, ["resume", THREAD, "--yes", "--json"]
    where = ["--workdir", str(chain.workdir)] if chain.workdir else ["--scratch"]
    run = ["run", "count in four steps", *where, "--thread-id", THREAD, "--yes", "--json"]
    held = gate.arrived.is_set
    points: list[tuple[str, Callable[[], None], list[str], Callable[[], bool]]] = [
        ("plan", lambda: gate.hold("plan"), run, held),
        ("write_code", lambda: gate.hold("code"), yes, held),
        ("approve", lambda: None, [], lambda: True),  # the terminal prompt: see kill_at_prompt
        ("run_task", lambda: None, yes, lambda: "two-start" in chain.log_lines()),
        ("reflect", lambda: gate.hold("review", after=1), yes, held),  # the last batch's review
        ("fallback", lambda: gate.fail("review"), yes, lambda: held() and chain.snapshot()[0] == ("fallback",)),
        ("finalize", lambda: None, yes, lambda: _last_answer_cached(chain)),
    ]
    for node, prepare, args, reach in points:
        prepare()
        log = logs / f"{node}.log"
        step = kill_at_prompt(chain, log) if node == "approve" else kill_at(chain, node, args, reach, log)
        if node == "run_task":
            (chain.workspace / "go").write_text("")  # the resumed task may finish now
        if not step.reached:
            return
    started = time.monotonic()
    done = subprocess.run(chain.argv(*yes), cwd=ROOT, env=chain.env, capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)
    chain.final_seconds = time.monotonic() - started
    chain.final = json.loads(done.stdout) if done.stdout.strip() else {"error": done.stderr[-2000:]}
    chain.final["exit_code"] = done.returncode


def _last_answer_cached(chain: Chain) -> bool:
    """The review of the last batch was answered (again: its first ask was held, the second failed)
    and the answer is in the response cache."""
    reviews = [kind for kind, _ in chain.gate.answered if kind == "review"]
    return len(reviews) == 2 and chain.cached_answers() >= len(chain.gate.answered)
