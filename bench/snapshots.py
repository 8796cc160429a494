"""What a snapshot of the working directory costs (issue 20): time and disk, for folders of N files.

For each size a fresh folder (in /var/tmp, a real disk, not a RAM /tmp) of N files is made: source-like
text files of 0.5-4 KB in folders of 100, plus a ``.gitignore`` of eight rules and an ignored ``build/``
of N/20 files. Then, through the same ``Snapshots.before`` that ``run_task`` calls (its lock, scan,
manifest and thread index):

* first: the first snapshot of the folder (every file read, hashed and copied into the store);
* unchanged: the median of ``--repeat`` snapshots of the folder as it is (the budget: ≤ 0.5 s for
  10,000 files) — no file is read, one ``stat`` each;
* one changed: one file rewritten, then a snapshot (that file alone is read);
* disk: the store after the first snapshot (blobs + compressed manifest), and what each further
  unchanged snapshot adds (one manifest and the index: the same manifest is stored once).

    uv run python bench/snapshots.py [--sizes 1000,10000] [--repeat 5] [--tiny]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import loaded_note, markdown_table

from free_llm_agent.snapshots import open_snapshots

BUDGET_S = 0.5  # an unchanged 10,000-file folder
GITIGNORE = "build/\n*.log\n*.pyc\n__pycache__/\n.venv/\nnode_modules/\ndist/\n*.tmp\n"


def make_folder(root: Path, files: int, seed: int = 1) -> int:
    """``files`` text files (plus an ignored build/); their total size in bytes."""
    rng = random.Random(seed)
    words = [f"word{i}" for i in range(500)]
    total = 0
    (root / ".gitignore").write_text(GITIGNORE)
    for i in range(files):
        folder = root / f"pkg{i // 100:03}"
        folder.mkdir(parents=True, exist_ok=True)
        text = " ".join(rng.choice(words) for _ in range(rng.randint(60, 500))) + "\n"
        (folder / f"mod{i:05}.py").write_text(text)
        total += len(text)
    (root / "build").mkdir()
    for i in range(max(1, files // 20)):
        (root / "build" / f"out{i}.o").write_bytes(b"\0" * 512)
    return total


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(files: int, repeat: int, base: Path) -> list[object]:
    work, home = base / f"work{files}", base / f"home{files}"
    work.mkdir()
    home.mkdir()
    size = make_folder(work, files)
    snaps = open_snapshots(home)
    started = time.perf_counter()
    snaps.before("bench", 1, "first", work)
    first = time.perf_counter() - started
    disk_first = du(home / "snapshots")
    unchanged = []
    for n in range(repeat):
        started = time.perf_counter()
        snaps.before("bench", 2 + n, f"same{n}", work)
        unchanged.append(time.perf_counter() - started)
    disk_more = (du(home / "snapshots") - disk_first) / repeat
    target = work / "pkg000" / "mod00000.py"
    target.write_text(target.read_text() + "one more line\n")
    started = time.perf_counter()
    snaps.before("bench", 99, "changed", work)
    changed = time.perf_counter() - started
    median = statistics.median(unchanged)
    verdict = "ok" if files < 10_000 or median <= BUDGET_S else f"OVER {BUDGET_S} s"
    return [f"{files:,}", f"{size / 1e6:.1f} MB", f"{first:.2f} s", f"{median * 1000:.0f} ms ({verdict})",
            f"{changed * 1000:.0f} ms", f"{disk_first / 1e6:.1f} MB", f"{disk_more / 1e3:.1f} KB"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="folder sizes in files, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="unchanged snapshots per size (the median is shown)")
    parser.add_argument("--tiny", action="store_true", help="one folder of 200 files (the smoke test)")
    args = parser.parse_args()
    sizes = [200] if args.tiny else [int(s) for s in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(dir="/var/tmp" if os.path.isdir("/var/tmp") else None, prefix="fla-snap-bench-"))
    try:
        rows = [measure(n, 2 if args.tiny else args.repeat, base) for n in sizes]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(markdown_table(["files", "folder", "first snapshot", "unchanged (median)", "one file changed",
                          "store after the first", "each unchanged snapshot adds"], rows))
    print(f"\n{loaded_note()}")


if __name__ == "__main__":
    main()
