"""Working directory rules, the listing the prompts show, the thread lock across processes,
the task journal (exactly once after a crash), and what the sandbox command hides."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from free_llm_agent.nodes.approval import approve
from free_llm_agent.nodes.execute import run_task
from free_llm_agent.nodes.plan import plan
from free_llm_agent.storage.errors import ThreadBusy
from free_llm_agent.storage.guard import attempt_key
from free_llm_agent.storage.sqlite.guard import TaskJournal, ThreadLock
from free_llm_agent.tools.sandbox import Sandbox, hidden_paths, probe, redact, resolve, scrubbed_env
from free_llm_agent.tools.workspace import WorkdirError, check_thread_id, check_workdir, listing, scratch_dir
from tests.fakes.scripted import tool_answer
from tests.support.agent import CONFIG, GOAL, THREAD, FakeExecutor, apply, make_deps, make_state, rt, scripted
from tests.support.paths import ROOT

# ----------------------------------------------------------------------------- working directory


def test_thread_ids_never_map_a_workspace_onto_the_home_or_outside_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for bad in ("..", ".", "../x", "a/../../b", "/etc", "", ".hidden", "x" * 65):
        with pytest.raises(ValueError, match="thread id"):
            check_thread_id(bad)
        path = scratch_dir(home, bad)
        assert path.parent == (home / "workspaces").resolve() and path.name.startswith("t-")
    assert scratch_dir(home, "abc-1.2_x") == (home / "workspaces" / "abc-1.2_x").resolve()


def test_workdir_must_be_an_existing_writable_folder_outside_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "users" / "me"
    user.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(user))
    home = tmp_path / "home"
    home.mkdir()
    mine = tmp_path / "project"
    mine.mkdir()
    assert check_workdir(mine, home) == mine.resolve()
    assert check_workdir(scratch_dir(home, "t1"), home) == (home / "workspaces" / "t1").resolve()
    (tmp_path / "file.txt").write_text("x")
    secrets = tmp_path / "creds"
    (secrets / "inner").mkdir(parents=True)
    cases: list[tuple[Path, str]] = [
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "file.txt", "not a folder"),
        (home, "agent's home"),
        (home / "workspaces", "agent's home"),
        (Path("/"), "filesystem root"),
        (secrets / "inner", "must never see"),
        (user, "your home folder"),
        (user.parent, "your home folder or above it"),
    ]
    (home / "workspaces").mkdir(exist_ok=True)
    for path, why in cases:
        with pytest.raises(WorkdirError, match=why):
            check_workdir(path, home, (str(secrets),))


def test_listing_shows_names_and_sizes_leaves_out_hidden_and_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("hello world")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("1,2\n" * 600)
    (tmp_path / ".env").write_text("SECRET=1")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("x")
    text = listing(tmp_path)
    assert "notes.md (11 B)" in text and "data/" in text and "data/a.csv (2.3 KB)" in text
    assert ".env" not in text and ".git" not in text
    for i in range(100):
        (tmp_path / f"file{i:03}.txt").write_text("x")
    capped = listing(tmp_path, max_entries=20)
    assert len(capped.splitlines()) == 21 and capped.endswith("more")
    assert len(listing(tmp_path, max_chars=300)) < 400
    assert listing(tmp_path / "data" / "missing") == "(empty)"


def test_plan_prompt_names_the_working_directory_and_its_files_and_keeps_it(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "sales_2024.csv").write_text("a,b\n")
    llm = scripted(tool_answer("Plan", {"tasks": ["read sales_2024.csv", "sum it", "report"]}))
    deps = make_deps(tmp_path / "home", llm)
    update = plan(make_state(), rt(workdir=str(project), network=False), CONFIG, deps=deps)
    prompt = str(llm.calls[0]["messages"][-1].content)
    assert f"Working directory: {project.resolve()}" in prompt and "sales_2024.csv (4 B)" in prompt
    assert update["workdir"] == str(project.resolve()) and update["network"] is False
    # A resumed / replanned run keeps its folder, whatever a later context says.
    state = apply(make_state(), update)
    llm2 = scripted(tool_answer("Plan", {"tasks": ["x", "y", "z"]}))
    again = plan(state, rt(workdir=None), CONFIG, deps=make_deps(tmp_path / "home", llm2))
    assert again["workdir"] == str(project.resolve()) and again["network"] is False


def test_no_workdir_in_the_context_means_a_scratch_folder_per_thread(tmp_path: Path) -> None:
    llm = scripted(tool_answer("Plan", {"tasks": ["a", "b", "c"]}))
    update = plan(make_state(), rt(), CONFIG, deps=make_deps(tmp_path, llm))
    assert update["workdir"] == str((tmp_path / "workspaces" / THREAD).resolve())


# ----------------------------------------------------------------------------- thread lock

_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from free_llm_agent.storage.sqlite.guard import ThreadLock
lock = ThreadLock(Path({home!r}), "t1")
lock.acquire()
print("held", flush=True)
time.sleep(300)
"""


