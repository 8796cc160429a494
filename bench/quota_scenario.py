"""Quota scenario: providers that enforce their own per-minute limit, and several agent processes.

Three loopback fake providers refuse (429, ``retry-after``) any request beyond 20 / 30 / 10
arrivals in the last 60 s (a sliding window on the server's clock, counted on arrival) and
take ``--think`` seconds to answer the rest. ``--workers`` fresh processes (spawned: their
client libraries load cold, like separate CLI runs) share one home and take prompts from one
queue of ``--prompts`` for ``--seconds``; each just calls ``llm.invoke(prompt)`` — waiting for
a free slot is the chat model's job (``max_wait_seconds`` 60). It reports the answers, the
requests the providers refused, and the calls that raised.

Run: ``uv run python bench/quota_scenario.py`` (about 2.5 minutes). ``--code DIR`` imports
``providers``/``config`` from DIR instead (another version; see bench/quota_store.py).
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RPM = {"alpha": ("openai_compatible", 20), "beta": ("groq", 30), "gamma": ("together", 10)}


def _paths(code: str | None) -> None:
    for path in (str(ROOT), *([code] if code else [])):  # DIR before the repo
        if path not in sys.path:
            sys.path.insert(0, path)


class Enforcer:
    """A responder: the provider's own sliding minute window, on arrival."""

    def __init__(self, rpm: int, think: float) -> None:
        self.rpm, self.think = rpm, think
        self.arrivals: collections.deque[float] = collections.deque()
        self.refused = self.answered = 0
        self.lock = threading.Lock()

    def __call__(self, _request: Any) -> Any:
        from tests.fakes.wire import Reply

        now = time.monotonic()
        with self.lock:
            while self.arrivals and self.arrivals[0] <= now - 60:
                self.arrivals.popleft()
            if len(self.arrivals) >= self.rpm:
                self.refused += 1
                return Reply.rate_limit(retry_after=max(1, round(self.arrivals[0] + 60 - now)))
            self.arrivals.append(now)
            self.answered += 1
        return Reply.hang(self.think, Reply.text("answer")) if self.think else Reply.text("answer")


def worker(code: str | None, cfg: str, home: str, env: dict[str, str], prompts: Any, deadline: float,
           out: Any) -> None:
    _paths(code)
    os.environ.update(env)
    from providers import AllProvidersExhausted, build_chat_model

    llm = build_chat_model(cfg, home)
    results: list[tuple[str, str, float]] = []
    while time.time() < deadline:
        try:
            prompt = prompts.get_nowait()
        except queue.Empty:
            break
        try:
            provider = llm.invoke(prompt).response_metadata["provider"]
            results.append(("ok", str(provider), time.time()))
        except AllProvidersExhausted as exc:
            results.append(("exhausted", str(exc)[:200], time.time()))
        except Exception as exc:
            results.append(("failed", repr(exc)[:200], time.time()))
    out.put(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--think", type=float, default=0.3, help="seconds a provider takes to answer")
    parser.add_argument("--code", help="import providers/config from this folder instead")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    _paths(args.code)
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    from tests.conftest import write_config
    from tests.fakes.provider_server import FakeProvider

    enforcers = {name: Enforcer(rpm, args.think) for name, (_, rpm) in RPM.items()}
    fakes = {name: FakeProvider("openai", responder=enforcers[name]).start() for name in RPM}
    tmp = Path(tempfile.mkdtemp(prefix="quota-scenario-"))
    cfg, env = write_config(
        tmp / "config",
        {name: {"kind": kind, "base_url": fakes[name].base_url,
                "limits": {"requests_per_minute": rpm}, "timeout_s": 30} for name, (kind, rpm) in RPM.items()},
        fallback={"max_wait_seconds": 60},
    )
    ctx = multiprocessing.get_context("spawn")
    prompts, out = ctx.Queue(), ctx.Queue()
    for i in range(args.prompts):
        prompts.put(f"prompt {i}")
    time.sleep(0.5)  # the queue's feeder thread has put them all
    start = time.time()
    deadline = start + args.seconds
    procs = [ctx.Process(target=worker, args=(args.code, str(cfg), str(tmp / "home"), env, prompts, deadline, out))
             for _ in range(args.workers)]
    for p in procs:
        p.start()
    results = [r for _ in procs for r in out.get(timeout=args.seconds + 300)]
    for p in procs:
        p.join()
    for fake in fakes.values():
        fake.stop()
    limit = sum(rpm for _, rpm in RPM.values()) * args.seconds / 60
    served_in_time = sum(1 for kind, _, t in results if kind == "ok" and t <= deadline)
    report = {
        "answered": sum(1 for kind, _, _ in results if kind == "ok"),
        "answered_within": served_in_time,
        "limit": limit,
        "share_of_limit": round(served_in_time / limit, 3),
        "refused_429": {name: e.refused for name, e in enforcers.items()},
        "refused_total": sum(e.refused for e in enforcers.values()),
        "exhausted": sum(1 for kind, _, _ in results if kind == "exhausted"),
        "failed": [why for kind, why, _ in results if kind == "failed"],
        "by_provider": dict(collections.Counter(p for kind, p, _ in results if kind == "ok")),
        "seconds": round(time.time() - start, 1),
    }
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
