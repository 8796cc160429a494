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

    uv run python bench/resume.py [--runs 20] [--seed 1] [--tiny]
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
from dataclasses import dataclass
from pathlib import Path

from common import REPO, add_output_args, loaded_note, markdown_table, plt_figure, png_path, save

from tests.conftest import write_config
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider

TASKS = 5
PLAN = tuple((f"step {i}: record task {i}", f"open('tasks.log','a').write('task {i}\\n')\nprint('task {i}')")
             for i in range(1, TASKS + 1))
CLI = [sys.executable, str(REPO / "run_graph.py")]


@dataclass
class Crash:
    run: int
    kill_at: float
    status: str
    reexecuted: int
    repaid: int
    requests: int


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(args: list[str], cfg: Path, home: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "--config-dir", str(cfg), "--home", str(home), *args], cwd=REPO, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_default_sigint)


def finish(args: list[str], cfg: Path, home: Path, env: dict[str, str]) -> tuple[int, dict[str, object]]:
    proc = cli(args, cfg, home, env)
    out, err = proc.communicate(timeout=600)
    try:
        return proc.returncode, json.loads(out)
    except json.JSONDecodeError:
        return proc.returncode, {"status": f"exit {proc.returncode}: {err.strip().splitlines()[-1:]}"}


def one(run: int, kill_at: float | None, tmp: Path) -> tuple[Crash, float]:
    with FakeProvider("openai", responder=make_responder(PLAN)) as fake:
        base = tmp / f"run{run}"
        cfg, keys = write_config(base / "config", {"bench": {"kind": "openai_compatible", "base_url": fake.base_url,
                                                             "limits": {"requests_per_minute": 1000}}},
                                 optimization={"enable_caching": True, "max_batch_size": 3})
        env = {**os.environ, **keys, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        home, work = base / "home", base / "work"
        work.mkdir(parents=True)
        thread = f"crash{run}"
        run_args = ["run", "record five tasks", "--workdir", str(work), "--thread-id", thread, "--yes", "--json"]
        start = time.time()
        if kill_at is None:
            _, result = finish(run_args, cfg, home, env)
        else:
            proc = cli(run_args, cfg, home, env)
            try:
                proc.wait(timeout=kill_at)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            code, result = finish(["resume", thread, "--yes", "--json"], cfg, home, env)
            if code == 2:  # killed before the thread's first checkpoint: nothing to resume
                _, result = finish(run_args, cfg, home, env)
        elapsed = time.time() - start
        lines = (work / "tasks.log").read_text().splitlines() if (work / "tasks.log").exists() else []
        bodies = Counter(hashlib.sha256(json.dumps(r.json, sort_keys=True).encode()).hexdigest()
                         for r in fake.requests if r.method == "POST")
        crash = Crash(run, kill_at or 0.0, str(result.get("status")), reexecuted=len(lines) - len(set(lines)),
                      repaid=sum(n - 1 for n in bodies.values()), requests=sum(bodies.values()))
        return crash, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    add_output_args(parser)
    args = parser.parse_args()
    runs = 1 if args.tiny else args.runs
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="fla-resume-") as tmp:
        if args.tiny:  # no uncut run: one kill in the first seconds (the resume then does most of the work)
            base, duration = Crash(0, 0.0, "not run", 0, 0, TASKS), 3.0
        else:
            base, duration = one(0, None, Path(tmp))
            print(f"uncut run: {base.status}, {base.requests} requests, {duration:.1f} s", file=sys.stderr)
        crashes: list[Crash] = []
        for i in range(1, runs + 1):
            crash, _ = one(i, rng.uniform(0.2, duration), Path(tmp))
            crashes.append(crash)
            print(f"  run {i}: killed at {crash.kill_at:.1f} s -> {crash.status}, re-executed {crash.reexecuted}, "
                  f"repaid {crash.repaid}", file=sys.stderr)
    print(f"{runs} CLI runs of a {TASKS}-task goal killed with kill -9 at a random point of the uncut run "
          f"({duration:.1f} s, {base.requests} requests; {base.status}), then resumed")
    rows = [[c.run, f"{c.kill_at:.1f}", c.status, c.reexecuted, c.repaid, c.requests] for c in crashes]
    print(markdown_table(["run", "killed at s", "after resume", "re-executed tasks", "repaid requests",
                          "requests in all"], rows))
    done = sum(c.status == "completed" for c in crashes)
    print(f"\ncompleted {done}/{runs}; re-executed tasks {sum(c.reexecuted for c in crashes)} in all; "
          f"repaid requests {sum(c.repaid for c in crashes)} in all; {loaded_note()}")
    fig, (ax,) = plt_figure(7.5, 4.0)
    xs = [c.kill_at for c in crashes]
    ax.scatter(xs, [c.reexecuted for c in crashes], label="re-executed tasks", marker="o")
    ax.scatter(xs, [c.repaid + 0.08 for c in crashes], label="repaid requests (+0.08 to show both)", marker="x")
    ax.set_xlabel("kill -9 at (s into the run)")
    ax.set_ylabel("per run")
    ax.set_title(f"{runs} kill -9 + resume runs ({TASKS} tasks)")
    ax.legend()
    save(fig, png_path(args, "resume"))
    return 0 if done == runs else 1


if __name__ == "__main__":
    sys.exit(main())
