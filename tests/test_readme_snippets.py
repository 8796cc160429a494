"""The project as an installed package: the README's Python snippet as written, the console
script and imports from a folder outside the repo, ``.env`` read by the API as by the CLI, and
the documented install as a tool into a fresh environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.support.config import key_env_for
from tests.support.paths import ROOT
from tests.support.readme import snippet

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.timeout(300)


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A folder outside the repo, as a user's script or project would be."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def test_the_python_snippet_runs_as_written_from_a_folder_outside_the_repo_with_keys_in_env(
        fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path,
        elsewhere: Path) -> None:
    server = fake_server("openai")
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    var = key_env_for("groq_llama")
    (home / ".env").write_text(f"{var}=from-the-home-env-file\n")  # the key only in HOME/.env
    env = {k: v for k, v in os.environ.items() if k != var} | {"FREE_AGENT_CONFIG_DIR": str(cfg),
                                                                "FREE_AGENT_HOME": str(home)}
    (elsewhere / "script.py").write_text(snippet("python-api"))
    proc = run([sys.executable, "script.py"], elsewhere, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "groq_llama False"
    assert server.requests[0].headers["authorization"] == "Bearer from-the-home-env-file"


def test_the_console_script_works_from_any_folder(
        fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path,
        elsewhere: Path) -> None:
    server = fake_server("openai")
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    env = {**os.environ, "FREE_AGENT_CONFIG_DIR": str(cfg), "FREE_AGENT_HOME": str(home)}
    proc = run([str(BIN / "free-llm-agent"), "check", "--json"], elsewhere, env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["providers"][0]["ok"]
    via_uv = run(["uv", "run", "--frozen", "--project", str(ROOT), "free-llm-agent", "graph"], elsewhere,
                 {**env, "VIRTUAL_ENV": ""})
    assert via_uv.returncode == 0, via_uv.stderr
    assert "plan" in via_uv.stdout and "write_code" in via_uv.stdout


def test_the_override_list_for_installs_matches_the_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["override-dependencies"]
    shipped = [ln.strip() for ln in (ROOT / "overrides.txt").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    assert shipped == project


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed: the documented install path needs it")
def test_installed_as_a_tool_in_a_fresh_environment_it_runs_a_goal_in_the_current_folder(
        fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path,
        tmp_path: Path, elsewhere: Path) -> None:
    source = tmp_path / "source"  # a copy of the repo's files, so the build leaves nothing in the repo
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_symlink():  # the rooms linked into free_llm_agent/
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).symlink_to(os.readlink(ROOT / name))
        elif (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    tools, bin_dir = tmp_path / "tools", tmp_path / "bin"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {
        "UV_TOOL_DIR": str(tools), "UV_TOOL_BIN_DIR": str(bin_dir)}
    installed = run(["uv", "tool", "install", "--overrides", str(source / "overrides.txt"), str(source)],
                    elsewhere, env, timeout=240)
    assert installed.returncode == 0, installed.stderr[-3000:]
    server = fake_server("openai", responder=make_responder((("write a.txt", "open('a.txt','w').write('a')"),)))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {  # with the key make_config set
        "FREE_AGENT_CONFIG_DIR": str(cfg), "FREE_AGENT_HOME": str(home)}
    proc = run([str(bin_dir / "free-llm-agent"), "run", "write a file", "--yes", "--json"], elsewhere, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["status"] == "completed"
    assert (elsewhere / "a.txt").read_text() == "a"  # ran in the folder it was started in
