"""No module imports a storage backend's implementation except the registry (and the implementation itself),
and the storage base modules import no implementation at all — not even for type checking.

Every module of the package is read (its AST, through the rooms linked into ``free_llm_agent/``): its
imports, relative ones resolved, and string constants naming a module (``importlib``, monkeypatch targets)."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

from tests.support.paths import ROOT

PACKAGE = ROOT / "free_llm_agent"
STORAGE = "free_llm_agent.storage"
IMPLEMENTATIONS = (f"{STORAGE}.sqlite", f"{STORAGE}.postgres")
REGISTRY = f"{STORAGE}.registry"


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, file) of every module of the package, following the rooms' links."""
    for folder, dirs, files in os.walk(PACKAGE, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".py"):
                path = Path(folder) / name
                parts = path.relative_to(ROOT).with_suffix("").parts
                yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imported(module: str, source: str, is_package: bool) -> set[str]:
    """The modules ``source`` names: imports (``from a import b`` counts as ``a`` and ``a.b``) and strings."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(STORAGE):
            found.add(node.value)
    return found


def implementation_of(name: str) -> str | None:
    return next((impl for impl in IMPLEMENTATIONS if name == impl or name.startswith(impl + ".")), None)


def violations(module: str, names: set[str]) -> list[str]:
    own = implementation_of(module)
    bad = []
    for name in sorted(names):
        impl = implementation_of(name)
        if impl is not None and impl != own and module != REGISTRY:
            bad.append(f"{module} imports {name}")
    return bad


def test_no_module_imports_a_backend_implementation_except_the_registry() -> None:
    seen, bad = set(), []
    for module, path in modules():
        seen.add(module)
        bad += violations(module, imported(module, path.read_text(encoding="utf-8"), path.name == "__init__.py"))
    assert {REGISTRY, *IMPLEMENTATIONS, "free_llm_agent.cli.main", "free_llm_agent.graph.workflow"} <= seen
    assert bad == []


def test_the_storage_base_modules_import_no_implementation() -> None:
    base = [(m, p) for m, p in modules() if m.startswith(STORAGE) and implementation_of(m) is None
            and m != REGISTRY]
    assert {m for m, _ in base} >= {f"{STORAGE}.{n}" for n in ("database", "checkpoints", "guard", "doctor",
                                                                "errors")}
    for module, path in base:
        names = imported(module, path.read_text(encoding="utf-8"), path.name == "__init__.py")
        assert not [n for n in names if implementation_of(n)], module


def test_the_rule_catches_each_way_of_naming_an_implementation() -> None:
    cases = {
        "from free_llm_agent.storage.sqlite.db import Database": "free_llm_agent.storage.sqlite.db",
        "from free_llm_agent.storage import postgres": "free_llm_agent.storage.postgres",
        "import free_llm_agent.storage.postgres.guard": "free_llm_agent.storage.postgres.guard",
        "from .sqlite import guard": "free_llm_agent.storage.sqlite.guard",
        "mod = 'free_llm_agent.storage.postgres.guard.KEEPALIVES'": "free_llm_agent.storage.postgres.guard.KEEPALIVES",
    }
    for source, name in cases.items():
        found = violations("free_llm_agent.storage.doctor", imported("free_llm_agent.storage.doctor", source, False))
        assert f"free_llm_agent.storage.doctor imports {name}" in found, source
    assert violations(REGISTRY, {"free_llm_agent.storage.postgres"}) == []
    assert violations("free_llm_agent.storage.sqlite.doctor", {"free_llm_agent.storage.sqlite.db"}) == []
    assert violations("free_llm_agent.storage.sqlite.doctor", {"free_llm_agent.storage.postgres.db"}) != []
