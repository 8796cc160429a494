"""``run --wait`` / ``resume --wait`` / ``execution.wait``: a dry spell of quota is waited out and the thread goes
on by itself; Ctrl-C while waiting, or a wait past ``--wait-max``, leaves it paused exactly as without waiting.

The end-to-end tests run the real CLI against a fake that refuses (429) past 3 requests in any sliding minute.
The ledger's minute is 60 s and cannot be shortened, so each of them starts inside a dry spell that ends within
~25 s: two requests booked 35 s before the run in both the fake's window and the home's ledger (the goal needs 3
more). That is real waiting: two of these tests take ~25 s each."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from free_llm_agent.runtime.runner import RunResult
from free_llm_agent.runtime.waiting import WaitEvent, WaitPolicy, left_text, parse_duration, run_to_end
from free_llm_agent.storage.registry import open_state, resolve_database_url
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.support.cli import as_json, cli, cli_in_process
from tests.support.minute_limit import MinuteLimited, seed_ledger
from tests.support.paths import CLI, ROOT

pytestmark = pytest.mark.timeout(300)

PLAN = (("write a.txt", "open('a.txt','w').write('a')\nprint('a')"),
        ("write b.txt", "open('b.txt','w').write('b')\nprint('b')"),
        ("write c.txt", "open('c.txt','w').write('c')\nprint('c')"))  # one batch: plan + code + verdict = 3 requests
RPM = 3
SEEDED_AGO_S = 35.0  # the seeded requests leave the minute window ~26 s after they are booked (60 s + margin)


# ----------------------------------------------------------------------------------- the loop, on a fake clock
class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.naps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds


class _Runner:
    """Stands in for :class:`runtime.runner.Runner`: each run or resume returns the next scripted status."""

    owner = "test"

    def __init__(self, clock: _Clock, pauses: list[float | None], kind: str = "quota") -> None:
        self.clock, self.pauses, self.kind = clock, list(pauses), kind
        self.calls: list[tuple[str, float]] = []
        self.deps = self

    @contextlib.contextmanager
    def lock(self, thread_id: str, owner: str) -> Iterator[None]:
        yield

    def _next(self, thread_id: str) -> RunResult:
        if not self.pauses:
            return RunResult(thread_id=thread_id, status="completed", goal="g")
        wait = self.pauses.pop(0)
        after = None if wait is None else time.strftime(
            "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(self.clock.now + wait))
        return RunResult(thread_id=thread_id, status="waiting_for_quota", goal="g", resume_after=after,
                         interrupt={"type": "waiting_for_quota", "resume_after": after, "kind": self.kind})

    def result(self, thread_id: str) -> RunResult:
        """The thread as it stands: paused 40 s more (a ``resume --wait`` of a paused thread)."""
        after = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(self.clock.now + 40))
        return RunResult(thread_id=thread_id, status="waiting_for_quota", goal="g", resume_after=after)

    def run(self, goal: str, thread_id: str, **_: Any) -> RunResult:
        self.calls.append(("run", self.clock.now))
        return self._next(thread_id)

    def resume(self, thread_id: str, **_: Any) -> RunResult:
        self.calls.append(("resume", self.clock.now))
        return self._next(thread_id)


def _drive(pauses: list[float | None], **policy: Any) -> tuple[RunResult, _Runner, list[WaitEvent]]:
    clock = _Clock()
    runner = _Runner(clock, pauses)
    events: list[WaitEvent] = []
    result = run_to_end(runner, "t1", goal="g",  # type: ignore[arg-type]
                        policy=WaitPolicy(clock=clock.time, sleep=clock.sleep, **policy), on_wait=events.append)
    return result, runner, events


def test_each_dry_spell_is_slept_out_to_its_resume_after_then_resumed() -> None:
    result, runner, events = _drive([30, 150], report_every_s=60)
    assert result.status == "completed"
    assert [c[0] for c in runner.calls] == ["run", "resume", "resume"]
    start = 1_000_000.0
    # every resume comes at (not before) the time the quota frees up: its first request is not refused
    assert runner.calls[1][1] >= start + 30 and runner.calls[2][1] >= runner.calls[1][1] + 150
    assert runner.calls[2][1] - runner.calls[1][1] < 151
    assert [e.phase for e in events] == ["waiting", "resuming", "waiting", "tick", "tick", "resuming"]
    assert len(runner.clock.naps) == 4  # one sleep per report, no polling


def test_resume_of_a_paused_thread_waits_first_then_resumes_once() -> None:
    clock = _Clock()
    runner = _Runner(clock, [])
    result = run_to_end(runner, "t1", policy=WaitPolicy(clock=clock.time, sleep=clock.sleep))  # type: ignore[arg-type]
    assert result.status == "completed" and [c[0] for c in runner.calls] == ["resume"]
    assert runner.calls[0][1] == pytest.approx(1_000_040.05)  # at the time it was paused until, not before


def test_without_a_policy_the_pause_is_returned_as_is() -> None:
    clock = _Clock()
    runner = _Runner(clock, [30])
    result = run_to_end(runner, "t1", goal="g")  # type: ignore[arg-type]
    assert result.status == "waiting_for_quota" and result.resume_after
    assert [c[0] for c in runner.calls] == ["run"] and not clock.naps


def test_a_wait_past_the_budget_is_not_started() -> None:
    result, runner, events = _drive([30, 100], max_total_s=120)
    assert result.status == "waiting_for_quota" and result.resume_after  # paused, resumable later
    assert [c[0] for c in runner.calls] == ["run", "resume"]
    assert sum(runner.clock.naps) < 31  # the second wait (30 + 100 > 120) never started
    assert events[-1].phase == "over_budget" and "120" in events[-1].reason


def test_ctrl_c_or_the_stop_event_ends_the_wait_with_the_thread_paused() -> None:
    clock = _Clock()

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    runner = _Runner(clock, [30])
    events: list[WaitEvent] = []
    result = run_to_end(runner, "t1", goal="g", policy=WaitPolicy(clock=clock.time, sleep=interrupted),  # type: ignore[arg-type]
                        on_wait=events.append)
    assert result.status == "waiting_for_quota" and [e.phase for e in events] == ["waiting", "stopped"]

    stop = threading.Event()
    stop.set()
    runner = _Runner(clock, [3600])
    result = run_to_end(runner, "t1", goal="g", policy=WaitPolicy(stop=stop, clock=clock.time))  # type: ignore[arg-type]
    assert result.status == "waiting_for_quota" and [c[0] for c in runner.calls] == ["run"]


def test_providers_failing_again_and_again_are_not_waited_for_forever() -> None:
    """An outage (5xx, timeouts) pauses like a spent quota, but each retry costs requests: 3 in a row, then stop."""
    clock = _Clock()
    runner = _Runner(clock, [30] * 10, kind="outage")
    events: list[WaitEvent] = []
    result = run_to_end(runner, "t1", goal="g",  # type: ignore[arg-type]
                        policy=WaitPolicy(clock=clock.time, sleep=clock.sleep), on_wait=events.append)
    assert result.status == "waiting_for_quota" and len(runner.calls) == 4  # the run, then 3 resumes
    assert events[-1].phase == "gave_up" and "4 times in a row" in events[-1].reason


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400),
                                               ("1.5h", 5400), ("45", 45), ("1d", 86400), (" 2 m ", 120)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "ten minutes", "-5m", "5m later", "100ms", "m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="90s, 10m, 2h"):
        parse_duration(text)


def test_countdown_text() -> None:
    assert [left_text(s) for s in (0, 44.2, 65, 3600 + 125)] == ["0s", "45s", "1m 05s", "1h 02m"]


def test_a_bad_wait_max_is_exit_2_before_anything_starts(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, out, err = cli_in_process(["run", "a goal", "--wait-max", "10x"], capsys, home)
    assert code == 2 and not out
    assert "--wait-max" in err and "'10x' is not a duration" in err and "10m" in err
    assert not (home / "agent.db").exists()  # nothing was opened


# ------------------------------------------------------------------------------------ the real CLI, real time
@pytest.fixture
def dry(fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path
        ) -> Callable[..., tuple[MinuteLimited, FakeProvider, Path]]:
    """A fake allowing 3 requests a minute, 2 of which were used 35 s ago (in its window and in the ledger)."""

    def make(**config: Any) -> tuple[MinuteLimited, FakeProvider, Path]:
        limited = MinuteLimited(RPM, make_responder(PLAN))
        server = fake_server("openai", responder=limited)
        cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url,
                                          "limits": {"requests_per_minute": RPM, "requests_per_day": 1000}}},
                          optimization={"max_batch_size": 3}, **config)
        ago = time.time() - SEEDED_AGO_S
        limited.seed(2, ago)
        seed_ledger(cfg, home, "groq_llama", [ago, ago], resolve_database_url(None))
        return limited, server, cfg

    return make


def _refused_in_ledger(home: Path) -> int:
    """Requests the home's usage log books as not answered (a 429 is booked as ``rate_limited``)."""
    db = open_state(resolve_database_url(None), home)
    try:
        return int(db.query("SELECT COUNT(*) FROM usage_log WHERE outcome != 'ok'")[0][0])  # type: ignore[call-overload]
    finally:
        db.close()


