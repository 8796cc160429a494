"""Undo: put the working directory back as it was before a task, from its snapshot.

:func:`plan_undo` compares the folder now with the snapshot taken before task N's first attempt (default:
the thread's first task) and says what it will restore and delete. It also compares the folder with the
state the agent left it in (the last task's "after", or the last undo): files that differ were changed
by someone else after the run, and are named (``undo`` refuses unless ``--force``). :func:`apply_undo`
then deletes what the tasks created, writes back what they changed or deleted (bytes, mode, mtime) and
records the undo in the thread's index. Every path is relative to the working directory and checked to
stay inside it (a folder replaced by a symbolic link is not followed): nothing outside is touched.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from free_llm_agent.snapshots.scan import same, scan
from free_llm_agent.snapshots.store import MODE, MTIME, NOTE, SHA, Manifest
from free_llm_agent.snapshots.tasks import Snapshots


class UndoError(ValueError):
    """Nothing to undo, or no such task: the message says what there is."""


@dataclass
class UndoPlan:
    workdir: Path
    task: int  # the folder goes back to before this task
    tasks: list[int]  # the tasks whose changes are taken back
    target: str  # the manifest restored
    restore: list[str] = field(default_factory=list)  # written back (changed or deleted by the tasks)
    delete: list[str] = field(default_factory=list)  # created by the tasks
    cannot: list[tuple[str, str]] = field(default_factory=list)  # (path, why): not stored
    changed_since: list[str] = field(default_factory=list)  # differ from what the run left: someone's edits
    rmdirs: list[str] = field(default_factory=list)  # folders the tasks created (removed when left empty)
    manifest: Manifest = field(default_factory=dict)


def plan_undo(snapshots: Snapshots, thread: str, workdir: Path, task: int | None = None) -> UndoPlan:
    events = snapshots.events(thread)
    attempts = [e for e in events if e.get("kind") == "task"]
    if not attempts:
        raise UndoError(f"thread {thread!r} has no snapshots: no task of it ran (or snapshots were off)")
    if attempts[-1].get("after") is None:  # cut short by a crash: what it did so far is its change list
        snapshots.after(thread, attempts[-1]["key"], workdir, interrupted=True)
        events = snapshots.events(thread)
    first = next((i for i, e in enumerate(events) if e.get("kind") == "task"
                  and (task is None or e["task"] == task)), None)
    if first is None:
        ran = sorted({int(e["task"]) for e in attempts})
        raise UndoError(f"task {task} of thread {thread!r} never ran; tasks that ran: "
                        f"{', '.join(map(str, ran))}")
    start = events[first]
    store = snapshots.store
    if not store.has(start["before"]):
        raise UndoError(f"the snapshot before task {start['task']} is gone (pruned by snapshots.max_total_mb)")
    tasks = list(dict.fromkeys(int(e["task"]) for e in events[first:] if e.get("kind") == "task"))
    last = events[-1]
    reference = store.manifest(last["after"] if last.get("kind") == "task" else last["state"])
    target = store.manifest(start["before"])
    current = scan(workdir, None, reference, skip=(*snapshots.skip, store.root), max_file=store.max_file_bytes)
    plan = UndoPlan(workdir, int(start["task"]), tasks, start["before"], manifest=target)
    now_files, was, left = current["files"], target["files"], reference["files"]
    for path in sorted(set(now_files) | set(left)):
        if not same(now_files.get(path), left.get(path)):
            plan.changed_since.append(path)
    for path in sorted(set(now_files) | set(was)):
        have, want = now_files.get(path), was.get(path)
        if want is None:
            plan.delete.append(path)
        elif have is not None and same(have, want) and have[MODE] == want[MODE]:
            continue
        elif want[NOTE] is not None or not want[SHA] or not store.has(want[SHA]):
            plan.cannot.append((path, f"not stored: {want[NOTE] or 'pruned'}"))
        else:
            plan.restore.append(path)
    plan.rmdirs = sorted(set(current["dirs"]) - set(target.get("dirs", [])), key=lambda p: -len(Path(p).parts))
    return plan


def _inside(root: Path, rel: str) -> Path:
    """``root/rel``, refused unless its folder really is inside ``root`` (no '..', no link out)."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise UndoError(f"{rel!r} is not a path inside the working directory")
    real_root = os.path.realpath(root)
    parent = os.path.realpath(os.path.join(real_root, *parts[:-1]))
    if parent != real_root and not parent.startswith(real_root + os.sep):
        raise UndoError(f"{rel}: its folder leads outside the working directory ({parent}); left alone")
    return Path(parent) / parts[-1]


def _write(snapshots: Snapshots, root: Path, rel: str, entry: list[Any]) -> None:
    parent = _inside(root, rel).parent
    for depth in range(1, len(Path(rel).parts)):  # create missing folders one by one, each checked
        folder = _inside(root, str(Path(*Path(rel).parts[:depth])))
        if not folder.is_dir():
            folder.mkdir()
    dest = _inside(root, rel)
    data = snapshots.store.read(entry[SHA])
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        dest.unlink()
    if stat.S_ISLNK(entry[MODE]):
        os.symlink(os.fsdecode(data), dest)
        return
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".undo-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, stat.S_IMODE(entry[MODE]))
        os.utime(tmp, ns=(entry[MTIME], entry[MTIME]))
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def apply_undo(snapshots: Snapshots, thread: str, plan: UndoPlan) -> list[str]:
    """Carry out ``plan``; the problems met (a path left alone, and why)."""
    problems: list[str] = []
    root = plan.workdir
    for rel in plan.delete:
        try:
            _inside(root, rel).unlink()
        except FileNotFoundError:
            pass
        except (OSError, UndoError) as exc:
            problems.append(f"{rel}: not deleted ({exc})")
    for rel in plan.rmdirs:  # deepest first; a folder holding what is not ours (ignored, skipped) stays
        with contextlib.suppress(OSError, UndoError):
            _inside(root, rel).rmdir()
    for rel in plan.restore:
        try:
            _write(snapshots, root, rel, plan.manifest["files"][rel])
        except (OSError, UndoError) as exc:
            problems.append(f"{rel}: not restored ({exc})")
    for rel in plan.manifest.get("dirs", []):  # empty folders the tasks deleted
        with contextlib.suppress(OSError, UndoError):
            folder = _inside(root, rel)
            if not folder.exists():
                folder.mkdir(parents=False)
    snapshots.record_undo(thread, plan.task, plan.tasks, plan.target)
    return problems
