"""The snapshot store in the agent's home: content-addressed blobs, manifests and one index per thread.

Layout (``HOME/snapshots/``)::

    objects/ab/cdef…        a file's bytes (raw), or a manifest (zlib-compressed JSON), named by sha256
    threads/THREAD.json     the thread's history: one record per task attempt (its before/after manifests)
                            and one per undo, oldest first
    roots/<folder hash>     the latest manifest taken of a working directory (a hint: its hashes are reused)
    usage                   bytes under objects/ (kept up to date by every write, recounted by a prune)
    lock                    held (flock) by whoever writes or prunes, so two runs sharing a home never
                            delete what the other just wrote

Everything is written to a temporary name and renamed, so a crash leaves either the old or the new file.
Same content is stored once, whatever thread or task it belongs to. A total cap (``snapshots.max_total_mb``)
is kept by pruning the threads used least recently, never the one writing; what still does not fit is
listed in the manifest but not stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process at a time is assumed
    fcntl = None  # type: ignore[assignment]

Manifest = dict[str, Any]  # {"v": 1, "root": str, "taken_at": float, "files": {path: Entry}, "dirs": [path]}
# An entry: [size, mtime_ns, ctime_ns, inode, mode, sha256 or None, note or None]; note says why it is not stored.
SIZE, MTIME, CTIME, INODE, MODE, SHA, NOTE = range(7)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Store:
    """``HOME/snapshots``: blobs, manifests, thread indexes; ``max_total_bytes`` caps ``objects/``."""

    def __init__(self, root: Path, *, max_file_bytes: int, max_total_bytes: int) -> None:
        self.root = root
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.objects = root / "objects"
        self.threads = root / "threads"
        self.roots = root / "roots"

    # -- locking -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "a+b") as fh:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    # -- objects -------------------------------------------------------------------------------
    def object_path(self, sha: str) -> Path:
        return self.objects / sha[:2] / sha[2:]

    def has(self, sha: str) -> bool:
        return self.object_path(sha).exists()

    def read(self, sha: str) -> bytes:
        return self.object_path(sha).read_bytes()

    def staging(self) -> Path:
        path = self.objects / "staging"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def clear_staging(self) -> None:
        """Copies a killed snapshot left behind (called under the lock: no snapshot is being taken)."""
        folder = self.objects / "staging"
        if folder.is_dir():
            for leftover in folder.iterdir():
                leftover.unlink(missing_ok=True)

    def adopt(self, staged: Path, sha: str) -> int:
        """Move a staged copy into ``objects/`` under its hash; the bytes it added (0: known already)."""
        target = self.object_path(sha)
        if target.exists():
            staged.unlink()
            return 0
        target.parent.mkdir(parents=True, exist_ok=True)
        size = staged.stat().st_size
        os.replace(staged, target)
        return size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(data).hexdigest()
        target = self.object_path(sha)
        if target.exists():
            return sha, 0
        _atomic_write(target, data)
        return sha, len(data)

    # -- usage and the total cap -----------------------------------------------------------------
    def usage(self) -> int:
        try:
            return int((self.root / "usage").read_text())
        except (OSError, ValueError):
            return self.recount()

    def add_usage(self, added: int) -> None:
        if added:
            _atomic_write(self.root / "usage", str(self.usage() + added).encode())

    def recount(self) -> int:
        total = 0
        if self.objects.is_dir():
            for folder in os.scandir(self.objects):
                if folder.is_dir(follow_symlinks=False) and folder.name != "staging":
                    total += sum(e.stat(follow_symlinks=False).st_size for e in os.scandir(folder.path))
        _atomic_write(self.root / "usage", str(total).encode())
        return total

    # -- manifests -----------------------------------------------------------------------------
    def put_manifest(self, manifest: Manifest) -> str:
        kept = {k: v for k, v in manifest.items() if k != "hashed"}
        sha, added = self.put_bytes(zlib.compress(json.dumps(kept, separators=(",", ":")).encode(), 1))
        self.add_usage(added)
        return sha

    def manifest(self, sha: str) -> Manifest:
        return dict(json.loads(zlib.decompress(self.read(sha))))

    def latest_of(self, workdir: str) -> Manifest | None:
        """The last manifest taken of ``workdir`` (any thread), if it is still stored."""
        try:
            return self.manifest((self.roots / _root_key(workdir)).read_text().strip())
        except (OSError, ValueError, zlib.error):
            return None

    def set_latest(self, workdir: str, sha: str) -> None:
        _atomic_write(self.roots / _root_key(workdir), sha.encode())

    # -- thread indexes ------------------------------------------------------------------------
    def index_path(self, thread: str) -> Path:
        return self.threads / f"{hashlib.sha256(thread.encode()).hexdigest()[:32]}.json"

    def index(self, thread: str) -> dict[str, Any]:
        try:
            return dict(json.loads(self.index_path(thread).read_text()))
        except (OSError, ValueError):
            return {"thread": thread, "events": []}

    def save_index(self, thread: str, index: dict[str, Any]) -> None:
        _atomic_write(self.index_path(thread), json.dumps(index, indent=1).encode())

    # -- pruning -------------------------------------------------------------------------------
    def make_room(self, needed: int, keep_thread: str, keep: set[str]) -> bool:
        """Prune the least recently used other threads until ``needed`` more bytes fit under the cap.
        ``keep``: hashes in use right now (a manifest being written). True when they fit."""
        if self.usage() + needed <= self.max_total_bytes:
            return True
        others = sorted((p for p in self.threads.glob("*.json") if p != self.index_path(keep_thread)),
                        key=lambda p: p.stat().st_mtime) if self.threads.is_dir() else []
        for index in others:
            index.unlink()
            if self._collect(keep) + needed <= self.max_total_bytes:
                return True
        return self._collect(keep) + needed <= self.max_total_bytes

    def _collect(self, keep: set[str]) -> int:
        """Delete every object no thread (nor ``keep``) refers to; the bytes left."""
        live = set(keep)
        for path in self.threads.glob("*.json") if self.threads.is_dir() else []:
            try:
                events = json.loads(path.read_text()).get("events", [])
            except (OSError, ValueError):
                continue
            for event in events:
                for sha in (event.get("before"), event.get("after"), event.get("state")):
                    if sha and sha not in live and self.has(sha):
                        live.add(sha)
                        live.update(e[SHA] for e in self.manifest(sha)["files"].values() if e[SHA])
        for pointer in self.roots.glob("*") if self.roots.is_dir() else []:
            if pointer.read_text().strip() not in live:
                pointer.unlink()
        for folder in (os.scandir(self.objects) if self.objects.is_dir() else []):
            if folder.is_dir(follow_symlinks=False) and folder.name != "staging":
                for entry in os.scandir(folder.path):
                    if folder.name + entry.name not in live:
                        os.unlink(entry.path)
        return self.recount()


def _root_key(workdir: str) -> str:
    return hashlib.sha256(os.fsencode(workdir)).hexdigest()[:32]  # a folder name need not be UTF-8


def now() -> float:
    return round(time.time(), 3)
