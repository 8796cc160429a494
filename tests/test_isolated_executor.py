"""The default executor: Open Interpreter in a child process (what the agent and the
LangGraph server use). Real kernel; one executor for the module to keep it quick."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.test_web_tools import base_url  # noqa: F401  (loopback web server fixture)
from tools.isolated_executor import IsolatedExecutor

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
    executor: IsolatedExecutor, base_url: str  # noqa: F811
) -> None:
    code = f"from tools.web_tools import fetch_text\nprint(fetch_text('{base_url}/json').text)"
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
