"""Without the ``[postgres]`` extra, a ``postgresql://`` URL gets a message naming it: the Python API raises
:class:`BackendMissing`, the CLI exits 2 without a traceback. psycopg is blocked in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

URL = "postgresql://agent:s3cret@db.invalid:5432/agent"
BLOCK = "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg_pool'] = None\n"

API = BLOCK + """
from pathlib import Path
from free_llm_agent.storage import registry
from free_llm_agent.storage.errors import BackendMissing, StateUnavailable
for name in ("open_state", "open_checkpointer", "open_guards", "doctor_checks"):
    try:
        getattr(registry, name)(sys.argv[1], Path(sys.argv[2]))
    except BackendMissing as exc:
        assert isinstance(exc, StateUnavailable)
        print(name, "|", exc)
    else:
        print(name, "| opened")
"""

CLI = BLOCK + """
import runpy
sys.argv = ["run_graph.py", *sys.argv[1:]]
runpy.run_path("run_graph.py", run_name="__main__")
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_the_python_api_raises_a_clear_error_naming_the_extra(tmp_path: Path) -> None:
    done = _run(API, URL, str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["open_state", "open_checkpointer", "open_guards",
                                                        "doctor_checks"]
    for line in lines:
        assert "pip install 'free-llm-agent[postgres]'" in line and "uv sync --extra postgres" in line, line
        assert "s3cret" not in line


@pytest.mark.parametrize("command", [["doctor"], ["threads"], ["show", "t1"]])
def test_the_cli_exits_2_with_the_message_and_no_traceback(tmp_path: Path, command: list[str]) -> None:
    done = _run(CLI, "--home", str(tmp_path), "--database-url", URL, *command)
    assert done.returncode == 2, (done.stdout, done.stderr[-2000:])
    assert "pip install 'free-llm-agent[postgres]'" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr + done.stdout


def test_sqlite_needs_no_postgres_library(tmp_path: Path) -> None:
    done = _run(CLI, "--home", str(tmp_path), "doctor")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "healthy" in done.stdout
