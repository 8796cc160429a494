"""Crash and resume: CLI runs killed with kill -9 at random points, then resumed.

Each run is ``run_graph.py run GOAL --workdir W --thread-id T --yes --json`` (real CLI,
real sandboxed executor) against a loopback ``FakeProvider`` answering like a good model
(5 tasks, batches of 3, cache on). Every task's code appends a line to ``W/tasks.log``.
Run 0 goes uncut and gives the duration (``--tiny``: no run 0, one kill within 3 s); runs
1..N are killed (``os.killpg`` SIGKILL, the CLI and its executor) at a uniformly random
point of that duration, then
``run_graph.py resume T --yes --json`` finishes them (``run`` again if the kill came
before the thread existed). Counted per run:

* re-executed tasks: lines in tasks.log beyond one per task (a task killed while its code
  ran — after it started, before its result was checkpointed — runs again);
* repaid requests: requests the server answered more than once with the same body
  (an answer lost with the process, or asked again after resume).

``--machines 1,2`` measures each layout with the same random kill points (as fractions of
its own uncut run):

* 1: one machine, SQLite — one home, the ``run`` and the ``resume`` on it;
* 2: two machines, PostgreSQL — each run's ``run`` on machine A (home A, its own config
  dir), the ``resume`` after the kill on machine B (home B), both with
  ``FREE_AGENT_DATABASE_URL`` set to one fresh database (quota ledger, cache, checkpoints,
  run lock, task journal) and the same absolute ``--workdir``. The database is in a
  throw-away cluster this script starts (``bench/pg_server.py``) and removes at the end,
  or on ``--pg-url``; without PostgreSQL the layout is skipped with the reason.

    uv run python bench/resume.py [--runs 20] [--seed 1] [--machines 1,2] [--pg-url URL]
        [--workdir DIR] [--tiny]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import REPO, add_output_args, loaded_note, markdown_table, plt_figure, png_path, save
from pg_server import Server, open_server

from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.support.config import write_config

TASKS = 5
PLAN = tuple((f"step {i}: record task {i}", f"open('tasks.log','a').write('task {i}\\n')\nprint('task {i}')")
             for i in range(1, TASKS + 1))
CLI = [sys.executable, str(REPO / "run_graph.py")]
LAYOUTS = {1: "1 machine (SQLite)", 2: "2 machines (PostgreSQL)"}
DB_ENV = "FREE_AGENT_DATABASE_URL"


@dataclass
class Crash:
    run: int
    kill_at: float
    status: str
    reexecuted: int
    repaid: int
    requests: int
    finished_by: str = "resume"  # or "run" (killed before the thread's first checkpoint)


@dataclass
class Machine:
    """One machine: its own config dir and home, the environment its CLI processes get."""

    cfg: Path
    home: Path
    env: dict[str, str]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(args: list[str], m: Machine) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "--config-dir", str(m.cfg), "--home", str(m.home), *args], cwd=REPO, env=m.env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_default_sigint)


def finish(args: list[str], m: Machine) -> tuple[int, dict[str, object]]:
    proc = cli(args, m)
    out, err = proc.communicate(timeout=600)
    try:
        return proc.returncode, json.loads(out)
    except json.JSONDecodeError:
        return proc.returncode, {"status": f"exit {proc.returncode}: {err.strip().splitlines()[-1:]}"}


def _machines(base: Path, base_url: str, machines: int, db_url: str | None) -> tuple[Machine, Machine]:
    """Machine A (``run``) and machine B (``resume``): the same machine for 1, two homes on one database for 2."""
    out: list[Machine] = []
    for name in ("A", "B")[:machines]:
        suffix = name if machines > 1 else ""
        cfg, keys = write_config(base / f"config{suffix}", {"bench": {"kind": "openai_compatible", "base_url": base_url,
                                                                      "limits": {"requests_per_minute": 1000}}},
                                 optimization={"enable_caching": True, "max_batch_size": 3})
        env = {k: v for k, v in os.environ.items() if k != DB_ENV}
        env.update(keys, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        if db_url:
            env[DB_ENV] = db_url
        out.append(Machine(cfg, base / f"home{suffix}", env))
    return out[0], out[-1]


def one(run: int, kill_at: float | None, work: Path, machines: int = 1,
        db_url: str | None = None) -> tuple[Crash, float]:
    """One run in ``work`` (absolute; the run's own folder): uncut when ``kill_at`` is None."""
    with FakeProvider("openai", responder=make_responder(PLAN)) as fake:
        a, b = _machines(work.parent, fake.base_url, machines, db_url)
        work.mkdir(parents=True)
        thread = f"crash{run}"
        run_args = ["run", "record five tasks", "--workdir", str(work), "--thread-id", thread, "--yes", "--json"]
        start = time.time()
        finished_by = "resume"
        if kill_at is None:
            _, result = finish(run_args, a)
        else:
            proc = cli(run_args, a)
            try:
                proc.wait(timeout=kill_at)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            code, result = finish(["resume", thread, "--yes", "--json"], b)
            if code == 2:  # killed before the thread's first checkpoint: nothing to resume
                _, result = finish(run_args, b)
                finished_by = "run"
        elapsed = time.time() - start
        strays = [str(p) for p in work.parent.glob("home?/*.db")] if db_url else []
        if strays:  # two machines keep their state in PostgreSQL, none in the homes
            raise RuntimeError(f"the machines wrote SQLite files into their homes: {strays}")
        lines = (work / "tasks.log").read_text().splitlines() if (work / "tasks.log").exists() else []
        bodies = Counter(hashlib.sha256(json.dumps(r.json, sort_keys=True).encode()).hexdigest()
                         for r in fake.requests if r.method == "POST")
        crash = Crash(run, kill_at or 0.0, str(result.get("status")), reexecuted=len(lines) - len(set(lines)),
                      repaid=sum(n - 1 for n in bodies.values()), requests=sum(bodies.values()),
                      finished_by=finished_by)
        return crash, elapsed


@dataclass
class Layout:
    machines: int
    duration: float
    base: Crash
    crashes: list[Crash]

    @property
    def label(self) -> str:
        return LAYOUTS[self.machines]

    @property
    def done(self) -> int:
        return sum(c.status == "completed" for c in self.crashes)


@contextmanager
def fresh_db(server: Server | None) -> Iterator[str | None]:
    """A fresh database's URL per run (2 machines), None for SQLite."""
    if server is None:
        yield None
        return
    with server.database("resume_bench") as url:
        yield url


def measure(machines: int, fractions: list[float], root: Path, server: Server | None, tiny: bool) -> Layout:
    """Run 0 uncut (not with ``tiny``), then a kill at each fraction of its duration, on one layout."""
    folder = root / f"machines{machines}"
    if tiny:  # no uncut run: one kill in the first seconds (the resume then does most of the work)
        base, duration = Crash(0, 0.0, "not run", 0, 0, TASKS), 3.0
    else:
        with fresh_db(server) as url:
            base, duration = one(0, None, folder / "run0" / "work", machines, url)
        print(f"{LAYOUTS[machines]}: uncut run {base.status}, {base.requests} requests, {duration:.1f} s",
              file=sys.stderr)
    crashes: list[Crash] = []
    for i, frac in enumerate(fractions, start=1):
        with fresh_db(server) as url:
            crash, _ = one(i, 0.2 + (duration - 0.2) * frac, folder / f"run{i}" / "work", machines, url)
        crashes.append(crash)
        print(f"  {LAYOUTS[machines]} run {i}: killed at {crash.kill_at:.1f} s -> {crash.status}, "
              f"re-executed {crash.reexecuted}, repaid {crash.repaid}", file=sys.stderr)
    return Layout(machines, duration, base, crashes)


def _span(values: list[float]) -> str:
    return f"{min(values):.1f}–{max(values):.1f}" if values else "–"


def _where(crashes: list[Crash], key: str) -> str:
    hits = [c for c in crashes if getattr(c, key)]
    total = sum(getattr(c, key) for c in crashes)
    runs = ", ".join(f"run {c.run} at {c.kill_at:.1f} s" for c in hits[:4]) + (" …" if len(hits) > 4 else "")
    return f"{total}" + (f" ({runs})" if hits else "")


def summary(layouts: list[Layout]) -> str:
    """The counts of each layout side by side."""
    rows = [
        ["runs killed (at s)", *(f"{len(x.crashes)} ({_span([c.kill_at for c in x.crashes])})" for x in layouts)],
        ["uncut run", *(f"{x.duration:.1f} s, {x.base.requests} requests, {x.base.status}" for x in layouts)],
        ["finished by resume / by run again", *(f"{sum(c.finished_by == 'resume' for c in x.crashes)} / "
                                                f"{sum(c.finished_by == 'run' for c in x.crashes)}" for x in layouts)],
        ["completed after resume", *(f"{x.done}/{len(x.crashes)}" for x in layouts)],
        ["re-executed tasks in all", *(_where(x.crashes, "reexecuted") for x in layouts)],
        ["repaid requests in all", *(_where(x.crashes, "repaid") for x in layouts)],
        ["requests per run", *(_span([float(c.requests) for c in x.crashes]).replace(".0", "") for x in layouts)],
    ]
    return markdown_table(["", *(x.label for x in layouts)], rows)


def chart(layouts: list[Layout], path: Path) -> None:
    fig, axes = plt_figure(6.0 * len(layouts), 4.0, ncols=len(layouts))
    top = max([1, *(max(c.reexecuted, c.repaid) for x in layouts for c in x.crashes)]) + 0.5
    for ax, x in zip(axes, layouts, strict=True):
        xs = [c.kill_at for c in x.crashes]
        ax.scatter(xs, [c.reexecuted for c in x.crashes], label="re-executed tasks", marker="o")
        ax.scatter(xs, [c.repaid + 0.08 for c in x.crashes], label="repaid requests (+0.08 to show both)", marker="x")
        again = [c for c in x.crashes if c.finished_by == "run"]
        ax.scatter([c.kill_at for c in again], [-0.15] * len(again), marker="|", color="gray",
                   label="killed before the first checkpoint (run again)")
        ax.set_ylim(-0.3, top)
        ax.set_xlabel("kill -9 at (s into the run)")
        ax.set_ylabel("per run")
        ax.set_title(f"{x.label}: {len(x.crashes)} kill -9 + resume runs ({TASKS} tasks)", fontsize=10)
        ax.legend(fontsize=8)
    save(fig, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--machines", default="1", help="comma-separated: 1 (SQLite, one home), 2 (PostgreSQL, "
                                                        "run on home A, resume on home B)")
    parser.add_argument("--pg-url", help="a PostgreSQL server to create the databases on (default: start a cluster)")
    parser.add_argument("--workdir", type=Path,
                        help="folder (made absolute) for the runs' working dirs and homes (default: temp)")
    add_output_args(parser)
    args = parser.parse_args()
    try:
        wanted = [int(m) for m in args.machines.split(",") if m]
    except ValueError:
        wanted = [0]
    if not wanted or set(wanted) - set(LAYOUTS):
        parser.error(f"--machines takes a list of {', '.join(map(str, LAYOUTS))}")
    runs = 1 if args.tiny else args.runs
    rng = random.Random(args.seed)
    fractions = [rng.random() for _ in range(runs)]  # the same kill points (as a share of the uncut run) per layout
    server: Server | None = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops its cluster (finally)
    if 2 in wanted:
        server = open_server(args.pg_url)
        if server is None:
            wanted.remove(2)
    layouts: list[Layout] = []
    try:
        with tempfile.TemporaryDirectory(prefix="fla-resume-", dir=args.workdir) as tmp:
            root = Path(tmp).resolve()
            for machines in wanted:
                layouts.append(measure(machines, fractions, root, server if machines == 2 else None, args.tiny))
    finally:
        if server is not None:
            server.stop()
    if not layouts:
        return 0
    for x in layouts:
        print(f"{x.label}: {runs} CLI runs of a {TASKS}-task goal killed with kill -9 at a random point of the uncut "
              f"run ({x.duration:.1f} s, {x.base.requests} requests; {x.base.status}), then resumed"
              + (" on machine B" if x.machines == 2 else ""))
        rows = [[c.run, f"{c.kill_at:.1f}", c.finished_by, c.status, c.reexecuted, c.repaid, c.requests]
                for c in x.crashes]
        print(markdown_table(["run", "killed at s", "finished by", "after resume", "re-executed tasks",
                              "repaid requests", "requests in all"], rows))
        print(f"\ncompleted {x.done}/{runs}; re-executed tasks {sum(c.reexecuted for c in x.crashes)} in all; "
              f"repaid requests {sum(c.repaid for c in x.crashes)} in all\n")
    if len(layouts) > 1:
        print(f"{summary(layouts)}\n")
    print(loaded_note())
    chart(layouts, png_path(args, "resume"))
    return 0 if all(x.done == runs for x in layouts) else 1


if __name__ == "__main__":
    sys.exit(main())
