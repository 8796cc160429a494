"""What every CLI has, end to end through the real command line: ``-v/--verbose``, ``completion
bash|zsh|fish`` (and a Tab that completes), a resume hint that works where the user is (the console script
on PATH, ``uv run --project`` from another folder, ``python run_graph.py``), and ``studio`` on a taken port
(one line, exit 2) or a free one (the server answers)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider, Reply
from tests.support.cli import cli, options
from tests.support.paths import ROOT, RUN_GRAPH
from tests.support.servers import free_port, stop_group, wait_until_ok

pytestmark = pytest.mark.timeout(240)

BIN = Path(sys.executable).parent  # the venv's bin: the console script and this interpreter
SCRIPT = BIN / "free-llm-agent"
PLAN = (("say hello", "print('hello')"),)
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (INFO|DEBUG|WARNING|ERROR) +\S")


def plain_env(path_with_venv: bool, **extra: str) -> dict[str, str]:
    """This environment as a user's shell has it: not inside ``uv run`` (no ``$UV``, no ``$VIRTUAL_ENV``), the
    venv's bin on PATH or not."""
    env = {k: v for k, v in os.environ.items() if k not in ("UV", "VIRTUAL_ENV", "UV_RUN_RECURSION_DEPTH")}
    dirs = [d for d in env.get("PATH", "").split(os.pathsep) if d and Path(d).resolve() != BIN.resolve()]
    env["PATH"] = os.pathsep.join([str(BIN), *dirs] if path_with_venv else dirs)
    return env | extra


@pytest.fixture
def agent(fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path]) -> Path:
    """A config whose one provider plans :data:`PLAN` (a loopback fake)."""
    server = fake_server("openai", responder=make_responder(PLAN))
    return make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})


# ---------------------------------------------------------------------------------------------- -v / --verbose

def test_verbose_shows_paths_skipped_providers_routing_and_a_failover_with_its_status(
        fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path) -> None:
    first, second = fake_server("openai", responder=make_responder(PLAN)), \
        fake_server("openai", responder=make_responder(PLAN))
    # the plan's request fails over from `first` (503) to `second`; so does the code's (429, then a cooldown);
    # the reflection's goes to `second` at once, `first` passed over
    first.script(Reply.error(503, "overloaded"), Reply.rate_limit(retry_after=600))
    cfg = make_config({"first": {"kind": "groq", "base_url": first.base_url},
                       "second": {"kind": "groq", "base_url": second.base_url},
                       "nokey": {"kind": "groq", "base_url": second.base_url, "key": None}})
    proc = cli(["run", "say hello", "--scratch", "--yes", "-v"], home, cfg)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert f"home: {home} (from --home)" in err
    assert f"configuration folder: {cfg} (from --config-dir)" in err
    assert "state: SQLite files in the home" in err
    assert "skipping nokey: TEST_NOKEY_KEY is not set" in err  # the notice in full, not only the summary line
    assert re.search(r"plan: request 1 → first; order first > second \(ranked by usable 'plan' answers\)", err), err
    assert re.search(r"first failed \(HTTP 503, \w+\): .*overloaded.* → not asked again for this request; the next "
                     r"provider is tried", err), err
    assert "plan: request 2 → second" in err and "already failed in this request: first" in err
    assert re.search(r"first failed \(HTTP 429, rate_limited\): .* → cooling down until [\d:]+; the next provider is "
                     r"tried", err), err
    assert re.search(r"reflect: request 1 → second; order first > second .*; passed over: first \(cooling down "
                     r"until [\d:]+: 429 from provider", err), err
    # each record is a line of its own among the progress lines, never on stdout (the summary is there)
    records = [line for line in err.splitlines() if " INFO " in line]
    assert records and all(LOG_LINE.match(line) for line in records), records
    assert " INFO " not in proc.stdout and "hello" in proc.stdout


def test_without_v_nothing_is_logged_and_json_stdout_stays_one_object_with_v(agent: Path, home: Path) -> None:
    quiet = cli(["check", "--json"], home, agent)
    assert quiet.returncode == 0, quiet.stderr
    assert " INFO " not in quiet.stderr and "home:" not in quiet.stderr
    loud = cli(["-vv", "check", "--json"], home, agent)
    assert loud.returncode == 0, loud.stderr
    assert json.loads(loud.stdout)["providers"][0]["ok"]  # stdout is still exactly the JSON object
    assert "providers with a key (or local): groq_llama" in loud.stderr
    assert re.search(r"HTTP Request: POST http://127\.0\.0\.1:\d+/openai/v1/chat/completions .*200", loud.stderr), \
        loud.stderr  # -vv: the HTTP client's line per request


def test_v_names_the_user_config_folder_and_the_packaged_defaults_as_such(home: Path, user_config_home: Path) -> None:
    packaged = cli(["-v", "threads"], home)
    assert packaged.returncode == 0, packaged.stderr
    assert "(the packaged defaults; for a copy to edit: " in packaged.stderr, packaged.stderr
    assert cli(["init"], home).returncode == 0
    folder = user_config_home / "free-llm-agent"
    mine = cli(["-v", "threads"], home)
    assert f"configuration folder: {folder} (your config folder)" in mine.stderr, mine.stderr


