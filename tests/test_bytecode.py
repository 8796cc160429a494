"""tools.bytecode: what the sandboxed executor imports gets its bytecode compiled outside the sandbox."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

from free_llm_agent.tools import bytecode


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "ipykernel"  # named as a package whose marker (kernelapp.py) is checked too
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "kernelapp.py").write_text("Y = 2\n")
    return pkg


def test_missing_bytecode_is_found_and_compiled(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    assert bytecode.missing([pkg]) == [pkg]
    subprocess.run(bytecode.command([pkg]), check=True, env=bytecode._env())
    assert Path(importlib.util.cache_from_source(str(pkg / "kernelapp.py"))).exists()
    assert bytecode.missing([pkg]) == []


def test_a_package_with_only_its_init_cached_is_still_missing(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    subprocess.run(bytecode.command([pkg / "__init__.py"]), check=True, env=bytecode._env())
    assert bytecode.missing([pkg]) == [pkg]


def test_the_sources_are_what_the_worker_and_kernel_import() -> None:
    names = {p.name for p in bytecode.sources()}
    assert {"tools", "ipykernel", "IPython", "jupyter_client", "zmq", "interpreter"} <= names
