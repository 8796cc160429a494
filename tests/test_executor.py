"""LocalExecutor against the real Open Interpreter (no mocks)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from free_llm_agent.tools.local_executor import ExecutionResult, LocalExecutor, cap_output


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exec-ws")


@pytest.fixture(scope="module")
def executor(workspace: Path) -> Iterator[LocalExecutor]:
    ex = LocalExecutor(workspace, timeout_s=20)
    yield ex
    ex.close()


def _run(ex: LocalExecutor, language: str, code: str) -> ExecutionResult:
    result = ex.run(language, code)
    assert isinstance(result, ExecutionResult)
    return result


def _sleep_procs() -> list[psutil.Process]:
    procs = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.cmdline()[:2] == ["sleep", "1000"]:
                procs.append(proc)
        except psutil.Error:
            pass
    return procs


def _kernels() -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "ipykernel_launcher" in " ".join(proc.cmdline()) and proc.status() != "zombie":
                found.append(proc)
        except psutil.Error:
            pass
    return found


def test_python_print(executor: LocalExecutor) -> None:
    result = _run(executor, "python", "print('hello from python')")
    assert result.ok and result.error is None and not result.timed_out
    assert result.output == "hello from python\n"
    assert result.duration_s > 0


def test_cwd_is_workspace(executor: LocalExecutor, workspace: Path) -> None:
    code = "import os\nprint(os.getcwd())\nopen('written.txt', 'w').write('data')\nos.chdir('/')"
    result = _run(executor, "python", code)
    assert result.ok, result.error
    assert result.output.splitlines()[0] == str(workspace.resolve())
    assert (workspace / "written.txt").read_text() == "data"
    # a chdir in one run does not move the next run elsewhere
    assert _run(executor, "python", "print(os.getcwd())").output.strip() == str(workspace)
    shell = _run(executor, "shell", "pwd && echo more > from_shell.txt")
    assert shell.ok and shell.output.strip() == str(workspace.resolve())
    assert (workspace / "from_shell.txt").read_text() == "more\n"


def test_python_exception(executor: LocalExecutor) -> None:
    result = _run(executor, "python", "print('before')\n1/0")
    assert not result.ok and not result.timed_out
    assert result.error is not None and result.error.startswith("ZeroDivisionError")
    assert "before" in result.output
    assert "Traceback" in result.output and "ZeroDivisionError" in result.output


def test_python_syntax_error_and_sys_exit(executor: LocalExecutor) -> None:
    bad = _run(executor, "python", "def f(:\n    pass")
    assert not bad.ok and bad.error is not None and bad.error.startswith("SyntaxError")
    assert _run(executor, "python", "import sys; sys.exit(0)").ok
    assert not _run(executor, "python", "import sys; sys.exit(2)").ok


def test_python_specials(executor: LocalExecutor) -> None:
    # OI's idle-input watchdog (which would ask gpt-4o) is pushed out of reach
    assert int(os.environ["INTERPRETER_TERMINAL_INPUT_PATIENCE"]) >= 10**9
    shown = _run(executor, "python", "{'a': 1}")
    assert shown.ok and shown.output == "{'a': 1}"
    start = time.monotonic()
    asked = _run(executor, "python", "input('name? ')")
    assert not asked.ok and asked.error is not None and asked.error.startswith("EOFError")
    assert time.monotonic() - start < 10
    text = "a\n\n    b\n"  # blank lines inside strings survive OI's pre-processing
    echo = _run(executor, "python", f"s = {text!r}\nt = '''x\n\ny'''\nprint(repr(s + t))")
    assert echo.ok and echo.output == repr(text + "x\n\ny") + "\n"


def test_warm_kernel_keeps_state(executor: LocalExecutor) -> None:
    assert _run(executor, "python", "shared_value = 1234").ok
    result = _run(executor, "python", "print(shared_value)")
    assert result.ok and result.output == "1234\n"


def test_shell_output_and_nonzero_status(executor: LocalExecutor) -> None:
    ok = _run(executor, "shell", "echo out; echo err >&2")
    assert ok.ok and ok.output == "out\nerr\n"
    bad = _run(executor, "shell", "echo start\nls /definitely/not/here")
    assert not bad.ok and bad.error == "exit status 2"
    assert "start" in bad.output and "No such file" in bad.output


def test_shell_exit_does_not_hang(executor: LocalExecutor) -> None:
    start = time.monotonic()
    result = _run(executor, "shell", "echo before-exit\nexit 3\necho never")
    assert time.monotonic() - start < 10
    assert not result.ok and not result.timed_out and result.error == "exit status 3"
    assert result.output == "before-exit\n"
    after = _run(executor, "shell", "echo still-alive")
    assert after.ok and after.output == "still-alive\n"


def test_shell_multiline_and_quotes(executor: LocalExecutor) -> None:
    code = "for i in 1 2; do\n  echo \"n=$i\"\ndone\nprintf '%s\\n' 'it'\"'\"'s' \"a\\\\b\""
    result = _run(executor, "shell", code)
    assert result.ok, result.output
    assert result.output == "n=1\nn=2\nit's\na\\b\n"


def test_timeout_infinite_loop_then_clean_output(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "timeout_s", 3.0)
    start = time.monotonic()
    result = _run(executor, "python", "print('looping', flush=True)\nwhile True: pass")
    assert time.monotonic() - start < 3 + 5
    assert result.timed_out and not result.ok
    assert result.error == "timeout after 3s"
    monkeypatch.setattr(executor, "timeout_s", 20.0)
    after = _run(executor, "python", "print('next-run-output')")
    assert after.ok and after.output == "next-run-output\n"


def test_timeout_shell_sleep_is_killed(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "timeout_s", 2.0)
    start = time.monotonic()
    result = _run(executor, "shell", "echo sleeping\nsleep 1000")
    assert time.monotonic() - start < 2 + 5
    assert result.timed_out and not result.ok and "sleeping" in result.output
    assert _sleep_procs() == []
    monkeypatch.setattr(executor, "timeout_s", 20.0)
    after = _run(executor, "shell", "echo fresh")
    assert after.ok and after.output == "fresh\n"


def test_output_is_capped(executor: LocalExecutor) -> None:
    result = _run(executor, "python", "print('HEAD' + 'x' * 50_000 + 'TAIL')")
    assert result.ok
    assert len(result.output) <= executor.max_output_chars
    assert result.output.startswith("HEADxxx") and result.output.endswith("xxxTAIL\n")
    assert "chars omitted] …" in result.output


def test_cap_output_keeps_head_and_tail() -> None:
    text = "A" * 100 + "B" * 1000 + "C" * 100
    capped = cap_output(text, 300)
    assert len(capped) <= 300
    assert capped.startswith("A" * 100) and capped.endswith("C" * 100)
    kept = len(capped.split("\n")[0]) + len(capped.split("\n")[-1])
    assert f"[{len(text) - kept} chars omitted]" in capped
    assert cap_output("short", 300) == "short"


def test_unsupported_language_and_blocked_code(executor: LocalExecutor) -> None:
    ruby = _run(executor, "ruby", "puts 1")
    assert not ruby.ok and ruby.error is not None and "unsupported language" in ruby.error
    blocked = _run(executor, "shell", "sudo rm -rf /")
    assert not blocked.ok and blocked.error is not None and blocked.error.startswith("blocked")
    alias = _run(executor, "bash", "echo via-alias")
    assert alias.ok and alias.output == "via-alias\n"


def test_timeout_python_sleep_kills_kernel(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # last test on the shared executor: the fresh kernel would only be started by a later run
    assert _run(executor, "python", "import time").ok
    before = {p.pid for p in _kernels()}
    monkeypatch.setattr(executor, "timeout_s", 2.0)
    start = time.monotonic()
    result = _run(executor, "python", "time.sleep(1000)")
    assert time.monotonic() - start < 2 + 5
    assert result.timed_out and not result.ok and result.error == "timeout after 2s"
    after = {p.pid for p in _kernels()}
    assert len(before - after) == 1 and after <= before  # our kernel is gone, no new one


def test_close_leaves_no_child_processes(tmp_path: Path) -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    with LocalExecutor(tmp_path / "ws", timeout_s=20) as ex:
        spawn = "import subprocess\np = subprocess.Popen(['sleep', '300'])\nprint(p.pid)"
        result = ex.run("python", spawn)
        assert result.ok, result.output
        grandchild = int(result.output.strip())
        assert ex.run("shell", "echo hi").ok
        started = {p.pid for p in me.children(recursive=True)} - before
        assert grandchild in started and len(started) >= 3  # kernel, its child, bash
    leftover = {p.pid for p in me.children(recursive=True)} - before
    assert leftover == set()
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie"
