"""Served requests under server-enforced quotas: ours vs LiteLLM Router vs LangChain, same run.

Three loopback providers enforce their own limits (``bench/limited_server.py``: 429 +
retry-after once over). Every system gets the same servers (fresh per system), the same
limits, the same prompts and N worker *processes* started at the same instant; each
worker sends its share of the prompts, one call each, until the deadline:

* ours: ``QuotaAwareChatModel``, one home shared by the workers (limits in limits.yaml,
  ``max_wait_seconds: 60``), state in SQLite;
* ours-pg: the same, as 2 machines (two homes and config dirs, half the workers each) whose
  state (quota ledger, cooldowns, cache, usage) is one fresh PostgreSQL database
  (``FREE_AGENT_DATABASE_URL``), in a throw-away cluster this script starts
  (``bench/pg_server.py``) and removes at the end, or on ``--pg-url``; skipped with the
  reason where PostgreSQL cannot be had;
* LiteLLM Router: one deployment per provider with its ``rpm``, usage-based-routing-v2,
  ``enable_pre_call_checks=True``, no Redis (``bench/peers/litellm_quota.py``);
* LangChain: ``ChatOpenAI(max_retries=0, rate_limiter=InMemoryRateLimiter(rpm/60))``
  ``.with_fallbacks([...])`` (``bench/peers/langchain_quota.py``).

Peers run in their own venv (``bench/peers.py``), built on first use. Scenarios:

* per-minute: 20/30/10 RPM, 150 prompts, 120 s; each worker sends its own share;
* per-day: 40/30/15 per day, 120 prompts, 60 s; each worker sends its own share;
* shared-queue: the per-minute limits, 150 prompts, 120 s, but the servers take ``--think``
  seconds (0.3) to answer and the workers take prompts from one queue as they come free
  (a worker waiting for quota strands no share), as separate agent runs feeding on one
  backlog would.

Columns: served in the window (and the most the servers allow), 429s the servers sent,
calls that raised to the caller, prompts not sent by the deadline, wall time.

    uv run python bench/quota_throughput.py [--scenario per-minute,per-day,shared-queue|all]
        [--systems ours,litellm,langchain] [--prompts 150] [--seconds 120] [--workers 4]
        [--think 0.3] [--code DIR] [--pg-url URL] [--tiny]

``--tiny`` runs ours only (a printed note says so) unless ``FLA_BENCH_PEERS=1`` is set.
``--code DIR`` imports ``providers``/``config`` for ours from DIR (another version, e.g.
``git archive main providers config | tar -x -C /tmp/main-src``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import REPO, add_output_args, loaded_note, markdown_table, plt_figure, png_path, save
from limited_server import Limit, LimitedProvider, ideal_served
from peers import PEERS_DIR, ensure_peer_venv, peer_env
from pg_server import Server, open_server

from tests.support.config import write_config

BENCH = Path(__file__).resolve().parent
SYSTEMS = {
    "ours": "ours (QuotaAwareChatModel)",
    "ours-pg": "ours, 2 machines (homes) sharing one PostgreSQL",
    "litellm": "LiteLLM Router (usage-based-v2, pre-call checks)",
    "litellm-shuffle": "LiteLLM Router (simple-shuffle, pre-call checks)",
    "langchain": "LangChain with_fallbacks + InMemoryRateLimiter",
}


SHORT = {"ours": "ours", "ours-pg": "ours, 2 machines\nPostgreSQL",
         "litellm": "LiteLLM\nusage-v2", "litellm-shuffle": "LiteLLM\nshuffle",
         "langchain": "LangChain\nfallbacks"}


SCENARIOS = ("per-minute", "per-day", "shared-queue")
DB_ENV = "FREE_AGENT_DATABASE_URL"


@dataclass
class Scenario:
    name: str
    limits: list[Limit]
    prompts: int
    seconds: float
    think: float = 0.0  # seconds a server takes to answer
    shared_queue: bool = False  # workers take prompts from one queue (else each sends its own share)


@dataclass
class Outcome:
    scenario: str
    system: str
    served: int
    limit: int
    refused: int
    failed: int
    not_sent: int
    wall_s: float


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    if args.tiny:
        rpm = [Limit("a", rpm=2), Limit("b", rpm=3), Limit("c", rpm=1)]
        minute = Scenario("per-minute", rpm, 10, 3.0)
        day = Scenario("per-day", [Limit("a", rpd=2), Limit("b", rpd=2), Limit("c", rpd=1)], 8, 3.0)
        queue = Scenario("shared-queue", rpm, 10, 3.0, think=min(args.think, 0.05), shared_queue=True)
    else:
        rpm = [Limit("a", rpm=20), Limit("b", rpm=30), Limit("c", rpm=10)]
        minute = Scenario("per-minute", rpm, args.prompts or 150, args.seconds or 120.0)
        day = Scenario("per-day", [Limit("a", rpd=40), Limit("b", rpd=30), Limit("c", rpd=15)],
                       args.prompts or 120, args.seconds or 60.0)
        queue = Scenario("shared-queue", rpm, args.prompts or 150, args.seconds or 120.0, think=args.think,
                         shared_queue=True)
    wanted = SCENARIOS if args.scenario == "all" else args.scenario.split(",")
    return [s for s in (minute, day, queue) if s.name in wanted]


def _command(system: str, spec: Path) -> list[str]:
    if system.startswith("ours"):
        return [sys.executable, str(BENCH / "quota_ours_worker.py"), str(spec)]
    script = "litellm_quota.py" if system.startswith("litellm") else "langchain_quota.py"
    return [str(ensure_peer_venv()), str(PEERS_DIR / script), str(spec)]


def run_one(sc: Scenario, system: str, workers: int, tmp: Path, code: Path | None = None,
            db_url: str | None = None) -> Outcome:
    """One system on fresh servers; ``db_url`` (ours-pg): the workers are 2 machines sharing that database."""
    servers = [LimitedProvider(lim, think=sc.think) for lim in sc.limits]
    for s in servers:
        s.fake.start()
    try:
        run_dir = tmp / f"{sc.name}-{system}"
        run_dir.mkdir()
        providers = [{"name": s.limit.name, "base_url": s.base_url, "model": f"{s.limit.name}-model",
                      "rpm": s.limit.rpm, "rpd": s.limit.rpd} for s in servers]
        env = {k: v for k, v in os.environ.items() if k != DB_ENV}
        env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        extra: dict[str, object] = {}
        machines: list[dict[str, object]] = [{}]
        if system.startswith("ours"):
            cfg = {s.limit.name: {"kind": "openai_compatible", "base_url": s.base_url, "model": f"{s.limit.name}-model",
                                  "limits": {k: v for k, v in (("requests_per_minute", s.limit.rpm),
                                                               ("requests_per_day", s.limit.rpd)) if v}}
                   for s in servers}
            names = ("A", "B") if db_url else ("",)
            machines = []
            for name in names:  # each machine its own config dir and home
                config_dir, keys = write_config(run_dir / f"config{name}", cfg, fallback={"max_wait_seconds": 60})
                env.update(keys)
                machines.append({"config_dir": str(config_dir), "home": str(run_dir / f"home{name}")})
            if db_url:
                env[DB_ENV] = db_url
            extra = {"code": str(code.resolve())} if code else {}
        else:
            env = {**peer_env()}
            if system == "litellm-shuffle":
                extra = {"litellm_strategy": "simple-shuffle"}
        prompts = [f"prompt {i}: say something about the number {i}" for i in range(sc.prompts)]
        go = run_dir / "go"
        procs: list[subprocess.Popen[bytes]] = []
        outs: list[Path] = []
        for w in range(workers):
            share = {"prompts": prompts, "queue": str(run_dir / "claimed")} if sc.shared_queue else \
                {"prompts": prompts[w::workers]}
            spec = {"providers": providers, **share, "ready": str(run_dir / f"ready{w}"), "go": str(go),
                    "out": str(run_dir / f"out{w}.jsonl"), **extra, **machines[w * len(machines) // workers]}
            spec_path = run_dir / f"spec{w}.json"
            spec_path.write_text(json.dumps(spec))
            outs.append(run_dir / f"out{w}.jsonl")
            procs.append(subprocess.Popen(_command(system, spec_path), cwd=REPO, env=env, start_new_session=True,
                                          stdout=subprocess.DEVNULL, stderr=(run_dir / f"err{w}.log").open("wb")))
        limit_t = time.time() + 300
        while not all((run_dir / f"ready{w}").exists() for w in range(workers)):
            if time.time() > limit_t or any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError(f"{system} workers did not start; see {run_dir}/err*.log")
            time.sleep(0.05)
        t0 = time.time()
        deadline = t0 + sc.seconds
        (run_dir / "go.tmp").write_text(json.dumps({"deadline": deadline}))
        (run_dir / "go.tmp").replace(go)
        while any(p.poll() is None for p in procs) and time.time() < deadline + 1.0:
            time.sleep(0.05)
        wall = time.time() - t0
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        strays = [str(p) for p in run_dir.glob("home?/*.db")] if db_url else []
        if strays:  # ours-pg must keep its state in PostgreSQL, none in the homes
            raise RuntimeError(f"ours-pg wrote SQLite files into its homes: {strays}")
        calls = [json.loads(line) for out in outs if out.exists() for line in out.read_text().splitlines() if line]
        in_window = [c for c in calls if c["t"] <= deadline]
        counts = [s.count(t0, deadline) for s in servers]
        return Outcome(sc.name, system, served=sum(c[0] for c in counts),
                       limit=ideal_served(sc.limits, sc.seconds, sc.prompts), refused=sum(c[1] for c in counts),
                       failed=sum(not c["ok"] for c in in_window), not_sent=sc.prompts - len(in_window),
                       wall_s=min(wall, sc.seconds))
    finally:
        for s in servers:
            s.fake.stop()


def chart(results: list[Outcome], path: Path) -> None:
    names = sorted({r.scenario for r in results}, key=SCENARIOS.index)
    fig, axes = plt_figure(6.5 * len(names), 4.8, ncols=len(names))
    for ax, name in zip(axes, names, strict=True):
        rows = [r for r in results if r.scenario == name]
        xs = range(len(rows))
        width = 0.27
        ax.bar([x - width for x in xs], [r.served for r in rows], width, label="served", color="tab:green")
        ax.bar(list(xs), [r.refused for r in rows], width, label="refused (429)", color="tab:orange")
        ax.bar([x + width for x in xs], [r.failed for r in rows], width, label="failed calls", color="tab:red")
        ax.axhline(rows[0].limit, color="black", linestyle="--", linewidth=1, label=f"most servable ({rows[0].limit})")
        ax.set_xticks(list(xs), [SHORT[r.system] for r in rows])
        ax.set_title(f"{name} limits")
        ax.set_ylim(0, max(max(r.served, r.refused, r.failed) for r in rows) * 1.35 + 1)
        ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.suptitle("Requests under server-enforced quotas (same servers, limits, prompts, workers)")
    save(fig, path)


def _run(sc: Scenario, system: str, workers: int, tmp: Path, code: Path | None, server: Server | None) -> Outcome:
    if system != "ours-pg":
        return run_one(sc, system, workers, tmp, code)
    assert server is not None
    with server.database("quota_tp") as url:  # a fresh database per run, as each system gets fresh servers
        return run_one(sc, system, workers, tmp, code, db_url=url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--prompts", type=int, default=0, help="prompts per scenario (default 150 / 120)")
    parser.add_argument("--seconds", type=float, default=0.0, help="window per run (default 120 / 60)")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default 4; tiny 2)")
    parser.add_argument("--scenario", default="all", help=f"comma-separated, of {', '.join(SCENARIOS)}; or all")
    parser.add_argument("--think", type=float, default=0.3, help="seconds a server takes to answer (shared-queue)")
    parser.add_argument("--code", type=Path, help="import providers/config for ours from this folder instead")
    parser.add_argument("--systems", default="", help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--pg-url", help="ours-pg: a PostgreSQL server to create the databases on (default: start a "
                                         "cluster)")
    add_output_args(parser)
    args = parser.parse_args()
    workers = args.workers or (2 if args.tiny else 4)
    systems = [s for s in args.systems.split(",") if s] or ["ours", "litellm", "langchain"]
    if args.tiny and not args.systems and os.environ.get("FLA_BENCH_PEERS") != "1":
        systems = ["ours"]
        print("note: --tiny runs ours only; set FLA_BENCH_PEERS=1 to build the peers' venv and run them too\n")
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}")
    if args.scenario != "all" and set(args.scenario.split(",")) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(set(args.scenario.split(',')) - set(SCENARIOS))}")
    server: Server | None = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops its cluster (finally)
    if "ours-pg" in systems:
        server = open_server(args.pg_url)
        if server is None:
            systems.remove("ours-pg")
    results: list[Outcome] = []
    try:
        with tempfile.TemporaryDirectory(prefix="fla-quota-") as tmp:
            for sc in scenarios(args):
                for system in systems:
                    r = _run(sc, system, workers, Path(tmp), args.code, server)
                    results.append(r)
                    print(f"  {sc.name:<12} {system:<16} served {r.served}/{r.limit}, refused {r.refused}, "
                          f"failed {r.failed}, not sent {r.not_sent}, {r.wall_s:.1f} s", file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
    if not results:
        return 0
    thinks = [f"; {sc.name}: answers take {sc.think:g} s, one queue of prompts" for sc in scenarios(args) if sc.think]
    pg = f"; ours-pg: {workers - workers // 2} + {workers // 2} on two homes" if "ours-pg" in systems else ""
    print(f"{workers} worker processes per system{pg}; limits enforced by the loopback servers{''.join(thinks)}")
    rows = [[r.scenario, SYSTEMS[r.system], f"{r.served}/{r.limit}", r.refused, r.failed, r.not_sent,
             f"{r.wall_s:.1f}"] for r in results]
    print(markdown_table(["scenario", "system", "served / most servable", "refused (429 sent)", "failed calls",
                          "not sent by the deadline", "wall s"], rows))
    print(f"\n{loaded_note()}")
    chart(results, png_path(args, "quota_throughput"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
