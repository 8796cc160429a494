"""What the sandbox's walls cost (issue 17): seccomp, the resource box, the filtering proxy, the git guard.

Per configuration, a fresh sandboxed IsolatedExecutor in a fresh working directory: cold start (the first
``print(1)``: bubblewrap, the box, the worker, its kernel), then the warm per-task time (median of N
``print(1)``; the git guard walks the folder after each task, so one configuration runs in a folder of
10,000 files in 1,000 folders). Configurations alternate within each round so drift hits all; the table
shows medians over rounds. Then one HTTP GET through the filtering proxy to a loopback server (the proxy's
test resolver pins ``bench.test`` to it), against the same GET from the host without a proxy.

    uv run python bench/walls.py [--rounds 3] [--runs 20]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from free_llm_agent.tools.isolated_executor import IsolatedExecutor
from free_llm_agent.tools.limits import Limits
from free_llm_agent.tools.netproxy import NetworkPolicy
from free_llm_agent.tools.sandbox import Sandbox, resolve
from free_llm_agent.tools.sandbox_session import Walls

CONFIGS = ("bubblewrap only", "+ seccomp", "+ resource box", "+ proxy", "all walls", "all walls, 10k-file folder")


def _walls(name: str, box: Sandbox) -> tuple[Sandbox, Walls]:
    bare = replace(box, no_userns=False, tmp_size=False)
    limits = Limits(1024, 256, 256)
    policy = NetworkPolicy("allowlist", ["bench.test"])
    return {
        "bubblewrap only": (bare, Walls(seccomp=False)),
        "+ seccomp": (bare, Walls(seccomp=True)),
        "+ resource box": (bare, Walls(seccomp=False, limits=limits)),
        "+ proxy": (bare, Walls(seccomp=False, policy=policy)),
        "all walls": (box, Walls(limits=limits, policy=policy)),
        "all walls, 10k-file folder": (box, Walls(limits=limits, policy=policy)),
    }[name]


def _populate(folder: Path) -> None:
    for d in range(1000):
        sub = folder / f"d{d:04d}"
        sub.mkdir()
        for f in range(10):
            (sub / f"f{f}.txt").write_text("x")


def _timed(ex: IsolatedExecutor, code: str) -> tuple[float, Any]:
    start = time.perf_counter()
    result = ex.run("python", code)
    return time.perf_counter() - start, result


def _round(name: str, box: Sandbox, tmp: Path, runs: int, url: str) -> dict[str, float]:
    sandbox, walls = _walls(name, box)
    work = Path(tempfile.mkdtemp(prefix="ws-", dir=tmp))
    if "10k" in name:
        _populate(work)
    ex = IsolatedExecutor(work, timeout_s=60, sandbox=sandbox, walls=walls)
    try:
        cold, result = _timed(ex, "print(1)")
        if not result.ok:
            raise RuntimeError(f"{name}: {result.error}\n{result.output}")
        warm = statistics.median(_timed(ex, "print(1)")[0] for _ in range(runs))
        out: dict[str, float] = {"cold": cold, "warm": warm}
        if walls.policy is not None and "10k" not in name:
            fetch = f"import urllib.request, time\nt = time.perf_counter()\nurllib.request.urlopen({url!r}).read()\n" \
                    "print(time.perf_counter() - t)"
            samples = []
            for _ in range(runs):
                _, r = _timed(ex, fetch)
                samples.append(float(r.output.strip().splitlines()[0]))
            out["request"] = statistics.median(samples)
        return out
    finally:
        ex.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.3f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    os.environ["FREE_AGENT_TEST_RESOLVE"] = json.dumps({"bench.test": "127.0.0.1"})
    direct = []
    for _ in range(args.runs):
        t = time.perf_counter()
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"http://127.0.0.1:{port}/").read()
        direct.append(time.perf_counter() - t)
    with tempfile.TemporaryDirectory(prefix="fla-walls-bench-", dir="/var/tmp") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "home").mkdir()
        box = resolve("required", tmp / "home")
        print(f"{args.rounds} rounds, {args.runs} runs each; {box.describe()}", flush=True)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
        for i in range(args.rounds):
            for name in CONFIGS:
                results[name].append(_round(name, box, tmp, args.runs, f"http://bench.test:{port}/"))
            print(f"  round {i + 1}/{args.rounds} done", flush=True)
    server.shutdown()

    def med(name: str, key: str) -> float | None:
        values = [r[key] for r in results[name] if key in r]
        return statistics.median(values) if values else None

    print(f"\n| walls | cold start | warm task, median of {args.runs} | HTTP GET via the proxy |")
    print("|---|---|---|---|")
    for name in CONFIGS:
        print(f"| {name} | {_fmt(med(name, 'cold'))} | {_fmt(med(name, 'warm'))} | {_fmt(med(name, 'request'))} |")
    print(f"| (host, no sandbox, no proxy) | | | {_fmt(statistics.median(direct))} |")


if __name__ == "__main__":
    main()
