"""How long the CLI takes, end to end, when the model answers instantly.

Run: ``uv run python bench/cli_latency.py [--rounds 3] [--code DIR --label NAME …] [--plot docs/cli_latency.png]``

A loopback fake provider (``tests/fakes``) answers every request at once, as a good model would
(plan, code for all tasks in one batch, verdicts); caching is off, so every run asks. Measured, as
the median of ``--rounds`` (each in a fresh process, a fresh working directory, the same home):

* ``--help``: the CLI's own start-up (imports, argument parsing);
* start → first request: from starting ``run … --yes --json`` until the provider gets the plan request;
* a whole ``run GOAL --yes --json`` of 1, 3 and 5 tasks (one batch: ``max_batch_size: 5``), real
  executor and sandbox as configured (``execution.sandbox: auto``);
* the cost of each extra task ((5 tasks − 1 task) / 4) and the 3-task run against ``--help``;
* the sandboxed executor on its own (no prewarm): its first Python task, warm tasks (median of 10), close.

Bytecode: ``PYTHONDONTWRITEBYTECODE`` is removed from the children's environment, what the sandboxed
executor imports is compiled first (``tools.bytecode``: the CLI does it once in the background, as it cannot
be done in the sandbox) and one unmeasured run comes first, so every measured process reads cached bytecode
(as an installed CLI does).
``--code DIR`` (repeatable, each with a ``--label``) runs the CLI of other checkouts (e.g. an export of an
earlier commit: ``git archive COMMIT | tar -x -C DIR``) with this environment; their rounds alternate, so a
busy machine weighs on each alike, and the table gets a column per checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from tests.fakes.agent_responder import DEFAULT_PLAN, make_responder  # noqa: E402
from tests.fakes.provider_server import FakeProvider, Reply, Request  # noqa: E402

KEY_VAR = "BENCH_FAKE_KEY"


class Clock:
    """Wraps a responder; remembers when the first request of the current run arrived."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.responder = make_responder(DEFAULT_PLAN)
        self._lock = threading.Lock()

    def plan(self, tasks: int) -> None:
        self.responder = make_responder(DEFAULT_PLAN[:tasks])
        self.first = None

    def __call__(self, req: Request) -> Reply:
        with self._lock:
            if self.first is None:
                self.first = time.monotonic()
        return self.responder(req)


def write_config(directory: Path, base_url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    providers = {"providers": {"groq_llama": {"kind": "groq", "model": "fake", "base_url": base_url,
                                              "api_key_env": KEY_VAR, "timeout_s": 10}},
                 "routing": {"priority": ["groq_llama"], "task_types": {}}}
    limits = {"rate_limits": {}, "optimization": {"enable_caching": False, "max_batch_size": 5},
              "fallback": {"max_wait_seconds": 0}, "execution": {"sandbox": "auto"}}
    (directory / "providers.yaml").write_text(yaml.safe_dump(providers), encoding="utf-8")
    (directory / "limits.yaml").write_text(yaml.safe_dump(limits), encoding="utf-8")
    return directory


class Bench:
    def __init__(self, code: Path, tmp: Path) -> None:
        self.clock = Clock()
        self.fake = FakeProvider("openai", responder=self.clock).start()
        self.config = write_config(tmp / "config", self.fake.base_url)
        self.home = tmp / "home"
        self.tmp = tmp
        self.cli = [sys.executable, str(code / "run_graph.py")]
        self.cwd = code
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env[KEY_VAR] = "bench-key"
        self.env["NO_PROXY"] = self.env["no_proxy"] = "127.0.0.1,localhost"
        self.runs = 0

    def close(self) -> None:
        self.fake.stop()

    def help(self) -> float:
        start = time.monotonic()
        subprocess.run([*self.cli, "--help"], check=True, capture_output=True, cwd=self.cwd, env=self.env)
        return time.monotonic() - start

    def run(self, tasks: int) -> tuple[float, float]:
        """(seconds to the first request, seconds for the whole run) of a ``tasks``-task goal."""
        self.clock.plan(tasks)
        self.runs += 1
        workdir = self.tmp / f"work{self.runs}"
        workdir.mkdir()
        argv = [*self.cli, "--config-dir", str(self.config), "--home", str(self.home), "run",
                f"bench goal {self.runs}", "--workdir", str(workdir), "--yes", "--json"]
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=self.cwd, env=self.env,
                              stdin=subprocess.DEVNULL, timeout=300)
        total = time.monotonic() - start
        if proc.returncode != 0 or '"completed"' not in proc.stdout:
            raise RuntimeError(f"the {tasks}-task run did not complete ({proc.returncode}):\n{proc.stderr[-2000:]}")
        assert self.clock.first is not None
        return self.clock.first - start, total