def test_v_is_accepted_after_every_command(home: Path) -> None:
    for argv in (["threads", "-v"], ["doctor", "-v", "--json"], ["graph", "--verbose"], ["completion", "bash", "-v"]):
        proc = cli(argv, home)
        assert proc.returncode == 0, (argv, proc.stderr)


# ---------------------------------------------------------------------------------------------- completion

@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_valid_script_for_each_shell(shell: str, tmp_path: Path) -> None:
    proc = cli(["completion", shell])
    assert proc.returncode == 0, proc.stderr
    assert "free-llm-agent" in proc.stdout and len(proc.stdout) > 200
    path = tmp_path / f"completion.{shell}"
    path.write_text(proc.stdout)
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed: the script generated, its syntax was not checked")
    check = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def bash_complete(line: str, tmp_path: Path, env: dict[str, str]) -> list[str]:
    """What Tab at the end of ``line`` offers in bash with ``completion bash``'s script loaded."""
    script = tmp_path / "completion.bash"
    script.write_text(cli(["completion", "bash"]).stdout)
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    program = f"""
source {shlex.quote(str(script))}
COMP_LINE={shlex.quote(line)}
COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=({" ".join(shlex.quote(w) for w in words)})
COMP_CWORD={len(words) - 1}
_python_argcomplete free-llm-agent {shlex.quote(words[-1])} {shlex.quote(words[-2])}
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    proc = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return [w.strip() for w in proc.stdout.splitlines() if w.strip()]


def test_tab_in_bash_completes_commands_options_and_thread_ids(tmp_path: Path, home: Path) -> None:
    env = plain_env(True, FREE_AGENT_HOME=str(home))
    assert bash_complete("free-llm-agent th", tmp_path, env) == ["threads"]
    assert bash_complete("free-llm-agent run --wo", tmp_path, env) == ["--workdir"]
    assert "--verbose" in bash_complete("free-llm-agent show --", tmp_path, env)
    assert bash_complete("free-llm-agent completion f", tmp_path, env) == ["fish"]
    assert [w for w in bash_complete("free-llm-agent resume ", tmp_path, env) if not w.startswith("-")] == []
    from free_llm_agent.graph.context import Context
    from free_llm_agent.runtime.runner import Runner
    from tests.support.agent import Brain, FakeExecutor

    for tid in ("alpha-1", "alpha-2", "beta-1"):
        runner = Runner(home, llm=Brain([["one step"]]).model(), context=Context(auto_approve=True),
                        executor_factory=FakeExecutor().factory)
        try:
            runner.run("a goal", tid)
        finally:
            runner.close()
    assert sorted(bash_complete("free-llm-agent resume al", tmp_path, env)) == ["alpha-1", "alpha-2"]
    offered = bash_complete("free-llm-agent show ", tmp_path, env)
    assert [w for w in offered if not w.startswith("-")] == ["beta-1", "alpha-2", "alpha-1"]  # newest first
    assert bash_complete(f"free-llm-agent --home {home} undo be", tmp_path,
                         plain_env(True)) == ["beta-1"]  # the home of the command line


def test_tab_in_fish_completes_with_the_commands_help(tmp_path: Path) -> None:
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed")
    script = tmp_path / "completion.fish"
    script.write_text(cli(["completion", "fish"]).stdout)
    proc = subprocess.run(["fish", "-c", f"source {shlex.quote(str(script))}; complete -C 'free-llm-agent th'; "
                           "complete -C 'free-llm-agent run --wo'"], capture_output=True, text=True, timeout=60,
                          env=plain_env(True))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["threads\tlist threads",
                                        "--workdir\tfolder the code works in (default: the current one)"]


def test_a_tab_imports_neither_langchain_nor_langgraph(tmp_path: Path) -> None:
    """argcomplete's own protocol against the real console script: the answer, and what it imported."""
    answer = tmp_path / "answer"
    env = plain_env(True, _ARGCOMPLETE="1", _ARGCOMPLETE_SHELL="bash", COMP_LINE="free-llm-agent us",
                    COMP_POINT=str(len("free-llm-agent us")), _ARGCOMPLETE_STDOUT_FILENAME=str(answer),
                    PYTHONPROFILEIMPORTTIME="1")
    proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert answer.read_text().split() == ["usage"]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert "free_llm_agent.cli.main" in imported
    assert not {m for m in imported if m.split(".")[0] in ("langchain_core", "langgraph", "rich")}


# ---------------------------------------------------------------------------------------------- the resume hint

