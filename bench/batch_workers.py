"""Many goals against one quota: a ``batch`` on one machine, and ``worker``s of two machines on one database.

1. **batch** — ``batch FILE --workers W --wait --yes`` (the real CLI, real execution) against a loopback
   fake that refuses what goes over ``--rpm`` requests per sliding minute, as a free tier does. Goals have
   one task (3 requests each: plan, code, verdicts) and three priorities. Measured: wall time against the
   least the limit allows (the last of R requests can leave only after ceil(R/rpm) - 1 full minutes), the
   refusals (0 expected), the order goals finished in. Chart: requests served over time against the limit's
   envelope (at most rpm·(⌊t/60⌋+1) by time t), and each goal's completion, coloured by priority.
2. **machines** — two homes sharing one PostgreSQL database (a throw-away cluster): ``batch --enqueue``,
   then 2 workers per home (``--concurrency 2``); once eight goals run, one worker is killed with
   ``kill -9`` mid-goal. Measured: wall time, how long its goals took to start again elsewhere (default
   lease, 30 s), that every goal finished once, and the ledger's count against the fake's.

    uv run python bench/batch_workers.py [--tiny] [--goals 12 --workers 3 --rpm 12] [--skip-machines]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from common import REPO, add_output_args, loaded_note, markdown_table, plt_figure, png_path, save
from pg_server import open_server

from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.fakes.rate_limited import RateLimited
from tests.support.config import write_config

CLI = [sys.executable, str(REPO / "run_graph.py")]
ONE_TASK = (("write done.txt", "open('done.txt','w').write('ok')\nprint('wrote done.txt')"),)
BLOCKING = (
    ("step one", "open('runs.log','a').write('one\\n')"),
    ("step two", "open('runs.log','a').write('two\\n')"),
    ("step three", "import os, time\nopen('runs.log','a').write('three-start\\n')\nt = time.time()\n"
                   "while not os.path.exists('go') and time.time() - t < 300:\n    time.sleep(0.05)\n"
                   "open('runs.log','a').write('three\\n')"),
    ("step four", "open('runs.log','a').write('four\\n')"),
)


def _config(tmp: Path, base_url: str, limits: dict[str, int]) -> tuple[Path, dict[str, str]]:
    return write_config(tmp / "config", {"groq_llama": {"kind": "groq", "base_url": base_url, "limits": limits}},
                        optimization={"max_batch_size": 3})


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "NO_PROXY": "127.0.0.1,localhost", **extra}


def bench_batch(tmp: Path, goals: int, workers: int, rpm: int) -> dict[str, Any]:
    limited = RateLimited(make_responder(ONE_TASK), rpm=rpm)
    with FakeProvider("openai", responder=limited) as fake:
        cfg, env = _config(tmp, fake.base_url, {"requests_per_minute": rpm})
        home = tmp / "home"
        home.mkdir()
        lines = []
        for i in range(goals):
            folder = tmp / f"w{i:02d}"
            folder.mkdir()
            lines.append(json.dumps({"goal": f"goal {i:02d}", "workdir": str(folder), "priority": (1, 5, 9)[i % 3]}))
        batch = tmp / "goals.jsonl"
        batch.write_text("\n".join(lines) + "\n")
        started = time.time()
        proc = subprocess.run([*CLI, "--config-dir", str(cfg), "--home", str(home), "batch", str(batch),
                               "--workers", str(workers), "--wait", "--yes", "--json"],
                              capture_output=True, text=True, env=_env(env), timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"batch exited {proc.returncode}: {proc.stderr[-2000:]}")
        out = json.loads(proc.stdout)
        rerun = json.loads(subprocess.run([*CLI, "--config-dir", str(cfg), "--home", str(home), "batch", str(batch),
                                           "--yes", "--json"], capture_output=True, text=True, env=_env(env),
                                          timeout=300).stdout)
        sent = len(limited.served)
        return {"out": out, "started": started, "served": [t for t, _ in limited.served], "sent": sent,
                "refused": len(limited.refused), "minimum": limited.min_wall_s(sent), "rerun": rerun["requests"],
                "rerun_served": len(limited.served) - sent}


def chart(result: dict[str, Any], rpm: int, path: Path) -> None:
    fig, (ax,) = plt_figure(8.5, 4.8)
    t0 = result["started"]
    served = sorted(t - t0 for t in result["served"])
    ax.step(served, range(1, len(served) + 1), where="post", label="requests served", color="tab:blue")
    end = max(result["out"]["wall_seconds"], served[-1] if served else 0) + 5
    xs = [0.0]
    ys = [rpm]
    for k in range(1, math.floor(end / 60) + 1):
        xs += [60.0 * k, 60.0 * k]
        ys += [rpm * k, rpm * (k + 1)]
    xs.append(end)
    ys.append(ys[-1])
    ax.plot(xs, ys, color="tab:red", linestyle="--", label=f"most the limit allows ({rpm}/min, sliding window)")
    ax.axvline(result["minimum"], color="grey", linestyle=":", label=f"least wall time ({result['minimum']:.0f} s)")
    colours = {9: "tab:green", 5: "tab:orange", 1: "tab:purple"}
    done = sorted((datetime.fromisoformat(g["finished_at"]).timestamp() - t0, g["priority"])
                  for g in result["out"]["goals"] if g["finished_at"])
    ax2 = ax.twinx()
    for n, (t, prio) in enumerate(done, start=1):
        ax2.scatter([t], [n], color=colours.get(prio, "black"), s=28, zorder=3,
                    label=f"goal done, priority {prio}" if prio not in [p for _, p in done[: n - 1]] else None)
    ax2.set_ylabel("goals completed")
    ax2.set_ylim(0, len(done) + 1)
    ax.set_xlabel("seconds since the batch started")
    ax.set_ylabel("requests")
    out = result["out"]
    ax.set_title(f"batch of {len(out['goals'])} goals, {out['workers']} workers, {rpm} requests/min: "
                 f"{out['wall_seconds']:.0f} s (least {result['minimum']:.0f} s)")
    handles = [h for a in (ax, ax2) for h in a.get_legend_handles_labels()[0]]
    labels = [lab for a in (ax, ax2) for lab in a.get_legend_handles_labels()[1]]
    ax.legend(handles, labels, loc="upper left", fontsize=8)
    save(fig, path)


def _runs(folder: Path) -> list[str]:
    log = folder / "runs.log"
    return log.read_text().splitlines() if log.exists() else []


def bench_machines(tmp: Path, url: str, goals: int, lease: float) -> dict[str, Any]:
    import psutil
    import psycopg

    with FakeProvider("openai", responder=make_responder(BLOCKING)) as fake:
        cfg, env = _config(tmp, fake.base_url, {"requests_per_minute": 500, "requests_per_day": 5000})
        homes = [tmp / "machine-a", tmp / "machine-b"]
        folders = [tmp / f"g{i:02d}" for i in range(goals)]
        for p in [*homes, *folders]:
            p.mkdir()
        batch = tmp / "goals.jsonl"
        batch.write_text("".join(json.dumps({"goal": f"goal {i:02d}", "workdir": str(f)}) + "\n"
                                 for i, f in enumerate(folders)))
        base = [*CLI, "--config-dir", str(cfg), "--database-url", url]
        started = time.time()
        procs = []
        for n in range(4):
            out = (tmp / f"worker{n}.out").open("wb")
            procs.append(subprocess.Popen([*base, "--home", str(homes[n // 2]), "worker", "--json", "--concurrency",
                                           "2", "--idle-exit", "3", "--lease", str(lease)], stdout=out,
                                          stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=_env(env),
                                          start_new_session=True))
        subprocess.run([*base, "--home", str(homes[0]), "batch", str(batch), "--enqueue", "--yes"], env=_env(env),
                       check=True, capture_output=True, timeout=300)
        deadline = time.time() + 300
        while sum("three-start" in _runs(f) for f in folders) < min(8, goals) and time.time() < deadline:
            time.sleep(0.2)
        with psycopg.connect(url) as conn:
            holders = [str(h) for (h,) in conn.execute("SELECT holder FROM run_locks").fetchall()]
        victim = next(p for p in procs if any(h.startswith(f"pid {p.pid} ") for h in holders))
        tree = psutil.Process(victim.pid).children(recursive=True)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        psutil.wait_procs(tree, timeout=30)
        killed = time.time()
        for f in folders:
            (f / "go").write_text("go")
        for proc in procs:
            if proc is not victim:
                proc.wait(timeout=900)
        wall = time.time() - started
        events = [json.loads(line) for n in range(4) for line in (tmp / f"worker{n}.out").read_text().splitlines()
                  if line.startswith("{")]
        finished = [e for e in events if e["event"] == "finished"]
        restarted = [e for e in events if e["event"] == "started" and datetime.fromisoformat(e["time"]).timestamp()
                     > killed]
        victim_done = {e["thread_id"] for e in events if e["event"] == "started" and e["worker"].endswith(
            f"-{victim.pid}")}
        takeover = min((datetime.fromisoformat(e["time"]).timestamp() - killed for e in restarted
                        if e["thread_id"] in victim_done), default=float("nan"))
        usage = json.loads(subprocess.run([*base, "--home", str(homes[1]), "usage", "--json"], capture_output=True,
                                          text=True, env=_env(env), timeout=120).stdout)
        once = all([_runs(f).count(s) for s in ("one", "two", "three", "four")] == [1, 1, 1, 1] for f in folders)
        return {"goals": goals, "wall": wall, "takeover": takeover, "finished": len(finished),
                "distinct": len({e["thread_id"] for e in finished}), "requests": len(fake.requests),
                "ledger": usage["providers"]["groq_llama"]["requests_day"], "once": once, "lease": lease}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_output_args(parser)
    parser.add_argument("--goals", type=int, default=12)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rpm", type=int, default=12)
    parser.add_argument("--lease", type=float, default=30.0, help="the workers' lease (machines part)")
    parser.add_argument("--skip-machines", action="store_true")
    parser.add_argument("--pg-url", help="a server to create the database on (default: a throw-away cluster)")
    args = parser.parse_args()
    if args.tiny:
        args.goals, args.workers, args.rpm, args.skip_machines = 3, 2, 100, True
    with tempfile.TemporaryDirectory(prefix="fla-batch-", dir="/var/tmp") as tmp:
        (Path(tmp) / "batch").mkdir()
        result = bench_batch(Path(tmp) / "batch", args.goals, args.workers, args.rpm)
    out = result["out"]
    ratio = out["wall_seconds"] / result["minimum"] if result["minimum"] else float("nan")
    print(markdown_table(
        ["goals", "workers", "limit (requests/min)", "requests", "refused", "least wall time (s)", "wall time (s)",
         "ratio", "re-run requests"],
        [[len(out["goals"]), out["workers"], args.rpm, result["sent"], result["refused"], result["minimum"],
          out["wall_seconds"], ratio, result["rerun_served"]]]))
    order = [g["priority"] for g in sorted(out["goals"], key=lambda g: g["finished_at"] or "")]
    print(f"\npriorities in the order goals finished: {order}")
    chart(result, args.rpm, png_path(args, "batch_progress"))
    if not args.skip_machines:
        server = open_server(args.pg_url)
        if server is not None:
            try:
                with server.database("batch") as url, tempfile.TemporaryDirectory(prefix="fla-machines-",
                                                                                  dir="/var/tmp") as tmp:
                    m = bench_machines(Path(tmp), url, 10, args.lease)
            finally:
                server.stop()
            print()
            print(markdown_table(
                ["machines × workers", "goals", "wall time (s)", "lease (s)", "kill -9 → taken over (s)",
                 "finished (distinct)", "each task once", "requests received", "ledger count"],
                [["2 × 2 (concurrency 2)", m["goals"], m["wall"], m["lease"], m["takeover"],
                  f"{m['finished']} ({m['distinct']})", m["once"], m["requests"], m["ledger"]]]))
    print(f"\n{loaded_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
