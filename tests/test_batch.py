"""``batch FILE``: many goals on this machine, N workers sharing the quota, against loopback fakes with the
real CLI and real execution: priority first, never over the limit, re-runs that send nothing, bad files
refused before anything starts, approval and quota pauses reported per goal."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.fakes.rate_limited import RateLimited
from tests.support.cli import as_json, cli

pytestmark = pytest.mark.timeout(600)

ONE_TASK = (("write done.txt", "open('done.txt','w').write('ok')\nprint('wrote done.txt')"),)
REQUESTS_PER_GOAL = 3  # plan + one batch's code + its verdicts


@pytest.fixture
def limited_agent(fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path]
                  ) -> Callable[..., tuple[RateLimited, FakeProvider, Path]]:
    """A fake provider that refuses what goes over ``rpm`` (as a free tier), and a config that knows the limit."""
    def setup(rpm: int, **fallback: Any) -> tuple[RateLimited, FakeProvider, Path]:
        limited = RateLimited(make_responder(ONE_TASK), rpm=rpm)
        server = fake_server("openai", responder=limited)
        cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url,
                                          "limits": {"requests_per_minute": rpm}}},
                          optimization={"max_batch_size": 3}, fallback=fallback or None)
        return limited, server, cfg

    return setup


def _goal_of(text: str) -> str | None:
    found = re.search(r"goal (\d\d)", text)
    return found[1] if found else None


def _folders(tmp_path: Path, n: int) -> list[Path]:
    """One working folder per goal (goals in one folder would see each other's files)."""
    out = []
    for i in range(n):
        folder = tmp_path / f"w{i:02d}"
        folder.mkdir()
        out.append(folder)
    return out


def test_twelve_goals_three_workers_per_minute_limit_priority_first_never_refused_rerun_free(
        limited_agent: Callable[..., tuple[RateLimited, FakeProvider, Path]], home: Path, tmp_path: Path) -> None:
    """12 goals × 3 requests = 36 under 12 requests a minute: the limits allow it in no less than 2 minutes
    (the window cannot be shortened: the fake counts real time, so the scenario is kept to 3 windows)."""
    limited, _server, cfg = limited_agent(rpm=12)
    folders = _folders(tmp_path, 12)
    priorities = [1] * 4 + [5] * 4 + [9] * 4  # the file lists the least important first
    batch = tmp_path / "goals.jsonl"
    batch.write_text("".join(json.dumps({"goal": f"goal {i:02d}: write done.txt", "workdir": str(folders[i]),
                                         "priority": p}) + "\n" for i, p in enumerate(priorities)))
    proc = cli(["batch", str(batch), "--workers", "3", "--wait", "--yes", "--json"], home, cfg, timeout=500)
    assert proc.returncode == 0, proc.stderr
    out = as_json(proc)
    assert out["counts"] == {"completed": 12}
    assert all((f / "done.txt").read_text() == "ok" for f in folders)
    assert limited.refused == []  # never over the limit, although three workers shared it
    sent = len(limited.served)
    assert sent == out["requests"] == 12 * REQUESTS_PER_GOAL
    minimum = limited.min_wall_s(sent)
    assert minimum == 120.0
    assert out["wall_seconds"] <= 1.15 * minimum, (out["wall_seconds"], minimum)

    # The important goals went first: every priority-9 goal asked for its plan before any priority-5 goal,
    # and those before any priority-1 goal; the priority-9 goals all finished before any priority-1 goal.
    first_seen: list[str] = []
    for _, text in limited.served:
        goal = _goal_of(text)
        if goal is not None and goal not in first_seen:
            first_seen.append(goal)
    groups = [priorities[int(g)] for g in first_seen]
    assert groups == sorted(groups, reverse=True), first_seen
    done = {g["priority"]: [] for g in out["goals"]}  # type: dict[int, list[str]]
    for g in out["goals"]:
        done[g["priority"]].append(g["finished_at"])
    assert max(done[9]) < min(done[1])

    again = as_json(cli(["batch", str(batch), "--workers", "3", "--wait", "--yes", "--json"], home, cfg))
    assert again["counts"] == {"completed": 12} and again["requests"] == 0
    assert all(g["skipped"] for g in again["goals"])
    assert len(limited.served) == sent  # nothing reached the provider


def test_without_wait_dry_goals_end_waiting_for_quota_with_their_resume_after(
        limited_agent: Callable[..., tuple[RateLimited, FakeProvider, Path]], home: Path, tmp_path: Path) -> None:
    limited, _server, cfg = limited_agent(rpm=4)
    folders = _folders(tmp_path, 3)
    batch = tmp_path / "goals.txt"
    batch.write_text("".join(json.dumps({"goal": f"goal {i:02d}", "workdir": str(f)}) + "\n"
                             for i, f in enumerate(folders)))
    proc = cli(["batch", str(batch), "--workers", "1", "--yes", "--json"], home, cfg)
    assert proc.returncode == 0, proc.stderr
    out = as_json(proc)
    assert limited.refused == []
    # 4 requests a minute: goal 0 completes (3), goal 1 gets its plan and runs dry; goal 2 does not start
    assert [(g["status"], g["started"]) for g in out["goals"]] == [
        ("completed", True), ("waiting_for_quota", True), ("waiting_for_quota", False)]
    waiting = [g for g in out["goals"] if g["status"] == "waiting_for_quota"]
    assert all(g["resume_after"] for g in waiting)
    assert len(limited.served) == out["requests"] == 4


def test_plain_lines_run_in_workdir_and_approval_waits_until_yes(
        fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path,
        tmp_path: Path) -> None:
    server = fake_server("openai", responder=make_responder(ONE_TASK))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url,
                                      "limits": {"requests_per_minute": 100}}})
    work = tmp_path / "work"
    work.mkdir()
    batch = tmp_path / "goals.txt"
    batch.write_text("# my goals\n\nwrite done.txt\n")
    proc = cli(["batch", str(batch), "--workdir", str(work)], home, cfg)
    assert proc.returncode == 0, proc.stderr
    assert "awaiting_approval" in proc.stderr
    thread = re.search(r"waits for approval: .*resume (\S+)", proc.stderr)
    assert thread is not None, proc.stderr  # the command that approves it is printed
    assert not (work / "done.txt").exists()
    out = as_json(cli(["batch", str(batch), "--workdir", str(work), "--yes", "--json"], home, cfg))
    assert [g["status"] for g in out["goals"]] == ["completed"]
    assert out["goals"][0]["thread_id"] == thread[1] and out["goals"][0]["line"] == 3
    assert (work / "done.txt").read_text() == "ok"