def test_run_wait_goes_through_a_dry_spell_without_a_second_command(
        dry: Callable[..., tuple[MinuteLimited, FakeProvider, Path]], home: Path, tmp_path: Path) -> None:
    limited, server, cfg = dry()
    work = tmp_path / "work"
    work.mkdir()
    proc = cli(["run", "write three files", "--workdir", str(work), "--yes", "--json", "--wait"], home, cfg)
    assert proc.returncode == 0, proc.stderr
    out = as_json(proc)  # stdout: one JSON object; the waiting went to stderr
    assert out["status"] == "completed" and out["resume_after"] is None
    assert [t["status"] for t in out["tasks"]] == ["done"] * 3
    assert "waiting for quota until" in proc.stderr and "resuming" in proc.stderr  # it did wait, then went on
    assert sum(out["llm_calls"].values()) == 3 == len(server.requests)
    assert limited.refused == [] and _refused_in_ledger(home) == 0  # 0 requests refused: no 429 sent, none booked
    assert sorted(p.name for p in work.iterdir()) == ["a.txt", "b.txt", "c.txt"]


def test_a_wait_past_wait_max_pauses_as_without_waiting(
        dry: Callable[..., tuple[MinuteLimited, FakeProvider, Path]], home: Path) -> None:
    limited, server, cfg = dry()
    proc = cli(["run", "write three files", "--scratch", "--yes", "--json", "--wait", "--wait-max", "2s"], home, cfg)
    assert proc.returncode == 0, proc.stderr
    out = as_json(proc)
    assert out["status"] == "waiting_for_quota" and out["resume_after"]
    assert "not waiting" in proc.stderr and "--wait-max" in proc.stderr
    assert limited.refused == [] and len(server.requests) == 1  # the plan went; the code waits for the quota
    threads = json.loads(cli(["threads", "--json"], home, cfg).stdout)["threads"]
    assert [(t["thread_id"], t["status"]) for t in threads] == [(out["thread_id"], "waiting_for_quota")]


