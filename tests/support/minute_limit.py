"""A fake provider that counts like a free tier: at most ``rpm`` requests in any sliding 60 s, a 429 with
``retry-after`` past that (refusals do not count), answering the agent's prompts otherwise.

``seed(n, at)`` books ``n`` requests sent at ``at`` — in the fake's window and, with :func:`seed_ledger`, in a
home's quota ledger the way the app books a request (reserve, send, settle) — so a test starts inside a
dry spell that ends within seconds instead of a minute."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from free_llm_agent.config import load_config
from free_llm_agent.providers.quota import QuotaStore, Unavailable
from free_llm_agent.storage.registry import open_state
from tests.fakes.provider_server import Reply, Request

WINDOW_S = 60.0


class MinuteLimited:
    """A responder (``fake_server("openai", responder=MinuteLimited(rpm, inner))``) enforcing ``rpm``."""

    def __init__(self, rpm: int, inner: Callable[[Request], Reply]) -> None:
        self.rpm, self.inner = rpm, inner
        self.served: list[float] = []
        self.refused: list[float] = []
        self._lock = threading.Lock()

    def seed(self, n: int, at: float) -> None:
        with self._lock:
            self.served.extend([at] * n)

    def __call__(self, req: Request) -> Reply:
        now = time.time()
        with self._lock:
            recent = sorted(t for t in self.served if t > now - WINDOW_S)
            if len(recent) >= self.rpm:
                self.refused.append(now)
                return Reply.rate_limit(retry_after=max(1, int(recent[-self.rpm] + WINDOW_S - now) + 1))
            self.served.append(now)
        return self.inner(req)


def seed_ledger(config_dir: Path, home: Path, provider: str, times: Sequence[float],
                database_url: str | None = None) -> None:
    """Book requests of ``provider`` sent at ``times`` in the home's quota ledger (as the router does)."""
    config = load_config(config_dir)
    db = open_state(database_url, home)
    try:
        store = QuotaStore(db, config.limit_for, margin=config.limits.optimization.window_margin_seconds)
        for at in times:
            slot = store.reserve([provider], lambda _: 1, at, 0)
            assert not isinstance(slot, Unavailable), slot
            sent = store.sent(slot, at)
            assert sent is not None
            store.settle(sent, 1, at)
    finally:
        db.close()
