"""Take a snapshot of a working directory: one walk, hashing only what changed.

Every file (and symbolic link) under the folder gets an entry: size, mtime, ctime, inode, mode, and
the sha256 of its bytes. A file whose size, mtime, ctime and inode are those of the previous manifest
of the same folder keeps that manifest's hash unread: an unchanged folder costs one ``stat`` per file.
New content is copied into the store as it is hashed (one read).

Not stored (listed with size and mtime only, and the reason in the entry's note): paths the folder's
``.gitignore`` files ignore (matched with ``pathspec``, git's rules, nested files included), and files
over ``snapshots.max_file_mb``. Files that do not fit under ``snapshots.max_total_mb`` are hashed but
not stored. The folder's own ``.git`` directories are left out entirely (git keeps that history), and
so is the agent's home when it lies inside the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec

from free_llm_agent.snapshots.store import MTIME, NOTE, SHA, SIZE, Manifest, Store

IGNORED = "ignored by .gitignore"
SKIPPED_DIRS = frozenset({".git"})
_IN_MEMORY = 4 << 20  # files up to this size are hashed from one read; larger ones are streamed


def over_file_cap(mb: float) -> str:
    return f"over snapshots.max_file_mb ({mb:g} MB)"


def over_total_cap(mb: float) -> str:
    return f"over snapshots.max_total_mb ({mb:g} MB)"


@dataclass
class _Staged:
    rel: str
    sha: str
    size: int
    data: bytes | None = None  # small files: the bytes; large ones: ``path``, a copy in the staging folder
    path: Path | None = None


@dataclass
class _Walk:
    root: Path
    store: Store | None
    previous: dict[str, list[Any]]
    skip: set[tuple[int, int]]
    max_file: int  # bytes: larger files are listed, not read
    files: dict[str, list[Any]] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    staged: list[_Staged] = field(default_factory=list)
    hashed: int = 0  # files read (the rest reused a hash)


def scan(root: Path, store: Store | None, previous: Manifest | None = None, *, thread: str = "",
         skip: tuple[Path, ...] = (), max_file: int | None = None) -> Manifest:
    """The manifest of ``root`` now. With ``store``, new content is stored (within the caps) under its
    hash; without, only hashed (a comparison). ``max_file``: the store's ``max_file_bytes`` by default."""
    skipped = set()
    for path in skip:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            skipped.add((st.st_dev, st.st_ino))
    if max_file is None:
        max_file = store.max_file_bytes if store is not None else 1 << 62
    walk = _Walk(root, store, dict((previous or {}).get("files", {})), skipped, max_file)
    _walk_dir(walk, str(root), "", [], False)
    # "hashed": the files read (the others reused a hash); not stored with the manifest
    manifest: Manifest = {"v": 1, "root": str(root), "files": walk.files, "dirs": sorted(walk.dirs),
                          "hashed": walk.hashed}
    if store is not None:
        _commit(walk, store, thread)
    return manifest


def _gitignore(folder: str) -> pathspec.GitIgnoreSpec | None:
    try:
        with open(os.path.join(folder, ".gitignore"), encoding="utf-8", errors="replace") as fh:
            return pathspec.GitIgnoreSpec.from_lines(fh.read().splitlines())
    except OSError:
        return None


def _ignored(rules: list[tuple[str, pathspec.GitIgnoreSpec]], rel: str) -> bool:
    """git's answer for ``rel`` (a folder ends with '/'): the deepest .gitignore with a matching rule decides."""
    verdict: bool | None = None
    for prefix, spec in rules:
        result = spec.check_file(rel[len(prefix):]).include
        if result is not None:
            verdict = result
    return bool(verdict)


def _walk_dir(walk: _Walk, folder: str, prefix: str, rules: list[tuple[str, pathspec.GitIgnoreSpec]],
              ignored: bool) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    if not ignored and any(e.name == ".gitignore" for e in entries):
        spec = _gitignore(folder)
        if spec is not None:
            rules = [*rules, (prefix, spec)]
    for entry in entries:
        rel = prefix + entry.name
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if entry.name in SKIPPED_DIRS or (st.st_dev, st.st_ino) in walk.skip:
                continue
            walk.dirs.append(rel)
            _walk_dir(walk, entry.path, rel + "/", rules, ignored or _ignored(rules, rel + "/"))
        elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            _file(walk, entry.path, rel, st, ignored or (bool(rules) and _ignored(rules, rel)))