def test_ctrl_c_while_waiting_leaves_the_thread_paused_and_resume_waits_it_out(
        dry: Callable[..., tuple[MinuteLimited, FakeProvider, Path]], home: Path) -> None:
    limited, server, cfg = dry(execution={"wait": True})  # waiting from the config, no flag
    proc = subprocess.Popen(
        [*CLI, "--config-dir", str(cfg), "--home", str(home), "run", "write three files", "--scratch",
         "--thread-id", "w1", "--yes"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job inherits SIG_IGN
    )
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:  # the progress lines (no terminal: one line per event)
        seen.append(line)
        if "waiting for quota until" in line:
            break
    assert any("waiting for quota until" in line for line in seen), "".join(seen)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    stderr = "".join(seen) + rest
    assert proc.returncode == 0, stderr  # as a pause, not 130
    assert "Traceback" not in stderr and "stopped waiting (Ctrl-C)" in stderr
    assert "status: waiting_for_quota" in stderr  # the same pause and hint as without --wait
    assert f"--config-dir {cfg} --home {home} resume w1" in " ".join(stderr.split())
    assert len(server.requests) == 1  # the plan went; the rest waits

    done = cli(["resume", "w1", "--yes", "--json"], home, cfg)
    out = as_json(done)
    assert out["status"] == "completed", done.stderr
    assert "waiting for quota until" in done.stderr
    assert limited.refused == [] and _refused_in_ledger(home) == 0
