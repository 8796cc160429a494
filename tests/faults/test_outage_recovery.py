"""Every provider fails at once, then recovers: the run pauses, keeps its work, and resumes.

Two providers (Gemini and Groq kinds) answer the plan and the first batch, then both go down
(503s, or nothing listening at all). The user sees a clean pause — status ``waiting_for_quota``
with a ``resume_after``, exit code 0, the finished tasks kept — instead of a failure; ``resume``
before that time pauses again without spending a request; once the providers are back, ``resume``
completes the goal and no answered question is asked (paid) twice, no task runs twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.fakes.agent_responder import DEFAULT_PLAN, make_responder
from tests.fakes.provider_server import FakeProvider, Reply, Request
from tests.faults.inproc import attempts, resume, run_goal
from tests.faults.report import FaultReport, Row
from tests.support.agent import FakeExecutor

pytestmark = pytest.mark.timeout(60)

SUITE = "Outage: every provider failing, then recovering"
ANSWERED_BEFORE_OUTAGE = 3  # plan, code of batch 1, review of batch 1
FAILURE_COOLDOWN_S = 2.0  # how long failing providers are left alone (limits.yaml fallback)


class Outage:
    """The providers' shared fate: up, then down after ``after`` answers (503s, or servers stopped),
    then up again. Remembers every question that got a real answer."""

    def __init__(self, mode: str, after: int) -> None:
        self.mode, self.after = mode, after
        self.down = False
        self.answered: list[str] = []
        self.servers: list[FakeProvider] = []
        self._inner = make_responder(DEFAULT_PLAN)
        self._lock = threading.Lock()

    def __call__(self, req: Request) -> Reply:
        with self._lock:
            if self.down:
                return Reply.error(503)
            self.answered.append(req.text)
            if len(self.answered) == self.after:
                self.down = True
                if self.mode == "refused":  # the listening sockets close; this answer still goes out
                    for server in self.servers:
                        server.stop()
        return self._inner(req)

    def recover(self) -> None:
        with self._lock:
            self.down = False
            for server in self.servers:
                server.start()  # the same port again


@pytest.mark.parametrize("mode", ["503", "refused"])
def test_outage_pauses_then_resume_completes_without_paying_twice(
    mode: str, fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path],
    home: Path, tmp_path: Path, fault_report: FaultReport,
) -> None:
    outage = Outage(mode, ANSWERED_BEFORE_OUTAGE)
    gemini, groq = fake_server("gemini", responder=outage), fake_server("openai", responder=outage)
    outage.servers = [gemini, groq]
    cfg = make_config(
        {"alpha": {"kind": "gemini", "base_url": gemini.base_url},
         "beta": {"kind": "groq", "base_url": groq.base_url}},
        fallback={"retry_delay_seconds": 0, "failure_cooldown_seconds": FAILURE_COOLDOWN_S},
    )
    executor, workdir = FakeExecutor(), tmp_path / "work"
    started = time.monotonic()

    paused = run_goal(cfg, home, workdir, executor)
    assert paused.status == "waiting_for_quota" and paused.exit_code == 0, paused.summary
    assert paused.resume_after is not None
    assert [t["status"] for t in paused.tasks] == ["done"] * 3 + ["pending"] * 2  # batch 1 is kept
    during_outage = attempts(home, failed=True)  # also those that found nothing listening
    assert during_outage <= 2 * 3  # each provider tried at most 3 times while down

    outage.recover()
    sent = attempts(home)
    early = resume(cfg, home, workdir, executor)  # too early: the providers are still left alone
    assert early.status == "waiting_for_quota" and early.resume_after is not None
    assert attempts(home) == sent  # ... and no request was spent finding that out
    assert [t["status"] for t in early.tasks] == ["done"] * 3 + ["pending"] * 2

    time.sleep(max(0.0, (datetime.fromisoformat(early.resume_after) - datetime.now().astimezone()).total_seconds()))
    done = resume(cfg, home, workdir, executor)
    seconds = time.monotonic() - started
    total = attempts(home)  # tried, whether or not anything listened
    survived = done.status == "completed" and len(set(outage.answered)) == len(outage.answered)
    fault_report.add(SUITE, Row(f"all providers {mode}", survived, during_outage, total, seconds,
                                f"paused, resumed after {FAILURE_COOLDOWN_S:g} s cooldown"),
                     faulty_header="requests tried while down")

    assert done.status == "completed" and done.exit_code == 0, done.summary
    assert [t["status"] for t in done.tasks] == ["done"] * len(DEFAULT_PLAN)
    assert len(executor.runs) == len(DEFAULT_PLAN)  # no task ran twice
    # plan + 2 × (code + review): each asked once, none answered twice
    assert len(outage.answered) == len(set(outage.answered)) == 5
    assert sum(done.llm_calls.values()) == 5