def test_a_second_process_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER.format(root=str(ROOT), home=str(tmp_path))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ThreadBusy, match=rf"thread t1 is running \(pid {holder.pid} on "):
            ThreadLock(tmp_path, "t1").acquire()
        with ThreadLock(tmp_path, "t2"):  # other threads are free
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = ThreadLock(tmp_path, "t1", owner="run-a")
    lock.acquire()  # the kernel dropped the dead holder's lock
    same_run = ThreadLock(tmp_path, "t1", owner="run-a")
    same_run.acquire()  # re-entrant for the same run (runner + its run_task node, another thread)
    same_run.release()
    with pytest.raises(ThreadBusy, match="another run in this process"):
        ThreadLock(tmp_path, "t1", owner="run-b").acquire()  # a second run in the same server
    assert f"pid {os.getpid()}" in (tmp_path / "locks" / "t1.lock").read_text()
    lock.release()


# ----------------------------------------------------------------------------- task journal


def _approved(code: str = "print(1)", **extra: Any) -> dict[str, Any]:
    return {"id": 1, "description": "step 1", "status": "pending", "attempts": 0, "language": "python",
            "code": code, "approved": True, **extra}


def test_a_finished_attempt_is_not_run_again_after_a_lost_checkpoint(tmp_path: Path) -> None:
    ex = FakeExecutor()
    deps = make_deps(tmp_path, executor=ex)
    task = _approved()
    TaskJournal(tmp_path).finished(THREAD, attempt_key(task, GOAL), 1, {
        "ok": True, "output": "from the journal", "timed_out": False, "duration_s": 0.1, "error": None})
    update = run_task(make_state([task], batch=[1]), rt(), CONFIG, deps=deps)  # type: ignore[list-item]
    assert ex.runs == []
    assert update["tasks"][0]["status"] == "done" and update["tasks"][0]["output"] == "from the journal"


def test_an_interrupted_attempt_needs_a_new_approval_then_runs_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = FakeExecutor()
    deps = make_deps(tmp_path, executor=ex)
    task = _approved()
    TaskJournal(tmp_path).started(THREAD, attempt_key(task, GOAL), 1)  # the agent died while it ran
    state = make_state([task], batch=[1])  # type: ignore[list-item]
    state = apply(state, run_task(state, rt(), CONFIG, deps=deps))
    assert ex.runs == []
    t = state["tasks"][0]
    assert t["interrupted"] and not t["approved"] and t["restarts"] == 1 and t["status"] == "pending"
    assert "interrupted" in t["error"]
    # Without --yes: the approval question says it was interrupted (the user rejects here).
    asked: list[dict[str, Any]] = []

    def user(payload: dict[str, Any]) -> dict[str, str]:
        asked.append(payload)
        return {"action": "reject"}

    monkeypatch.setattr("free_llm_agent.nodes.approval.interrupt", user)
    rejected = approve(state, rt(), CONFIG, deps=deps)
    assert asked[0]["interrupted"] is True and asked[0]["code"] == "print(1)"
    assert rejected["tasks"][0]["status"] == "skipped"
    # With --yes it is approved again, and runs exactly once.
    state = apply(state, approve(state, rt(auto_approve=True), CONFIG, deps=deps))
    state = apply(state, run_task(state, rt(auto_approve=True), CONFIG, deps=deps))
    assert ex.runs == [("python", "print(1)")]
    assert state["tasks"][0]["status"] == "done" and state["tasks"][0]["interrupted"] is False


def test_run_task_uses_the_runs_workdir_and_network_choice(tmp_path: Path) -> None:
    ex = FakeExecutor()
    project = tmp_path / "project"
    project.mkdir()
    state = make_state([_approved()], batch=[1], workdir=str(project), network=False)  # type: ignore[list-item]
    run_task(state, rt(), CONFIG, deps=make_deps(tmp_path, executor=ex))
    assert ex.workspace == project and ex.network is False


# ----------------------------------------------------------------------------- sandbox command + env


def test_secrets_are_removed_from_the_executor_env_and_redacted_from_output() -> None:
    env = {"PATH": "/bin", "HOME": "/root", "GROQ_API_KEY": "gsk_123456789", "MY_TOKEN": "tok-abcdefgh",
           "AWS_SECRET_ACCESS_KEY": "aws-secret-1", "LANGSMITH_PROJECT": "p", "CUSTOM": "custom-key-value",
           "FREE_AGENT_HOME": "/h", "DB_PASSWORD": "pw-12345678"}
    kept, removed = scrubbed_env(env, ["CUSTOM"])
    assert kept == {"PATH": "/bin", "HOME": "/root"}
    assert set(removed) == set(env) - {"PATH", "HOME"}
    out = redact("key gsk_123456789 and custom-key-value, short p", removed)
    assert out == "key [redacted GROQ_API_KEY] and [redacted CUSTOM], short p"


