"""tools.bytecode: what the sandboxed executor imports gets its bytecode compiled outside the sandbox."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
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


def test_what_a_process_imported_without_writing_bytecode_is_compiled_for_the_next_one(tmp_path: Path) -> None:
    """PYTHONDONTWRITEBYTECODE (``-B``): the modules a run imported from source are found (their outermost
    package's folder, a lone module's file) and compiled, so the next process reads bytecode."""
    pkg = tmp_path / "site" / "somepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from somepkg.sub import deep\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "deep.py").write_text("Z = 3\n")
    (tmp_path / "site" / "lonely.py").write_text("W = 4\n")
    probe = ("import sys, somepkg, lonely; from free_llm_agent.tools import bytecode as b; "
             "todo = sorted(str(p) for p in b.imported_sources() if str(p).startswith(sys.argv[1])); print(todo); "
             "import subprocess; subprocess.run(b.command([__import__('pathlib').Path(p) for p in todo]), "
             "check=True, env=b._env())")
    site = str(tmp_path / "site")
    proc = subprocess.run([sys.executable, "-B", "-c", probe, site], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([site, *sys.path])})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(sorted([str(pkg), str(tmp_path / "site" / "lonely.py")]))
    for source in (pkg / "sub" / "deep.py", pkg / "__init__.py", tmp_path / "site" / "lonely.py"):
        assert Path(importlib.util.cache_from_source(str(source))).exists()
