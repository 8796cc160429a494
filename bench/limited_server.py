"""Loopback fake providers that enforce their own rate limits, like a real free tier.

``LimitedProvider`` wraps ``tests.fakes.provider_server.FakeProvider`` (unchanged) with a
responder that keeps, per provider, the times of the requests it served and answers
429 with ``retry-after`` once a request would go over:

* ``rpm``: requests per minute over a sliding 60 s window; retry-after = seconds until
  the oldest served request of the window leaves it;
* ``rpd``: requests per day (the day being the life of the server); retry-after =
  seconds until the next UTC midnight, as a real per-day quota answers.

Refused requests do not count against the limit; ``think`` seconds pass before an answer
(a refusal is immediate). ``served`` / ``refused`` hold the
times of every answer, so a benchmark can count them inside its own window.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType

from tests.fakes.provider_server import FakeProvider, Reply, Request


@dataclass
class Limit:
    name: str
    rpm: int | None = None
    rpd: int | None = None


@dataclass
class LimitedProvider:
    limit: Limit
    kind: str = "openai"
    think: float = 0.0
    served: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._window: deque[float] = deque()
        self.fake = FakeProvider(self.kind, model=f"{self.limit.name}-model", responder=self._respond)

    @property
    def base_url(self) -> str:
        return self.fake.base_url

    def _retry_after(self, now: float) -> float | None:
        """None when a request may be served now, else the seconds until it may."""
        lim = self.limit
        if lim.rpd is not None and len(self.served) >= lim.rpd:
            midnight = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            return max(1.0, midnight.timestamp() - now)
        if lim.rpm is not None:
            while self._window and self._window[0] <= now - 60.0:
                self._window.popleft()
            if len(self._window) >= lim.rpm:
                return max(1.0, float(int(self._window[0] + 60.0 - now) + 1))
        return None

    def _respond(self, req: Request) -> Reply:
        now = time.time()
        with self._lock:
            wait = self._retry_after(now)
            if wait is not None:
                self.refused.append(now)
                return Reply.rate_limit(retry_after=wait)
            self._window.append(now)
            self.served.append(now)
        answer = Reply.text(f"{self.limit.name} answers", prompt_tokens=5, completion_tokens=3)
        return Reply.hang(self.think, answer) if self.think else answer

    def count(self, start: float, end: float) -> tuple[int, int]:
        """(served, refused) with times in [start, end]."""
        with self._lock:
            return (sum(start <= t <= end for t in self.served), sum(start <= t <= end for t in self.refused))

    def __enter__(self) -> LimitedProvider:
        self.fake.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.fake.stop()


def ideal_served(limits: list[Limit], seconds: float, prompts: int) -> int:
    """Most requests the servers can serve in ``seconds`` (sliding minute: rpm per started minute)."""
    total = 0
    minutes = int(seconds // 60) + (1 if seconds % 60 else 0)
    for lim in limits:
        cap = lim.rpm * minutes if lim.rpm is not None else prompts
        if lim.rpd is not None:
            cap = min(cap, lim.rpd)
        total += cap
    return min(total, prompts)
