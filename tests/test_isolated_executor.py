"""The default executor: Open Interpreter in a child process (what the agent and the
LangGraph server use). Real kernel; one executor for the module to keep it quick."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from free_llm_agent.tools.isolated_executor import IsolatedExecutor
from free_llm_agent.tools.sandbox import Sandbox, hidden_paths, probe, resolve

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IsolatedExecutor]:
    ex = IsolatedExecutor(tmp_path_factory.mktemp("ws"), timeout_s=3)
    yield ex
    ex.close()


def test_runs_in_the_workspace_and_keeps_the_kernel_warm(executor: IsolatedExecutor) -> None:
    first = executor.run("python", "x = 41\nopen('made.txt', 'w').write('hi')\nprint('made')")
    assert first.ok and first.output.strip() == "made"
    assert (executor.workspace / "made.txt").read_text() == "hi"
    second = executor.run("python", "print(x + 1)")
    assert second.ok and second.output.strip() == "42"


def test_failures_and_timeouts_leave_the_next_run_in_sync(executor: IsolatedExecutor) -> None:
    boom = executor.run("python", "1/0")
    assert not boom.ok and "ZeroDivisionError" in boom.output
    stuck = executor.run("python", "while True: pass")
    assert stuck.timed_out and not stuck.ok
    after = executor.run("shell", "echo after")
    assert after.ok and after.output.strip() == "after"


def test_generated_code_can_fetch_the_web_through_web_tools(
    executor: IsolatedExecutor, base_url: str
) -> None:
    code = f"from free_llm_agent.tools.web_tools import fetch_text\nprint(fetch_text('{base_url}/json').text)"
    result = executor.run("python", code)
    assert result.ok, result.output
    assert '"a": [1, 2]' in result.output


def test_close_leaves_no_process_behind(tmp_path: Path) -> None:
    ex = IsolatedExecutor(tmp_path, timeout_s=5)
    assert ex.run("shell", "echo up").ok
    assert ex._proc is not None
    worker = psutil.Process(ex._proc.pid)
    tree = [worker, *worker.children(recursive=True)]
    ex.close()
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.skipif(not probe()[0], reason=f"no bubblewrap sandbox here: {probe()[1]}")
def test_a_hidden_file_replaced_or_created_while_the_sandbox_runs_stays_hidden(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(dir="/var/tmp"))  # outside /tmp, which the sandbox replaces anyway
    try:
        env_file, later = base / "repo" / ".env", base / "repo" / ".env.local"
        env_file.parent.mkdir()
        env_file.write_text("KEY=first-secret-value\n")
        sandbox = Sandbox("bwrap", "", shutil.which("bwrap"), "", hidden_paths(base / "home", [env_file, later]))
        with IsolatedExecutor(tmp_path / "ws", timeout_s=20, sandbox=sandbox) as ex:
            read = f"cat {env_file} {later} 2>&1; echo end"
            assert "first-secret" not in ex.run("shell", read).output
            fresh = base / "new.env"  # an editor saving by rename: a new file over the hidden path
            fresh.write_text("KEY=second-secret-value\n")
            fresh.replace(env_file)
            later.write_text("KEY=third-secret-value\n")  # a hidden path created after the start
            out = ex.run("shell", read).output
            assert "end" in out and "second-secret" not in out and "third-secret" not in out
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(not probe()[0], reason=f"no bubblewrap sandbox here: {probe()[1]}")
def test_in_a_folder_holding_the_agent_its_files_git_and_env_stay_out_of_reach(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        ws = base / "agent-repo"  # the user ran the agent from its own repo: the workdir *is* the agent
        (ws / "config").mkdir(parents=True)
        (ws / "config" / "limits.yaml").write_text("execution: {sandbox: auto}\n")
        (ws / ".git" / "hooks").mkdir(parents=True)
        (ws / ".env").write_text("GROQ_API_KEY=workdir-env-secret\n")
        sandbox = resolve("required", base / "home", protected=[ws])
        code = ("import os\n"
                "for path in ('config/limits.yaml', '.git/hooks/post-checkout', '.git/config'):\n"
                "    try:\n        open(path, 'a').write('x')\n        print('CHANGED', path)\n"
                "    except OSError as e:\n        print('refused', path, type(e).__name__)\n"
                "open('plot.png', 'w').write('new files are fine')\n"
                "try:\n    print('env:', repr(open('.env').read()))\n"
                "except OSError as e:\n    print('env: unreadable', type(e).__name__)\n"
                "print('run:', os.listdir('/run'))")
        with IsolatedExecutor(ws, timeout_s=20, sandbox=sandbox) as ex:
            out = ex.run("python", code).output
        assert "CHANGED" not in out and out.count("refused") == 3, out
        assert (ws / "config" / "limits.yaml").read_text() == "execution: {sandbox: auto}\n"
        assert not (ws / ".git" / "hooks" / "post-checkout").exists()
        assert (ws / "plot.png").read_text() == "new files are fine"
        assert ("env: ''" in out or "env: unreadable" in out) and "workdir-env-secret" not in out
        assert "run: []" in out or "run: ['systemd']" in out  # no sockets (docker, agents, D-Bus) under /run
    finally:
        shutil.rmtree(base, ignore_errors=True)
