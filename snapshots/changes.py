"""What a task changed: two manifests compared, file by file, and the diff of its text files.

A change is ``{"path", "change": "created"|"modified"|"deleted", "bytes_before", "bytes_after",
"lines_added", "lines_removed", "not_stored"}``: paths relative to the working directory, files only
(folders are not listed), a rename as a deletion and a creation, sizes ``None`` on the side where the
file did not exist, line counts for text files whose both sides are stored (else ``None``), and
``not_stored`` the reason a side could not be kept (ignored by .gitignore, over a cap), else ``None``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any, Literal

from typing_extensions import TypedDict  # pydantic needs this one on 3.11 (Studio schemas)

from free_llm_agent.config.text import escaped
from free_llm_agent.snapshots.scan import same
from free_llm_agent.snapshots.store import NOTE, SHA, SIZE, Manifest, Store

_TEXT_LIMIT = 2 << 20  # line counts and diffs for text files up to this size per side


class FileChange(TypedDict):
    path: str
    change: Literal["created", "modified", "deleted"]
    bytes_before: int | None
    bytes_after: int | None
    lines_added: int | None
    lines_removed: int | None
    not_stored: str | None


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _text(store: Store, entry: list[Any] | None) -> list[str] | None:
    """The lines of a stored text file ([] for a missing side); None for binary, too large or not stored."""
    if entry is None:
        return []
    if entry[NOTE] is not None or not entry[SHA] or entry[SIZE] > _TEXT_LIMIT or not store.has(entry[SHA]):
        return None
    data = store.read(entry[SHA])
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def _counts(a: list[str], b: list[str]) -> tuple[int, int]:
    added = removed = 0
    for line in difflib.unified_diff(a, b, n=0):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed


def _pairs(before: Manifest, after: Manifest) -> Iterator[tuple[str, list[Any] | None, list[Any] | None]]:
    old, new = before.get("files", {}), after.get("files", {})
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if not same(a, b):
            yield path, a, b


def compare(store: Store, before: Manifest, after: Manifest) -> list[FileChange]:
    """The files created, modified and deleted from ``before`` to ``after``, by path."""
    out: list[FileChange] = []
    for path, a, b in _pairs(before, after):
        kind: Literal["created", "modified", "deleted"] = "created" if a is None else "deleted" if b is None \
            else "modified"
        lines_a, lines_b = _text(store, a), _text(store, b)
        added = removed = None
        if lines_a is not None and lines_b is not None:
            added, removed = _counts(lines_a, lines_b)
        side = b if b is not None else a
        note = (side[NOTE] if side is not None else None) or (a[NOTE] if a is not None else None)
        # a name that is not UTF-8 is listed with \xNN escapes (the manifests keep the real one, for undo)
        out.append(FileChange(path=escaped(path), change=kind, bytes_before=a[SIZE] if a else None,
                              bytes_after=b[SIZE] if b else None, lines_added=added, lines_removed=removed,
                              not_stored=note))
    return out


def describe(change: FileChange) -> str:
    """One line: ``created report.md (1.2 KB, +3 lines)``, ``modified data.bin (10 B → 12 B)`` …"""
    path, kind = change["path"], change["change"]
    if kind == "created":
        sizes = human_size(change["bytes_after"])
    elif kind == "deleted":
        sizes = human_size(change["bytes_before"])
    else:
        sizes = f"{human_size(change['bytes_before'])} → {human_size(change['bytes_after'])}"
    if change["lines_added"] is not None and kind != "deleted":
        sizes += f", +{change['lines_added']} −{change['lines_removed']} lines"
    note = f"; not stored: {change['not_stored']}" if change.get("not_stored") else ""
    return f"{kind} {path} ({sizes}){note}"


def describe_all(changes: list[FileChange] | list[dict[str, Any]], limit: int = 20) -> list[str]:
    """:func:`describe` of each change, at most ``limit`` lines (then how many more)."""
    lines = [describe(c) for c in changes[:limit]]  # type: ignore[arg-type]
    if len(changes) > limit:
        lines.append(f"… and {len(changes) - limit} more (show THREAD --json lists them all)")
    return lines


def unified(store: Store, before: Manifest, after: Manifest) -> Iterator[str]:
    """A unified diff of the text files; a binary or unstored file as one line with its sizes."""
    for raw, a, b in _pairs(before, after):
        path = escaped(raw)
        lines_a, lines_b = _text(store, a), _text(store, b)
        if lines_a is None or lines_b is None:
            why = next((e[NOTE] for e in (b, a) if e is not None and e[NOTE]), None)
            what = f"not stored: {why}" if why else "binary"
            yield (f"{'created' if a is None else 'deleted' if b is None else 'modified'} {path} ({what}): "
                   f"{human_size(a[SIZE] if a else None)} → {human_size(b[SIZE] if b else None)}\n")
            continue
        yield from difflib.unified_diff(lines_a, lines_b, "/dev/null" if a is None else f"a/{path}",
                                        "/dev/null" if b is None else f"b/{path}")
