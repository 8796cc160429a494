"""A responder that enforces a per-minute limit as a free tier does: a sliding 60 s window of served
requests; one over it is refused with 429 and ``retry-after`` (refusals do not count against the limit).

Wraps any responder (e.g. :func:`tests.fakes.agent_responder.make_responder`)::

    limited = RateLimited(make_responder(plan), rpm=12)
    server = fake_server("openai", responder=limited)
    ...
    assert limited.refused == []          # the agent never went over the limit
    limited.served                        # (time, request text) of every answered request

Thread-safe: the fake server answers requests on several threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from tests.fakes.provider_server import Reply, Request

WINDOW_S = 60.0


class RateLimited:
    def __init__(self, responder: Callable[[Request], Reply], *, rpm: int) -> None:
        self.responder = responder
        self.rpm = rpm
        self.served: list[tuple[float, str]] = []
        self.refused: list[float] = []
        self._window: deque[float] = deque()
        self._lock = threading.Lock()

    def __call__(self, req: Request) -> Reply:
        now = time.time()
        with self._lock:
            while self._window and self._window[0] <= now - WINDOW_S:
                self._window.popleft()
            if len(self._window) >= self.rpm:
                self.refused.append(now)
                return Reply.rate_limit(retry_after=max(1, math.ceil(self._window[0] + WINDOW_S - now)))
            self._window.append(now)
            self.served.append((now, req.text))
        return self.responder(req)

    def min_wall_s(self, requests: int) -> float:
        """The least time ``requests`` requests can take under this limit: the last one may leave only when
        ``requests - 1`` others have left, ``rpm`` per sliding minute (the work between them not counted)."""
        return WINDOW_S * (math.ceil(requests / self.rpm) - 1)
