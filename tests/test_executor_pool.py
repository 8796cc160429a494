"""Warm executors: started while the plan is asked for, reused by the next thread with the same working
directory (without its variables), never shared across working directories or network settings, closed
when idle, and gone as soon as they are closed. Real executor (Open Interpreter in its child process)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import psutil
import pytest

from free_llm_agent.config import Execution
from free_llm_agent.graph.context import Context
from free_llm_agent.runtime.deps import Deps
from free_llm_agent.runtime.runner import Runner
from free_llm_agent.tools.isolated_executor import IsolatedExecutor
from free_llm_agent.tools.sandbox import probe
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider, Reply, Request
from tests.support.agent import Brain, scripted
from tests.support.paths import CLI, ROOT

pytestmark = pytest.mark.timeout(300)
DEADLINE_S = 60.0  # generous: the machine may be busy; nothing here asserts a duration


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {DEADLINE_S:g}s: {what}")


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cmdlines(procs: list[psutil.Process]) -> list[str]:
    lines = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            lines.append(" ".join(proc.cmdline()))
    return lines


def test_the_cli_starts_the_kernel_while_the_plan_answer_is_still_on_its_way(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path, tmp_path: Path
) -> None:
    answer_plan = threading.Event()
    plan = (("say hi", "print('hi from the warm kernel')"),)
    respond = make_responder(plan)

    def held(req: Request) -> Reply:
        if "Break this goal" in req.text:
            answer_plan.wait(DEADLINE_S * 2)
        return respond(req)

    server = fake_server("openai", responder=held)
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    workdir = tmp_path / "project"
    workdir.mkdir()
    cli = subprocess.Popen(
        [*CLI, "--config-dir", str(cfg), "--home", str(home), "run",
         "say hi", "--workdir", str(workdir), "--yes", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: server.requests, "the plan request")
        # The plan is not answered yet, and the executor's Python kernel is already starting.
        wait_for(lambda: any("ipykernel" in line for line in cmdlines(tree(cli.pid))), "a kernel under the CLI")
        assert any("free_llm_agent.tools.executor_worker" in line for line in cmdlines(tree(cli.pid)))
        assert cli.poll() is None and len(server.requests) == 1
    finally:
        answer_plan.set()
    out, err = cli.communicate(timeout=DEADLINE_S * 2)
    assert cli.returncode == 0, err
    assert '"status": "completed"' in out and "hi from the warm kernel" in out


def test_threads_with_the_same_workdir_share_one_warm_process_but_not_its_variables(tmp_path: Path) -> None:
    def code(tid: int, attempt: int) -> tuple[str, str]:
        return ("python", "secret = 41\nprint('set')" if attempt == 1 else "print('secret' in dir(), 'left')")

    brain = Brain([["remember a number"]], code=code)
    shared, other, home = tmp_path / "shared", tmp_path / "other", tmp_path / "home"
    for folder in (shared, other, home):
        folder.mkdir()
    runner = Runner(home, llm=brain.model(), context=Context(auto_approve=True, workdir=str(shared)))
    try:
        first = runner.run("goal one", "thread-a")
        assert first.status == "completed", first.summary
        [pooled] = runner.deps.executors()  # back in the pool, still running
        assert isinstance(pooled, IsolatedExecutor) and pooled.pid is not None
        pid = pooled.pid

        second = runner.run("goal two", "thread-b")
        assert second.status == "completed", second.summary
        assert second.tasks[0]["output"].strip() == "False left"  # thread-a's variable did not leak
        assert runner.deps.executors() == [pooled] and pooled.pid == pid  # the same warm process ran it

        runner.context.workdir = str(other)
        third = runner.run("goal three", "thread-c")
        assert third.status == "completed", third.summary
        executors = runner.deps.executors()
        assert len(executors) == 2 and pooled in executors  # another folder: another executor
        assert {ex.workspace for ex in executors} == {shared.resolve(), other.resolve()}
        pids = [getattr(ex, "pid", None) for ex in executors]
    finally:
        runner.close()
    assert all(pid is None or gone(pid) for pid in pids)  # the CLI's exit closes every one


class Counting:
    """An executor factory making a new fake per call (the pool decides what is shared)."""

    def __init__(self) -> None:
        self.made: list[tuple[Path, bool]] = []

    def __call__(self, workdir: Path, timeout_s: float, network: bool) -> Any:
        self.made.append((workdir, network))
        return _Fake(workdir)


class _Fake:
    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.closed = False
        self.resets = 0

    def run(self, language: str, code: str) -> Any:
        raise AssertionError("not run here")

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closed = True


def test_the_pool_never_shares_across_workdirs_or_network_settings(tmp_path: Path) -> None:
    factory = Counting()
    deps = Deps(llm=scripted(), home=tmp_path, executor_factory=factory, execution=Execution())
    a, b = tmp_path / "a", tmp_path / "b"
    first = cast(_Fake, deps.executor("t1", a, 5.0))
    deps.release("t1")
    assert deps.executor("t2", b, 5.0) is not first  # another folder
    assert deps.executor("t3", a, 5.0, network=False) is not first  # same folder, no network
    assert deps.executor("t4", a, 5.0) is first and first.resets == 1  # same key: reused, reset first
    assert len(factory.made) == 3
    deps.close_all()
    assert first.closed and not deps.executors()


def test_an_idle_executor_is_closed_after_the_idle_time(tmp_path: Path) -> None:
    deps = Deps(llm=scripted(), home=tmp_path, execution=Execution(sandbox="off", idle_close_seconds=0.3))
    ex = deps.executor("t1", tmp_path / "ws", 10.0)
    assert isinstance(ex, IsolatedExecutor) and ex.run("python", "print('up')").ok
    released = ex.pid
    assert released is not None
    deps.release("t1")  # the run is over: idle in the pool ...
    wait_for(lambda: gone(released), "the released executor closed")  # ... until the idle time passed
    assert not deps.executors()

    deps.prewarm("t2", tmp_path / "ws", 10.0).join()  # a thread that started, then paused (no task ran)
    held = wait_for(lambda: getattr(deps.executors()[0], "pid", None) if deps.executors() else None,
                    "the prewarmed executor")
    wait_for(lambda: gone(held), "the paused thread's executor closed")
    assert not deps.executors()
    assert deps.executor("t2", tmp_path / "ws", 10.0).run("shell", "echo again").ok  # it gets a new one
    deps.close_all()


def test_close_returns_with_the_whole_tree_gone(tmp_path: Path) -> None:
    ex = IsolatedExecutor(tmp_path, timeout_s=10)
    ex.start()
    assert ex.run("python", "import subprocess; subprocess.Popen(['sleep', '300']); print('ok')").ok
    assert ex.run("shell", "echo up").ok
    assert ex.pid is not None
    procs = tree(ex.pid)
    assert any("sleep" in line for line in cmdlines(procs))
    ex.close()
    assert [p for p in procs if not gone(p.pid)] == []
    assert ex.pid is None and os.path.isdir(tmp_path)


@pytest.mark.skipif(not probe()[0], reason=f"no bubblewrap sandbox: {probe()[1]}")
def test_another_thread_gets_the_executor_only_with_nothing_of_the_earlier_thread_alive(tmp_path: Path) -> None:
    """Thread A leaves a detached job writing into the folder; when its run ends the executor is pooled, and thread B
    (same folder) takes it warm — with A's job, kernel and namespace gone."""
    ws = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="fla-pool-"))  # outside the sandbox's own /tmp
    deps = Deps(llm=scripted(), home=tmp_path, execution=Execution(sandbox="required"))
    try:
        ex = cast(IsolatedExecutor, deps.executor("A", ws, 30.0))
        job = ("import subprocess\nsubprocess.Popen(\"setsid sh -c 'while true; do date >> a.log; sleep 0.05; done'\""
               ", shell=True, start_new_session=True)\nsecret = 'from thread A'\nprint('started')")
        assert ex.run("python", job).ok
        wait_for(lambda: (ws / "a.log").exists(), "thread A's job writing")
        a_procs = [p for p in tree(ex.pid) if "a.log" in " ".join(p.cmdline())] if ex.pid else []
        assert a_procs, "A's job is not in the executor's tree"
        deps.release("A")
        same = deps.executor("B", ws, 30.0)
        assert same is ex  # warm: the same worker
        assert [p.pid for p in a_procs if not gone(p.pid)] == []  # A's job is gone before B runs anything
        size = (ws / "a.log").stat().st_size
        look = "import subprocess\nps = subprocess.run(['ps', '-eo', 'args'], capture_output=True, text=True).stdout\n"
        seen = same.run("python", f"print(globals().get('secret'))\n{look}print('a.log' in ps)")
        assert seen.ok and seen.output.split() == ["None", "False"], seen
        assert (ws / "a.log").stat().st_size == size  # nobody writes any more
    finally:
        deps.close_all()
        shutil.rmtree(ws, ignore_errors=True)