EXECUTOR_PROBE = """
import json, statistics, tempfile, time
from pathlib import Path
from free_llm_agent.tools.isolated_executor import IsolatedExecutor
from free_llm_agent.tools.sandbox import resolve
ex = IsolatedExecutor(Path(tempfile.mkdtemp()), sandbox=resolve("auto", Path(tempfile.mkdtemp())))
start = time.monotonic()
assert ex.run("python", "print(1)").ok
cold = time.monotonic() - start
assert ex.run("shell", "echo 1").ok
def timed(language, code):
    start = time.monotonic()
    assert ex.run(language, code).ok
    return time.monotonic() - start
py = statistics.median(timed("python", "print(1)") for _ in range(10))
sh = statistics.median(timed("shell", "echo 1") for _ in range(10))
start = time.monotonic()
ex.close()
print(json.dumps({"exec_cold": cold, "exec_python": py, "exec_shell": sh, "exec_close": time.monotonic() - start}))
"""


def executor_numbers(bench: Bench) -> dict[str, float]:
    """The sandboxed executor on its own: first Python task of a fresh one, warm tasks, close."""
    env = {**bench.env, "PYTHONPATH": str(bench.cwd)}
    proc = subprocess.run([sys.executable, "-c", EXECUTOR_PROBE], capture_output=True, text=True, cwd=bench.cwd,
                          env=env, timeout=300, check=True)
    return {k: float(v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def measure(codes: list[Path], rounds: int) -> list[dict[str, float]]:
    """One result per checkout; the rounds alternate between them, so a busy machine weighs on all alike."""
    med = statistics.median
    with tempfile.TemporaryDirectory(prefix="fla-cli-latency-") as tmp:
        benches = [Bench(code, Path(tmp) / f"code{i}") for i, code in enumerate(codes)]
        samples: list[dict[str, list[float]]] = [{} for _ in codes]
        try:
            from free_llm_agent.tools.bytecode import compile_now

            compile_now()
            for bench in benches:
                bench.help()
                bench.run(1)  # writes the bytecode caches, creates the home
            for _ in range(rounds):
                for bench, got in zip(benches, samples, strict=True):
                    got.setdefault("help", []).append(bench.help())
                    for key, value in executor_numbers(bench).items():
                        got.setdefault(key, []).append(value)
                    for tasks in (1, 3, 5):
                        first, total = bench.run(tasks)
                        got.setdefault("first_request", []).append(first)
                        got.setdefault(f"run{tasks}", []).append(total)
        finally:
            for bench in benches:
                bench.close()
    results = []
    for got in samples:
        result = {key: med(values) for key, values in got.items()}
        result["per_task"] = (result["run5"] - result["run1"]) / 4
        result["ratio3"] = result["run3"] / result["help"]
        results.append(result)
    return results


ROWS = (("help", "`--help`", "s"), ("first_request", "start → first request", "s"),
        ("run1", "run, 1 task", "s"), ("run3", "run, 3 tasks", "s"), ("run5", "run, 5 tasks", "s"),
        ("per_task", "each extra task", "s"), ("ratio3", "3-task run / `--help`", "×"),
        ("exec_cold", "executor alone: first Python task of a fresh one", "s"),
        ("exec_python", "executor alone: warm Python task", "ms"),
        ("exec_shell", "executor alone: warm shell task", "ms"),
        ("exec_close", "executor alone: close", "ms"))
PLOTTED = ("help", "first_request", "run1", "run3", "run5", "per_task")


def table(labels: list[str], results: list[dict[str, float]]) -> str:
    lines = ["| what | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for key, label, unit in ROWS:
        cells = [f"{r[key]:.2f} s" if unit == "s" else f"{r[key] * 1000:.0f} ms" if unit == "ms" else f"{r[key]:.1f}×"
                 for r in results]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(labels: list[str], results: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(PLOTTED)
    names = [label.replace("`", "") for key, label, _ in ROWS if key in PLOTTED]
    fig, ax = plt.subplots(figsize=(8.5, 4))
    height = 0.8 / len(results)
    colors = ["#c9c3f5", "#7b6cf6", "#3d2fb0"]
    for i, (label, result) in enumerate(zip(labels, results, strict=True)):
        ys = [len(keys) - 1 - j + (len(results) - 1 - i) * height - 0.4 + height / 2 for j in range(len(keys))]
        bars = ax.barh(ys, [result[k] for k in keys], height=height, color=colors[i % len(colors)],
                       label=f"{label}: 3 tasks = {result['ratio3']:.1f}× --help, {result['per_task']:.2f} s/task")
        ax.bar_label(bars, fmt="%.2f s", padding=3, fontsize=8)
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels(names[::-1])
    ax.set_xlabel("seconds (median), zero-latency fake provider, --yes --json")
    ax.set_title("CLI latency")
    ax.set_xlim(0, max(r[k] for r in results for k in keys) * 1.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", type=Path, action="append", default=[],
                        help="checkout whose run_graph.py is measured (repeat to compare; default: this one)")
    parser.add_argument("--label", action="append", default=[], help="a name for each --code")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "cli_latency.png"), help="chart to write ('' for none)")
    args = parser.parse_args(argv)
    codes = [c.resolve() for c in args.code] or [ROOT]
    labels = args.label + [str(c) for c in codes[len(args.label):]] if args.code else ["this checkout"]
    results = measure(codes, max(1, args.rounds))
    print(table(labels, results))
    if args.plot:
        plot(labels, results, Path(args.plot))
        print(f"chart: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
