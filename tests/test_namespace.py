"""One import namespace (issue 19): a project with its own ``config/`` and ``tools/`` folders uses the
agent's Python API and CLI and keeps its own packages; the built wheel installs only ``free_llm_agent``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fakes.provider_server import Reply
from tests.support.config import ConfigFactory, FakeFactory
from tests.support.paths import CLI, ROOT

pytestmark = pytest.mark.timeout(300)

SCRIPT = """
import config, tools
from config.settings import VALUE
from free_llm_agent import build_chat_model, build_graph

llm = build_chat_model({cfg!r}, {home!r})
print("answer:", llm.invoke("say hi").content)
print("mine:", VALUE, tools.TOOLS)
print("graph:", type(build_graph()).__name__)
"""


def _project(tmp_path: Path, *, package: bool) -> Path:
    """A user's project: ``config/`` (a package, or a plain folder) and ``tools/`` of its own."""
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    (project / "tools").mkdir()
    if package:
        (project / "config" / "__init__.py").write_text("")
    (project / "config" / "settings.py").write_text("VALUE = 'my settings'\n")
    (project / "config" / "providers.yaml").write_text("# the user's own, not the agent's\n")
    (project / "tools" / "__init__.py").write_text("TOOLS = 'my tools'\n")
    return project


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FREE_AGENT_CONFIG_DIR")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@pytest.mark.parametrize("package", [True, False], ids=["config-package", "config-folder"])
def test_a_script_beside_its_own_config_and_tools_uses_the_api_and_keeps_its_packages(
    package: bool, tmp_path: Path, fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    fake = fake_server("openai")
    fake.script(Reply.text("hi there"))
    cfg = make_config({"local": {"kind": "openai_compatible", "base_url": fake.base_url}})
    project = _project(tmp_path, package=package)
    (project / "script.py").write_text(SCRIPT.format(cfg=str(cfg), home=str(home)))
    proc = subprocess.run([sys.executable, "script.py"], cwd=project, env=_env(), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "answer: hi there" in proc.stdout
    assert "mine: my settings my tools" in proc.stdout
    assert "graph: CompiledStateGraph" in proc.stdout


def test_the_cli_works_inside_a_project_with_its_own_config_folder(
    tmp_path: Path, make_config: ConfigFactory, home: Path
) -> None:
    cfg = make_config({"local": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}})
    project = _project(tmp_path, package=True)
    script = Path(sys.executable).parent / "free-llm-agent"
    argv = [str(script)] if script.exists() else list(CLI)
    proc = subprocess.run([*argv, "threads", "--config-dir", str(cfg), "--home", str(home)], cwd=project,
                          env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of this checkout (the build writes into its source folder)."""
    src = tmp_path_factory.mktemp("src") / "free-llm-agent"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "build", "*.egg-info", ".langgraph_api", "tests", "bench", "docs"))
    out = tmp_path_factory.mktemp("dist")
    build = "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", build, str(out)], cwd=src, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


def test_the_wheel_holds_only_the_free_llm_agent_package_with_every_room(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"free_llm_agent", "free_llm_agent-0.1.0.dist-info"}
    for module in ("graph/workflow.py", "nodes/plan.py", "providers/chat_model.py", "tools/executor_worker.py",
                   "cli/main.py", "config/providers.yaml", "config/limits.yaml"):
        assert f"free_llm_agent/{module}" in names
    entry_points = zipfile.ZipFile(wheel).read("free_llm_agent-0.1.0.dist-info/entry_points.txt").decode()
    assert "free-llm-agent = free_llm_agent.cli.main:entry" in entry_points


def test_the_installed_wheel_imports_from_itself_not_from_the_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    probe = ("import free_llm_agent.graph.workflow as w, free_llm_agent.config.loader as c; "
             "print(w.__file__); print(c.REPO_CONFIG_DIR / 'providers.yaml')")
    env = {**_env(), "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-P", "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    module, shipped = proc.stdout.split()
    assert module.startswith(str(target)) and Path(shipped).is_file()