def test_bwrap_command_hides_home_credentials_and_env_files(monkeypatch: pytest.MonkeyPatch) -> None:
    base = Path(tempfile.mkdtemp(dir="/var/tmp"))  # outside /tmp, which the sandbox replaces anyway
    try:
        fake_home = base / "user"
        (fake_home / ".ssh").mkdir(parents=True)
        (fake_home / ".netrc").write_text("machine x")
        monkeypatch.setenv("HOME", str(fake_home))
        agent_home = base / "agent-home"
        ws = agent_home / "workspaces" / "t1"
        ws.mkdir(parents=True)
        env_file = base / "repo" / ".env"
        env_file.parent.mkdir()
        env_file.write_text("K=1")
        box = Sandbox("bwrap", "", "/usr/bin/bwrap", "0.8", hidden_paths(agent_home, [env_file]))
        argv = box.wrap(["python", "-V"], workdir=ws, proxy=False)
        joined = " ".join(argv)
        # the home is hidden first, then the scratch folder inside it is bound back
        assert joined.index(f"--tmpfs {agent_home}") < joined.index(f"--bind {ws} {ws}")
        assert f"--tmpfs {fake_home / '.ssh'}" in joined
        assert f"--ro-bind /dev/null {fake_home / '.netrc'}" in joined
        assert f"--ro-bind /dev/null {env_file}" in joined
        assert str(fake_home / ".aws") not in joined  # absent: nothing to hide
        assert "--unshare-net" in argv and "--die-with-parent" in argv and "--unshare-pid" in argv
        assert argv[-3:] == ["--", "python", "-V"]
        with_proxy = box.wrap(["true"], workdir=ws, proxy=True)  # the network namespace is its own either way
        assert "--unshare-net" in with_proxy and "https_proxy" in with_proxy and "https_proxy" not in argv
        # a .env inside the working directory is hidden after the directory is bound
        inner = ws / ".env"
        inner.write_text("K=2")
        box2 = Sandbox("bwrap", "", "/usr/bin/bwrap", "0.8", hidden_paths(agent_home, [inner]))
        joined2 = " ".join(box2.wrap(["true"], workdir=ws, proxy=True))
        assert joined2.index(f"--bind {ws} {ws}") < joined2.index(f"--ro-bind /dev/null {inner}")
        assert Sandbox("none", "off").wrap(["x"], workdir=ws, proxy=False) == ["x"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("answer", [{"action": "edit", "code": ""}, {"action": "edit"},
                                    {"action": "edit", "code": "print(1)"}, {}, {"code": "print(2)"}, "maybe"])
def test_an_empty_or_unchanged_edit_or_an_unclear_answer_is_not_an_approval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: Any
) -> None:
    monkeypatch.setattr("free_llm_agent.nodes.approval.interrupt", lambda payload: answer)
    state = make_state([_approved(approved=False)], batch=[1])  # type: ignore[list-item]
    update = approve(state, rt(), CONFIG, deps=make_deps(tmp_path))
    task = (update.get("tasks") or [{}])[0]
    assert not task.get("approved")  # asked again (no update) or rejected, never run
    if update:
        assert task["status"] == "skipped"


@pytest.mark.skipif(not probe()[0], reason=f"no bubblewrap sandbox: {probe()[1]}")
def test_editor_and_agent_settings_in_the_folder_stay_read_only(tmp_path: Path) -> None:
    ws = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="fla-settings-"))
    try:
        (ws / ".vscode").mkdir()
        (ws / ".vscode" / "tasks.json").write_text("{}")
        (ws / ".mcp.json").write_text("{}")
        box = resolve("required", tmp_path / "home")
        code = ("for p in ('.vscode/tasks.json', '.mcp.json', 'notes.txt'):\n"
                "    try:\n        open(p, 'w').write('changed')\n        print(p, 'written')\n"
                "    except OSError as e:\n        print(p, 'refused', e.strerror)")
        keep = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent]
        argv = box.wrap([sys.executable, "-c", code], workdir=ws, proxy=False, keep=keep)  # a venv under /tmp too
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
        assert ".vscode/tasks.json refused" in out and ".mcp.json refused" in out and "notes.txt written" in out
        assert (ws / ".vscode" / "tasks.json").read_text() == "{}"
    finally:
        shutil.rmtree(ws, ignore_errors=True)
