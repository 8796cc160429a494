"""The real CLI in the user's folder, under the sandbox, exactly once: working directory, secrets,
leftover processes, kill -9, concurrent resumes, --no-network, and the sandbox settings.

Loopback fake providers answer the agent's prompts with the code each test needs; Open
Interpreter really runs it (under bubblewrap where this machine can create namespaces).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.fakes.provider_server import FakeProvider
from tests.support.cli import as_json, cli
from tests.support.paths import CLI, ROOT
from tests.support.sandbox import SANDBOX, Plan, gone, needs_sandbox, with_cmdline

pytestmark = pytest.mark.timeout(300)


@needs_sandbox
def test_run_works_on_the_users_folder_and_nothing_else(
    agent: Callable[..., tuple[FakeProvider, Path]], home: Path, var_tmp: Path
) -> None:
    project = var_tmp / "project"  # outside /tmp, which the sandbox replaces by a private one
    project.mkdir()
    (project / "notes.md").write_text("alpha beta gamma\n")
    neighbour = var_tmp / "neighbour.txt"
    neighbour.write_text("untouched\n")
    plan: Plan = (
        ("count the words of notes.md", "print('words', len(open('notes.md').read().split()))"),
        ("append a line to notes.md", "open('notes.md', 'a').write('delta\\n')\nprint('appended')"),
        ("try the folder next door", "import pathlib\np = pathlib.Path('..', 'neighbour.txt').resolve()\n"
                                     "try:\n    p.write_text('changed')\n    print('wrote next door')\n"
                                     "except OSError as e:\n    print('refused', type(e).__name__)"),
    )
    server, cfg = agent(plan)
    proc = cli(["run", "work on my notes", "--yes", "--json"], home, cfg, cwd=project)  # default: current folder
    out = as_json(proc)
    assert out["status"] in ("completed", "failed"), proc.stderr
    assert "words 3" in out["tasks"][0]["output"]
    assert (project / "notes.md").read_text() == "alpha beta gamma\ndelta\n"
    assert neighbour.read_text() == "untouched\n"
    assert "refused OSError" in out["tasks"][2]["output"]  # read-only outside the working directory
    assert not (home / "workspaces").exists()  # no scratch folder: the user's folder was the workdir
    plan_prompt = server.requests[0].text
    assert f"Working directory: {project.resolve()}" in plan_prompt and "notes.md (17 B)" in plan_prompt
    shown = as_json(cli(["show", out["thread_id"], "--json"], home, cfg))
    assert shown["workdir"] == str(project.resolve())


def test_generated_code_never_sees_a_key(
    agent: Callable[..., tuple[FakeProvider, Path]], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider_key = "gsk-provider-key-1f2e3d4c5b6a"
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-other-service-99887766")
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-langsmith-55443322")
    plan: Plan = (
        ("print the environment", "import os\nprint(dict(os.environ))"),
        ("read the parent's environment", "import os\ntry:\n    print(open(f'/proc/{os.getppid()}/environ').read())\n"
                                          "except OSError as e:\n    print('no', e)"),
        ("run env in a shell", "import subprocess\nprint(subprocess.run(['env'], capture_output=True, "
                               "text=True).stdout)"),
    )
    server, cfg = agent(plan, key=provider_key)
    proc = cli(["run", "show me the environment", "--scratch", "--yes", "--json"], home, cfg)
    out = as_json(proc)
    assert "PATH" in out["tasks"][0]["output"]  # the task did print its environment
    secrets = [provider_key, "tok-other-service-99887766", "lsv2-langsmith-55443322"]
    checkpoints = (home / "checkpoints.db").read_bytes()
    prompts = [r.raw_body.decode(errors="replace") for r in server.requests]
    for secret in secrets:
        assert secret not in proc.stdout and secret not in proc.stderr
        assert secret.encode() not in checkpoints
        assert not any(secret in body for body in prompts)


@needs_sandbox
def test_processes_started_by_a_task_do_not_outlive_the_run(
    agent: Callable[..., tuple[FakeProvider, Path]], home: Path
) -> None:
    plan: Plan = (
        ("start a background job", "import subprocess\nsubprocess.run('nohup sleep 3131 >/dev/null 2>&1 &', "
                                   "shell=True)\nprint('started')"),
        ("start a detached process", "import subprocess\nsubprocess.Popen(['sleep', '3132'], "
                                     "start_new_session=True)\nprint('detached')"),
        ("check they run", "import subprocess, time\nfor _ in range(100):\n"
                           "    ps = subprocess.run(['ps', '-eo', 'args'], capture_output=True, text=True).stdout\n"
                           "    if 'sleep 3131' in ps and 'sleep 3132' in ps:\n        break\n    time.sleep(0.1)\n"
                           "print('running:', 'sleep 3131' in ps, 'sleep 3132' in ps)"),
    )
    _, cfg = agent(plan)
    out = as_json(cli(["run", "leave things running", "--scratch", "--yes", "--json"], home, cfg))
    assert [t["status"] for t in out["tasks"]] == ["done"] * 3
    assert "running: True True" in out["tasks"][2]["output"]  # they did run, during the run
    assert not gone(with_cmdline("sleep 3131") + with_cmdline("sleep 3132"))


@needs_sandbox
def test_kill_9_leaves_no_process_and_resume_runs_the_interrupted_task_once(
    agent: Callable[..., tuple[FakeProvider, Path]], home: Path
) -> None:
    plan: Plan = (
        ("step one", "open('runs.log','a').write('one\\n')"),
        ("step two", "import os, time\nopen('runs.log','a').write('two-start\\n')\nt = time.time()\n"
                     "while not os.path.exists('go') and time.time() - t < 60:\n    time.sleep(0.05)\n"
                     "open('runs.log','a').write('two\\n')"),
        ("step three", "open('runs.log','a').write('three\\n')"),
    )
    server, cfg = agent(plan)
    log = home / "workspaces" / "k9" / "runs.log"
    proc = subprocess.Popen([*CLI, "--config-dir", str(cfg), "--home", str(home), "run", "crash", "--scratch",
                             "--thread-id", "k9", "--yes", "--json"], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not (log.exists() and "two-start" in log.read_text()):
        time.sleep(0.2)
    assert log.exists() and "two-start" in log.read_text(), "task 2 never started"
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert tree  # the sandboxed executor and its kernel
    proc.send_signal(signal.SIGKILL)  # the agent alone: its children are not signalled
    proc.wait(timeout=30)
    assert not gone(tree), "the executor outlived the agent"
    assert "two\n" not in log.read_text()  # task 2 (waiting for "go") was cut short

    (log.parent / "go").write_text("go")  # from now on task 2 finishes at once
    resumed = cli(["resume", "k9", "--yes", "--json"], home, cfg)
    out = as_json(resumed)
    assert out["status"] == "completed", resumed.stderr
    # task 2 was cut short once, ran again once (with a notice, as --yes was given); the rest ran once
    assert log.read_text().splitlines() == ["one", "two-start", "two-start", "two", "three"]
    shown = as_json(cli(["show", "k9", "--json"], home, cfg))
    assert shown["tasks"][1]["restarts"] == 1
    assert len(server.requests) == 3  # plan, code, reflect: nothing answered before the kill was asked again


def test_two_resumes_of_one_thread_run_it_once(agent: Callable[..., tuple[FakeProvider, Path]], home: Path) -> None:
    plan: Plan = (
        ("wait for the signal", "import os, time\nopen('runs.log','a').write('one\\n')\n"
                                "t = time.time()\nwhile not os.path.exists('go') and time.time() - t < 50:\n"
                                "    time.sleep(0.1)"),
        ("step two", "open('runs.log','a').write('two\\n')"),
        ("step three", "open('runs.log','a').write('three\\n')"),
    )
    _, cfg = agent(plan)
    paused = as_json(cli(["run", "pause first", "--scratch", "--thread-id", "twice", "--json"], home, cfg))
    assert paused["status"] == "awaiting_approval"
    log = home / "workspaces" / "twice" / "runs.log"
    first = subprocess.Popen([*CLI, "--config-dir", str(cfg), "--home", str(home), "resume", "twice", "--yes",
                              "--json"], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not log.exists():
        time.sleep(0.2)
    assert log.exists(), "the first resume never ran task 1"
    second = cli(["resume", "twice", "--yes", "--json"], home, cfg)
    assert second.returncode == 2, second.stderr
    assert f"thread twice is running (pid {first.pid} on" in second.stderr and "Traceback" not in second.stderr
    (log.parent / "go").write_text("go")
    stdout, stderr = first.communicate(timeout=180)
    assert json.loads(stdout)["status"] == "completed", stderr
    assert log.read_text().splitlines() == ["one", "two", "three"]  # executions = tasks


@needs_sandbox
def test_no_network_cuts_the_sandbox_off(
    agent: Callable[..., tuple[FakeProvider, Path]], home: Path, fake_server: Callable[..., FakeProvider]
) -> None:
    web = fake_server("openai")
    url = web.base_url.replace("127.0.0.1", "web.test")  # through the proxy's test resolver, to loopback
    probe_code = (f"import urllib.request\ntry:\n    urllib.request.urlopen({url!r} + '/models', timeout=5)\n"
                  "    print('reached')\nexcept Exception as e:\n    print('offline', type(e).__name__)")
    plan: Plan = (("reach the server", probe_code + "\nprint('checked')"), ("b", "print(2)"), ("c", "print(3)"))
    _, cfg = agent(plan)
    env = {**os.environ, "FREE_AGENT_TEST_RESOLVE": '{"web.test": "127.0.0.1"}'}
    args = ["run", "net", "--scratch", "--allow-domain", "web.test", "--yes", "--json"]
    off = as_json(cli([*args, "--no-network"], home, cfg, env=env))
    assert "offline" in off["tasks"][0]["output"]
    on = as_json(cli(args, home, cfg, env=env))
    assert "offline" not in on["tasks"][0]["output"] and "checked" in on["tasks"][0]["output"]


def test_sandbox_settings_and_bad_workdirs_are_clear_errors(
    agent: Callable[..., tuple[FakeProvider, Path]], home: Path, tmp_path: Path
) -> None:
    plan: Plan = (("a", "print(1)"), ("b", "print(2)"), ("c", "print(3)"))
    _, cfg = agent(plan, execution={"sandbox": "required"})
    no_bwrap = {**os.environ, "PATH": str(tmp_path)}  # bubblewrap not on PATH: as if not installed
    refused = cli(["run", "x", "--scratch", "--yes", "--json"], home, cfg, env=no_bwrap)
    assert refused.returncode == 2 and "bubblewrap" in refused.stderr and "apt-get install" in refused.stderr
    assert "limits.yaml" in refused.stderr and "Traceback" not in refused.stderr
    assert not (home / "checkpoints.db").exists() or not as_json(cli(["threads", "--json"], home, cfg))["threads"]
    check = as_json(cli(["check", "--json"], home, cfg, env=no_bwrap))
    assert check["sandbox"]["active"] is False and "bubblewrap" in check["sandbox"]["detail"]
    if SANDBOX:
        on = as_json(cli(["check", "--json"], home, cfg))
        box = on["sandbox"]
        assert (box["mode"], box["active"]) == ("required", True) and box["detail"].startswith("bubblewrap")
        assert box["network"]["mode"] == "allowlist" and "filtering proxy" in box["network"]["detail"]
        assert box["seccomp"].startswith("on (") and box["user_namespaces"].startswith("refused")
        assert set(box["limits"]) == {"memory", "processes", "tmp"}
        assert "1024 MB" in box["limits"]["memory"]
        shown = cli(["check"], home, cfg).stdout
        assert "network" in shown and "seccomp" in shown and "limit: memory" in shown
    _, auto = agent(plan)
    warned = cli(["run", "x", "--scratch", "--yes", "--json"], home, auto, env=no_bwrap)
    assert warned.returncode == 0 and "warning: no sandbox" in warned.stderr
    for args, why in ((["--workdir", str(tmp_path / "missing")], "does not exist"),
                      (["--workdir", str(home)], "agent's home"),
                      (["--thread-id", ".."], "thread id"),
                      (["--thread-id", "../x"], "thread id")):
        bad = cli(["run", "x", "--yes", *args], home, auto)
        assert bad.returncode == 2 and why in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    with sqlite3.connect(home / "checkpoints.db") as db:  # nothing was started for the refused runs
        threads = {row[0] for row in db.execute("select distinct thread_id from checkpoints")}
    assert ".." not in threads and "../x" not in threads


@needs_sandbox
def test_a_folder_the_sandboxed_code_cannot_write_is_exit_2_before_any_request(
    agent: Callable[..., tuple[FakeProvider, Path]], home: Path, var_tmp: Path
) -> None:
    server, cfg = agent((("a", "print(1)"), ("b", "print(2)"), ("c", "print(3)")))
    readonly = var_tmp / "read-only"
    readonly.mkdir(mode=0o555)
    readonly.chmod(0o555)
    cases = [(readonly, "r-xr-xr-x (555)")]
    if os.geteuid() == 0:  # root passes os.access; the sandbox drops its capabilities (a Docker bind mount's case)
        theirs = var_tmp / "theirs"
        theirs.mkdir(mode=0o755)
        os.chown(theirs, 12345, 12345)
        cases.append((theirs, "belongs to user id 12345"))
    for folder, why in cases:
        proc = cli(["run", "count the files", "--yes", "--workdir", str(folder)], home, cfg)
        assert proc.returncode == 2, proc.stderr
        assert str(folder) in proc.stderr and why in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert server.requests == []  # nothing was asked of the provider
