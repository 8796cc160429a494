"""The working directory travels with the run's input (issue 21, case 3). A run stopped between its input's
checkpoint and the first node's (a full disk, the database going away, ``kill -9`` in that gap) used to
resume in a scratch folder under the home, exit 0. Now ``resume`` runs it in its own folder; a thread that
never recorded one refuses to resume, naming ``--workdir``."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from free_llm_agent.config import load_config
from free_llm_agent.graph.context import Context
from free_llm_agent.runtime.deps import Deps
from free_llm_agent.runtime.runner import Runner
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.support.cli import cli

PLAN = (("write a.txt", "open('a.txt', 'w').write('made here')"),)
pytestmark = pytest.mark.timeout(240)


def _stopped_after_input(home: Path, cfg: Path, thread: str, given: dict[str, Any] | None,
                         workdir: Path | None) -> None:
    """A thread whose only checkpoint is its input's: the process stopped before ``start`` ran."""
    deps = Deps(home=home, config=load_config(cfg), reuse_executors=False)
    runner = Runner(home, context=Context(auto_approve=True, workdir=str(workdir) if workdir else None), deps=deps)
    try:
        value = given if given is not None else runner.input_for("write a.txt in the folder", thread)
        list(runner.graph.stream(value, runner.config_for(thread), context=runner.context,
                                 interrupt_before=["start"], durability="sync"))
        assert runner.graph.get_state(runner.config_for(thread)).next == ("start",)
    finally:
        runner.close()


def _resume(cfg: Path, home: Path, thread: str) -> subprocess.CompletedProcess[str]:
    return cli(["resume", thread, "--yes"], home, cfg, timeout=200)


def test_a_run_stopped_right_after_its_input_checkpoint_resumes_in_its_own_folder(
        home: Path, var_tmp: Path, fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path]) -> None:
    server = fake_server("openai", responder=make_responder(PLAN))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    project = var_tmp / "project"
    project.mkdir()
    _stopped_after_input(home, cfg, "early", None, project)
    done = _resume(cfg, home, "early")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (project / "a.txt").read_text() == "made here"  # before: the goal ran in a scratch folder
    assert not list(home.rglob("a.txt"))


def test_a_thread_that_never_recorded_a_folder_refuses_to_resume_naming_workdir(
        home: Path, fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path]) -> None:
    server = fake_server("openai", responder=make_responder(PLAN))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    _stopped_after_input(home, cfg, "old", {"goal": "write a.txt in the folder"}, None)  # an input as before
    done = _resume(cfg, home, "old")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--workdir" in done.stderr and "'old'" in done.stderr
    assert not [r for r in server.requests if r.method == "POST"]  # nothing was asked, nothing ran
    assert not list(home.rglob("a.txt"))