def paused_hint(argv: list[str], cwd: Path, env: dict[str, str], home: Path, cfg: Path) -> str:
    """Run until the first task asks for approval (stdin closed: the run pauses); the command it names."""
    proc = subprocess.run([*argv, *options(home, cfg), "run", "say hello", "--scratch"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"Waiting for approval: (.+?)  \(--yes approves all\)", proc.stderr)
    assert found, proc.stderr
    return found[1]


def finishes(hint: str, cwd: Path, env: dict[str, str]) -> None:
    """The hint, as the user would paste it (plus --yes --json), finishes the thread from that folder."""
    proc = subprocess.run(["bash", "-c", f"{hint} --yes --json"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"


def test_under_uv_run_project_from_another_folder_the_hint_names_uv_run_project(
        agent: Path, home: Path, tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = plain_env(False, VIRTUAL_ENV="")  # free-llm-agent is on no PATH of this shell
    assert shutil.which("free-llm-agent", path=env["PATH"]) is None
    hint = paused_hint([uv, "run", "--frozen", "--project", str(ROOT), "free-llm-agent"], elsewhere, env, home, agent)
    assert hint.startswith(f"uv run --project {shlex.quote(str(ROOT))} free-llm-agent --config-dir "), hint
    assert hint.endswith(" resume " + hint.rsplit(" ", 1)[1])
    finishes(hint, elsewhere, env)


def test_the_installed_console_script_on_path_names_itself(agent: Path, home: Path, tmp_path: Path) -> None:
    env = plain_env(True)
    hint = paused_hint([str(SCRIPT)], tmp_path, env, home, agent)
    assert hint.startswith(f"free-llm-agent --config-dir {shlex.quote(str(agent))} --home "), hint
    finishes(hint, tmp_path, env)


def test_python_run_graph_py_names_the_script_and_an_interpreter_that_has_the_agent(
        agent: Path, home: Path, tmp_path: Path) -> None:
    on_path = plain_env(True)
    hint = paused_hint([sys.executable, "run_graph.py"], ROOT, on_path, home, agent)
    assert hint.startswith("python run_graph.py --config-dir "), hint
    finishes(hint, ROOT, on_path)
    # the venv not activated: `python` would be another interpreter, so the hint names this one
    off_path = plain_env(False)
    hint = paused_hint([sys.executable, str(RUN_GRAPH)], tmp_path, off_path, home, agent)
    assert hint.startswith(f"{shlex.quote(sys.executable)} {shlex.quote(str(RUN_GRAPH))} --config-dir "), hint


def test_a_console_script_not_on_path_is_named_by_its_path(agent: Path, home: Path, tmp_path: Path) -> None:
    """E.g. ``.venv/bin/free-llm-agent`` of a venv that is not activated: cheap to check on ``doctor``'s hint."""
    (home / "checkpoints.db").write_bytes(b"not a database at all" * 100)
    proc = subprocess.run([str(SCRIPT), *options(home, agent), "threads"], cwd=tmp_path, env=plain_env(False),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert f"{shlex.quote(str(SCRIPT))} --config-dir {shlex.quote(str(agent))} --home {shlex.quote(str(home))} " \
           "doctor --repair" in " ".join(proc.stderr.split()), proc.stderr


# ---------------------------------------------------------------------------------------------- studio

@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something listens on (as another ``langgraph dev`` would)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_studio_on_a_taken_port_is_one_line_and_exit_2(taken_port: int, home: Path) -> None:
    proc = cli(["studio", "--port", str(taken_port), "--no-browser"], home, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    suggested = re.fullmatch(rf"error: port {taken_port} is taken \(by another langgraph dev\?\); use .*run_graph\.py "
                             rf"--home {re.escape(shlex.quote(str(home)))} studio --no-browser --port (\d+)", lines[0])
    assert suggested, lines[0]
    port = int(suggested[1])
    assert port != taken_port
    with socket.socket() as free:  # the port it suggests is free
        free.bind(("127.0.0.1", port))
    assert proc.stdout == "" and "Traceback" not in proc.stderr and "Welcome" not in proc.stderr


def test_studio_with_a_port_out_of_range_is_bad_input(home: Path) -> None:
    proc = cli(["studio", "--port", "70000"], home, timeout=60)
    assert proc.returncode == 2 and "--port 70000: give a port between 1 and 65535" in proc.stderr, proc.stderr


def test_studio_without_the_langgraph_cli_says_how_to_install_it(
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from tests.support.cli import cli_in_process

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "langgraph_api" else real(name, *a))
    code, out, err = cli_in_process(["studio"], capsys, home)
    assert code == 2 and out == ""
    assert "studio needs the LangGraph CLI with its in-memory server" in err and "langgraph_api missing" in err
    assert "uv tool install --with 'langgraph-cli[inmem]' free-llm-agent" in err


def test_studio_on_a_free_port_serves_the_agent(agent: Path, home: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGGRAPH_", "LANGSMITH_"))}
    proc = subprocess.Popen([sys.executable, str(RUN_GRAPH), *options(home, agent), "studio", "--port", str(port),
                             "--no-browser", "--no-reload"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(proc, url, 120, "studio")
        graphs = httpx.post(f"{url}/assistants/search", json={}, timeout=10).json()
        assert [a["graph_id"] for a in graphs] == ["agent"]
    finally:
        stop_group(proc)
    output = (proc.stdout.read() if proc.stdout else b"").decode()
    assert "Traceback" not in output