@pytest.mark.parametrize(("content", "expected"), [
    ("goal one\n{\"goal\": \"two\", \"prio\": 1}\n", r"line 2: unknown field\(s\) 'prio'"),
    ("goal one\n\n{\"goal\": \"two\", \"priority\": \"high\"}\n", r"line 3: \"priority\" must be a whole number"),
    ("goal one\n{\"goal\": \"two\", \"priority\": 3000000000}\n",  # past the queue's 32-bit priority
     r"line 2: \"priority\" must be a whole number from -2147483648 to 2147483647"),
    ("{\"goal\": \"two\"\n", r"line 1: not valid JSON"),
    ("{\"goal\": \"\"}\n", r"line 1: \"goal\" must be a non-empty text"),
    ("goal one\n{\"goal\": \"x\", \"workdir\": \"no/such/folder\"}\n", r"line 2: working directory .* does not exist"),
    ("# only a comment\n\n", r"holds no goal"),
])
def test_bad_batch_file_exits_2_naming_the_line_and_starts_nothing(
        fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path, tmp_path: Path,
        content: str, expected: str) -> None:
    server = fake_server("openai", responder=make_responder(ONE_TASK))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    batch = tmp_path / "goals.txt"
    batch.write_text(content)
    proc = cli(["batch", str(batch), "--yes", "--workdir", str(tmp_path)], home, cfg)
    assert proc.returncode == 2, proc.stderr
    assert re.search(expected, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
    assert server.requests == []
    assert not (home / "checkpoints.db").exists() or "goal one" not in (home / "checkpoints.db").read_bytes().decode(
        "latin-1")


def test_missing_batch_file_exits_2(home: Path, tmp_path: Path) -> None:
    proc = cli(["batch", str(tmp_path / "nope.txt")], home)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def _states(*priorities: int) -> list[Any]:
    from free_llm_agent.runtime.batch_file import BatchGoal
    from free_llm_agent.runtime.batch_scheduler import GoalState

    return [GoalState(goal=BatchGoal(line=n + 1, goal=f"g{n}", workdir="/w", priority=p, thread_id=f"t{n}"))
            for n, p in enumerate(priorities)]


def test_scheduler_hands_out_by_priority_one_at_a_time_and_nothing_before_the_quota_frees() -> None:
    import time as clock

    from free_llm_agent.runtime.batch_scheduler import Scheduler

    states = _states(1, 9, 5, 9)
    sched = Scheduler(states, wait=True)
    first = sched.take()
    assert first is not None and first.goal.line == 2  # priority 9, the earlier line
    sched.progressed(first, "updates", {"plan": {"fallback": {"kind": "quota"}}})  # dry is not "got going"
    assert sched._probe is first
    sched.progressed(first, "custom", {"event": "llm_call"})
    second = sched.take()
    assert second is not None and second.goal.line == 4
    # The first goal finds every provider dry until T: nothing is handed out before T, and at T the waiting
    # priority-9 goal goes before the priority-5 one that never started.
    resume_at = clock.time() + 0.5
    sched.done(first, "waiting_for_quota", resume_at)
    sched.progressed(second, "custom", {"event": "task_running"})
    third = sched.take()
    assert clock.time() >= resume_at and third is first
    sched.done(third, "completed")
    sched.done(second, "completed")
    assert [s.goal.line if s else None for s in (sched.take(), sched.take())] == [3, 1]


def test_scheduler_without_wait_reports_unstarted_goals_dry_once_the_quota_runs_dry() -> None:
    import time as clock

    from free_llm_agent.runtime.batch_scheduler import Scheduler

    states = _states(5, 1)
    sched = Scheduler(states, wait=False)
    first = sched.take()
    assert first is not None
    sched.done(first, "waiting_for_quota", clock.time() + 60)
    assert sched.take() is None
    assert [(s.status, s.started) for s in states] == [("waiting_for_quota", False), ("waiting_for_quota", False)]
    assert states[1].resume_after == sched.gate


def test_thread_ids_are_stable_across_reruns_and_line_moves(tmp_path: Path) -> None:
    from free_llm_agent.runtime.batch_file import read_batch

    batch = tmp_path / "My Goals!.txt"
    batch.write_text("alpha\nbeta\nalpha\n")
    ids = [g.thread_id for g in read_batch(batch, tmp_path)]
    assert len(set(ids)) == 3 and all(i.startswith("My-Goals-") for i in ids)
    assert [g.thread_id for g in read_batch(batch, tmp_path)] == ids
    batch.write_text("beta\nalpha\n\nalpha\n")  # moved: each goal keeps its thread
    assert sorted(g.thread_id for g in read_batch(batch, tmp_path)) == sorted(ids)
    assert read_batch(batch, tmp_path)[0].thread_id == ids[1]


def test_ctrl_c_stops_a_goal_in_flight_at_its_next_step_not_after_its_end() -> None:
    """After Ctrl-C (the scheduler stopped) a worker's goal goes no further than the step it is in: it
    ends ``interrupted`` (resumed by the next run), sending nothing more."""
    from free_llm_agent.cli.commands_batch import run_one
    from free_llm_agent.runtime.batch_scheduler import Scheduler
    from free_llm_agent.runtime.runner import RunResult

    states = _states(0)
    sched = Scheduler(states, wait=False)
    taken = sched.take()
    assert taken is not None
    steps: list[str] = []

    class Goals:  # a GoalRunner whose goal has three steps (each one an LLM request in a real run)
        def drive(self, thread_id: str, goal: str, workdir: str, *, yes: bool, listener: Any = None) -> RunResult:
            for step in ("plan", "code", "verdict"):
                steps.append(step)
                if step == "plan":
                    sched.stop()  # Ctrl-C while the plan is being made
                listener("custom", {"event": "llm_call"})
            return RunResult(thread_id=thread_id, status="completed", goal=goal)

    status, resume_after = run_one(taken, Goals(), yes=False, scheduler=sched)  # type: ignore[arg-type]
    assert (status, resume_after) == ("interrupted", None)
    assert steps == ["plan"]  # no code or verdict asked for after Ctrl-C


def test_a_goal_finished_elsewhere_while_its_lock_was_awaited_is_resumed_not_run_again(tmp_path: Path) -> None:
    """Whether the goal's thread exists is decided under the thread's lock: a thread another process
    started (or finished) just before this one got the lock is resumed, never planned and run again."""
    import contextlib
    from types import SimpleNamespace

    from free_llm_agent.graph.context import Context
    from free_llm_agent.runtime.goal_runner import GoalRunner
    from free_llm_agent.runtime.runner import RunResult

    stored: dict[str, Any] = {}
    calls: list[str] = []

    @contextlib.contextmanager
    def lock(thread_id: str, owner: str | None = None) -> Any:
        stored[thread_id] = {"goal": "g"}  # another worker ran the goal while this one waited for its lock
        yield

    deps = SimpleNamespace(lock=lock, release=lambda thread_id: None)

    class FakeRunner:
        owner = "me"
        context = Context()
        graph = SimpleNamespace(get_state=lambda config: SimpleNamespace(values=stored.get(config)))

        def config_for(self, thread_id: str) -> str:
            return thread_id

        def run(self, goal: str, thread_id: str, listener: Any = None) -> RunResult:
            calls.append("run")
            return RunResult(thread_id=thread_id, status="completed", goal=goal)

        def resume(self, thread_id: str, listener: Any = None) -> RunResult:
            calls.append("resume")
            return RunResult(thread_id=thread_id, status="completed", goal="g")

    goals = GoalRunner(tmp_path, deps, context=Context(), database_url=None, size=1)  # type: ignore[arg-type]
    goals._all.append(FakeRunner())  # type: ignore[arg-type]
    goals._free.put(FakeRunner())  # type: ignore[arg-type]
    goals.drive("t1", "g", str(tmp_path), yes=True)
    assert calls == ["resume"]


def test_a_goal_whose_providers_keep_failing_is_not_waited_out_forever() -> None:
    """An outage (every provider failing, not a spent quota) is waited out at most MAX_OUTAGES times in a row
    under --wait; then the goal stops being rescheduled, so a dead provider does not eat the day's requests.
    A quota pause in between starts the count again."""
    from free_llm_agent.cli.commands_batch import run_one
    from free_llm_agent.runtime.batch_scheduler import Scheduler
    from free_llm_agent.runtime.runner import RunResult
    from free_llm_agent.runtime.waiting import MAX_OUTAGES

    states = _states(0)
    sched = Scheduler(states, wait=True)
    state = sched.take()
    assert state is not None
    kinds: list[str] = []

    class Goals:  # every drive pauses: for an outage, or (when asked) for quota
        def drive(self, thread_id: str, goal: str, workdir: str, *, yes: bool, listener: Any = None) -> RunResult:
            return RunResult(thread_id=thread_id, status="waiting_for_quota", goal=goal,
                             resume_after="2030-01-01T00:00:00+00:00", interrupt={"kind": kinds.pop(0)})

    kinds[:] = ["outage"] * MAX_OUTAGES + ["quota"] + ["outage"] * MAX_OUTAGES
    for _ in range(2 * MAX_OUTAGES + 1):
        assert run_one(state, Goals(), yes=True, scheduler=sched)[0] == "waiting_for_quota"  # type: ignore[arg-type]
    kinds[:] = ["outage"]
    status, resume_after = run_one(state, Goals(), yes=True, scheduler=sched)  # type: ignore[arg-type]
    assert (status, resume_after) == ("interrupted", None)
    assert f"every provider failed {MAX_OUTAGES + 1} times in a row" in state.note