def _file(walk: _Walk, path: str, rel: str, st: os.stat_result, ignored: bool) -> None:
    entry: list[Any] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode, None, None]
    if ignored:
        entry[NOTE] = IGNORED
    elif st.st_size > walk.max_file:
        entry[NOTE] = over_file_cap(walk.max_file / (1 << 20))
    else:
        before = walk.previous.get(rel)
        if before is not None and before[SHA] and before[NOTE] is None and before[:4] == entry[:4]:
            entry[SHA] = before[SHA]  # unchanged since the last snapshot: not read again
        else:
            try:
                entry[SHA] = _hash(walk, path, rel, st)
            except OSError as exc:  # vanished or unreadable while we looked
                entry[NOTE] = f"unreadable ({exc.strerror or exc})"
    walk.files[rel] = entry


def _hash(walk: _Walk, path: str, rel: str, st: os.stat_result) -> str:
    walk.hashed += 1
    if stat.S_ISLNK(st.st_mode):
        data = os.fsencode(os.readlink(path))
    elif st.st_size <= _IN_MEMORY:
        with open(path, "rb") as fh:
            data = fh.read()
    else:
        return _hash_large(walk, path, rel)
    sha = hashlib.sha256(data).hexdigest()
    if walk.store is not None and not walk.store.has(sha):
        walk.staged.append(_Staged(rel, sha, len(data), data=data))
    return sha


def _hash_large(walk: _Walk, path: str, rel: str) -> str:
    digest = hashlib.sha256()
    copy, staged = None, None
    if walk.store is not None:
        fd, name = tempfile.mkstemp(dir=walk.store.staging())
        copy, staged = os.fdopen(fd, "wb"), Path(name)
    size = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                if copy is not None:
                    copy.write(chunk)
    finally:
        if copy is not None:
            copy.close()
    sha = digest.hexdigest()
    if staged is not None:
        if walk.store is not None and not walk.store.has(sha):
            walk.staged.append(_Staged(rel, sha, size, path=staged))
        else:
            staged.unlink()
    return sha


def _commit(walk: _Walk, store: Store, thread: str) -> None:
    """Store the new content, within the total cap: other threads are pruned (least recently used first)
    to make room; what still does not fit is noted as not stored."""
    unique: dict[str, _Staged] = {}
    for item in walk.staged:
        unique.setdefault(item.sha, item)
    needed = sum(item.size for item in unique.values())
    # room for the manifest itself, written after the blobs (compressed; its notes may grow a little)
    manifest = len(zlib.compress(json.dumps(walk.files, separators=(",", ":")).encode(), 1))
    reserve = manifest + manifest // 4 + 1024
    keep = {e[SHA] for e in walk.files.values() if e[SHA]}
    fits = store.make_room(needed + reserve, thread, keep)
    room = store.max_total_bytes - store.usage() - reserve
    added = 0
    for sha, item in unique.items():
        if fits or item.size <= room - added:
            if item.data is not None:
                added += store.put_bytes(item.data)[1]
            elif item.path is not None:
                added += store.adopt(item.path, sha)
        else:
            if item.path is not None:
                item.path.unlink(missing_ok=True)
            for staged in walk.staged:
                if staged.sha == sha:
                    walk.files[staged.rel][NOTE] = over_total_cap(store.max_total_bytes / (1 << 20))
    for item in walk.staged:  # duplicates of what was adopted
        if item.path is not None and item.sha in unique and unique[item.sha] is not item:
            item.path.unlink(missing_ok=True)
    store.add_usage(added)


def same(a: list[Any] | None, b: list[Any] | None) -> bool:
    """Whether two entries hold the same content: by hash when both have one, else by size and mtime."""
    if a is None or b is None:
        return a is b
    if a[SHA] and b[SHA]:
        return bool(a[SHA] == b[SHA])
    return bool(a[SIZE] == b[SIZE] and a[MTIME] == b[MTIME])
