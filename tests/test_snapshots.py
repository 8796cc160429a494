"""The snapshot store on its own (issue 20): unchanged files are not read again, the total cap prunes the
threads used least recently (never the one writing) and lists what still does not fit as not stored,
nested .gitignore rules, the reflect prompt's evidence, and undo never leaving the working directory."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from free_llm_agent.config import ConfigError, load_config
from free_llm_agent.nodes import prompts
from free_llm_agent.snapshots import open_snapshots
from free_llm_agent.snapshots.scan import scan
from free_llm_agent.snapshots.store import NOTE, SHA
from free_llm_agent.snapshots.undo import UndoError, _inside, apply_undo, plan_undo

KB = 1024
CAP = int(0.2 * (1 << 20))


def _folder(root: Path, files: int, size: int = 100) -> Path:
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"f{i:04}.txt").write_bytes(os.urandom(size))
    return root


def test_an_unchanged_folder_is_not_read_again_and_a_changed_file_is(tmp_path: Path) -> None:
    snaps = open_snapshots(tmp_path / "home")
    work = _folder(tmp_path / "work", 50)
    first = scan(work, snaps.store, None)
    assert first["hashed"] == 50
    snaps.store.set_latest(str(work), snaps.store.put_manifest(first))
    again = scan(work, snaps.store, snaps.store.latest_of(str(work)))
    assert again["hashed"] == 0 and again["files"] == first["files"]
    (work / "f0001.txt").write_bytes(b"changed")
    third = scan(work, snaps.store, again)
    assert third["hashed"] == 1 and third["files"]["f0001.txt"][SHA] != first["files"]["f0001.txt"][SHA]


def test_the_total_cap_prunes_the_threads_used_least_recently_then_stores_no_more(tmp_path: Path) -> None:
    home = tmp_path / "home"
    snaps = open_snapshots(home, max_file_mb=0.1, max_total_mb=0.2)  # 0.2 MB in all
    for n, thread in enumerate(("old", "middle", "new")):
        work = _folder(tmp_path / thread, 8, 10 * KB)  # 80 KB of new content each
        snaps.before(thread, 1, f"k{n}", work)
        time.sleep(0.05)  # distinct index mtimes: "old" is the least recently used
        assert snaps.store.usage() <= CAP
    assert not snaps.events("old") and snaps.events("middle") and snaps.events("new")
    # One thread alone over the cap: it is never pruned for itself; what does not fit is listed, not stored.
    big = _folder(tmp_path / "big", 30, 10 * KB)
    snaps.before("big", 1, "kb", big)
    assert snaps.store.usage() <= CAP
    manifest = snaps.store.manifest(snaps.events("big")[0]["before"])
    notes = [e[NOTE] for e in manifest["files"].values()]
    assert "over snapshots.max_total_mb (0.2 MB)" in notes and None in notes
    staging = home / "snapshots" / "objects" / "staging"
    assert not staging.exists() or not list(staging.iterdir())  # no copy left behind


def test_nested_gitignore_rules_and_negations(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "pkg" / "data").mkdir(parents=True)
    (work / ".git").mkdir()
    (work / ".git" / "HEAD").write_text("ref: x\n")
    (work / ".gitignore").write_text("*.log\n!keep.log\n")
    (work / "pkg" / ".gitignore").write_text("data/\n")
    for rel in ("a.log", "keep.log", "pkg/b.txt", "pkg/data/c.txt", "pkg/d.log"):
        (work / rel).write_text(rel)
    files = scan(work, open_snapshots(tmp_path / "home").store)["files"]
    ignored = sorted(p for p, e in files.items() if e[NOTE])
    assert ignored == ["a.log", "pkg/d.log", "pkg/data/c.txt"]
    assert ".git/HEAD" not in files and "keep.log" in files  # the folder's own git history is left to git


def test_undo_never_touches_a_path_outside_the_working_directory(tmp_path: Path) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "sub").mkdir()
    (work / "sub" / "f.txt").write_text("mine\n")
    snaps = open_snapshots(tmp_path / "home")
    snaps.before("t", 1, "k", work)
    (work / "sub" / "f.txt").unlink()
    (work / "sub").rmdir()
    (work / "sub").symlink_to(outside)  # the task put a link to another folder where sub/ was
    snaps.after("t", "k", work)
    plan = plan_undo(snaps, "t", work)
    assert plan.delete == ["sub"] and plan.restore == ["sub/f.txt"]  # the link goes, then the file comes back
    (work / "link").symlink_to(outside)
    with pytest.raises(UndoError):
        _inside(work, "sub/f.txt")  # while sub/ is the link, a path through it is refused
    assert apply_undo(snaps, "t", plan) == []
    assert not list(outside.iterdir())
    assert not (work / "sub").is_symlink() and (work / "sub" / "f.txt").read_text() == "mine\n"
    for bad in ("../x", "/etc/passwd", "link/x"):
        with pytest.raises(UndoError):
            _inside(work, bad)


def test_the_judge_sees_the_files_each_task_changed() -> None:
    task = {"id": 1, "description": "write the report", "status": "done", "output": "ok",
            "changes": [{"path": "report.md", "change": "created", "bytes_before": None, "bytes_after": 1229,
                         "lines_added": 3, "lines_removed": 0, "not_stored": None}]}
    text = str(prompts.reflect("a report", [task])[1].content)
    assert "files changed: report.md created (1.2 KB)" in text
    assert "files changed: none" in str(prompts.reflect("g", [{**task, "changes": []}])[1].content)
    assert "files changed" not in str(prompts.reflect("g", [{k: v for k, v in task.items() if k != "changes"}])[1]
                                      .content)  # snapshots off: nothing said


@pytest.mark.parametrize(("section", "message"), [
    ("max_file_mb: 0", "snapshots.max_file_mb: Input should be greater than 0"),
    ("max_total_mb: lots", "snapshots.max_total_mb: Input should be a valid number"),
    ("max_file_mb: 100\n  max_total_mb: 10", "max_file_mb (100) is larger than max_total_mb (10)"),
    ("enabled: maybe", "snapshots.enabled: Input should be a valid boolean"),
])
def test_bad_snapshot_settings_are_named_with_their_fix(tmp_path: Path, section: str, message: str) -> None:
    config = tmp_path / "config"
    config.mkdir()
    repo = Path(__file__).resolve().parent.parent / "config"
    (config / "providers.yaml").write_text((repo / "providers.yaml").read_text())
    (config / "limits.yaml").write_text(f"snapshots:\n  {section}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert message in str(caught.value) and "limits.yaml" in str(caught.value)


def test_the_snapshot_bench_runs_at_its_tiny_size() -> None:
    import subprocess
    import sys

    bench = Path(__file__).resolve().parent.parent / "bench" / "snapshots.py"
    proc = subprocess.run([sys.executable, str(bench), "--tiny"], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "| 200 |" in proc.stdout and "unchanged (median)" in proc.stdout


def test_a_folder_and_files_whose_names_are_not_utf8_are_snapshot_and_listed_escaped(tmp_path: Path) -> None:
    snaps = open_snapshots(tmp_path / "home")
    work = tmp_path / os.fsdecode(b"caf\xe9")  # the working directory's own name is not UTF-8
    work.mkdir()
    (work / os.fsdecode(b"n\xe9w.txt")).write_text("old")
    snaps.before("t", 1, "k1", work)
    (work / os.fsdecode(b"n\xe9w.txt")).write_text("new")
    changes = snaps.after("t", "k1", work)
    assert changes is not None and [(c["path"], c["change"]) for c in changes] == [("n\\xe9w.txt", "modified")]
