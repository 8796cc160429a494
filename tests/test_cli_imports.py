"""What the CLI imports, and when: ``--help`` loads no langchain/langgraph; ``run`` starts its executor
before langchain/langgraph are imported, and never loads what only other processes use."""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from free_llm_agent.cli import run_imports
from tests.fakes.agent_responder import DEFAULT_PLAN, make_responder
from tests.fakes.provider_server import FakeProvider
from tests.support.paths import ROOT, RUN_GRAPH

HEAVY = ("langchain_core", "langgraph", "free_llm_agent.runtime.runner", "free_llm_agent.storage.sqlite.checkpoints",
         "free_llm_agent.providers.chat_model", "groq", "httpx")
# Used by the executor's worker and kernel (their own processes), by nobody in a run, or (rich) only to show
# progress and errors, which a successful ``run --json`` does not.
NEVER = ("trio", "httpx._main", "langchain_text_splitters", "pygments", "rich", "debugpy", "IPython", "ipykernel",
         "interpreter", "jupyter_client")

PROBE = """
import json, sys
from free_llm_agent.runtime import deps as graph_deps
seen = []
original = graph_deps.Deps.prewarm
def prewarm(self, *args, **kwargs):
    seen.append(sorted(m for m in HEAVY if m in sys.modules))
    return original(self, *args, **kwargs)
graph_deps.Deps.prewarm = prewarm
from free_llm_agent.cli import main as run_graph
code = run_graph.main(ARGV)
loaded = sorted({m for m, mod in sys.modules.items() if mod is not None
                 for n in NEVER if m == n or m.startswith(n + ".")})
deferred = sorted(n for n, m in sys.modules.items() if type(m).__name__ == "DeferredPackage")
print(json.dumps({"code": code, "heavy_at_prewarm": seen, "never": loaded, "deferred": deferred}))
"""


def imported(argv: list[str]) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", str(RUN_GRAPH), *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def test_help_imports_no_langchain_langgraph_http_client_or_rich() -> None:
    names = imported(["--help"])
    assert "argparse" in names
    assert not {n for n in names for h in (*HEAVY, "rich") if n == h or n.startswith(h + ".")}


def test_run_starts_the_executor_before_langchain_and_never_imports_what_it_does_not_use(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path, tmp_path: Path
) -> None:
    server = fake_server("openai", responder=make_responder(DEFAULT_PLAN[:1]))
    config = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    workdir = tmp_path / "work"
    workdir.mkdir()
    argv = ["--config-dir", str(config), "--home", str(home), "run", "make numbers", "--workdir", str(workdir),
            "--yes", "--json"]
    probe = PROBE.replace("HEAVY", repr(HEAVY)).replace("NEVER", repr(NEVER)).replace("ARGV", repr(argv))
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=180,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["code"] == 0, proc.stdout
    assert got["heavy_at_prewarm"][0] == []  # the CLI asked for the executor before any of HEAVY was imported
    assert got["never"] == []
    assert got["deferred"] == ["langgraph_sdk", "langsmith.types"]  # their __init__ never ran: the run did not need it


def test_a_deferred_package_runs_its_init_once_at_the_first_name_it_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "fla_deferred_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import builtins\nbuiltins.fla_inits = getattr(builtins, 'fla_inits', 0) + 1\n"
                                     "from .small import SMALL\nBIG = SMALL * 2\n__all__ = ['BIG']\n")
    (pkg / "small.py").write_text("SMALL = 21\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("fla_deferred_pkg", "fla_deferred_pkg.small"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert run_imports.defer("fla_deferred_pkg")
    from fla_deferred_pkg.small import SMALL

    module = sys.modules["fla_deferred_pkg"]
    assert SMALL == 21 and isinstance(module, run_imports.DeferredPackage)
    assert getattr(builtins, "fla_inits", 0) == 0  # the submodule imported without the package's __init__
    from fla_deferred_pkg import BIG

    assert BIG == 42 and type(module) is types.ModuleType and module.__all__ == ["BIG"]
    assert builtins.fla_inits == 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        module.MISSING  # noqa: B018
    assert builtins.fla_inits == 1  # type: ignore[attr-defined]
    monkeypatch.delattr(builtins, "fla_inits")
    assert not run_imports.defer("fla_deferred_pkg")  # already imported
    assert not run_imports.defer("fla_deferred_pkg.small")  # not a package
