"""The quota ledger's interface and its window arithmetic, shared by every backend.

A backend (SQLite today: :class:`providers.quota.QuotaStore`) keeps, per provider:

* the **recent slots** — one row per request in the sliding minute window (and any booked
  for the near future), with its send time and tokens; bounded: rows older than the window
  are pruned, so this never grows with history;
* **period counters** — requests and tokens per calendar day and month (in the provider's
  timezone), one row per provider, period and start, updated with every slot;
* cooldowns and failure streaks.

It answers :meth:`QuotaLedger.reserve` atomically across every process sharing it; the
arithmetic of "when does this request fit" lives here (:func:`earliest`), reading the
backend through a :class:`WindowReader` inside the backend's own transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from free_llm_agent.config import RateLimit

MINUTE = 60.0
EPS = 0.001
QUEUE_TOLERANCE = 0.25  # a slot this close to now is a send, not a queued waiter


@dataclass(frozen=True)
class Slot:
    """A reserved request: send it at ``at`` (epoch seconds) to ``provider``."""

    id: int
    provider: str
    at: float


@dataclass(frozen=True)
class Unavailable:
    """No provider can take a request before ``retry_at``; ``reasons`` per provider."""

    retry_at: float
    reasons: dict[str, str]


_LAST_BOUNDS: dict[tuple[str, str], tuple[float, float]] = {}  # the last period computed per kind and zone


def _cached(kind: str, t: float, tz: ZoneInfo, compute: Callable[[float, ZoneInfo], tuple[float, float]]
            ) -> tuple[float, float]:
    key = (kind, str(tz))
    last = _LAST_BOUNDS.get(key)
    if last is not None and last[0] <= t < last[1]:
        return last
    _LAST_BOUNDS[key] = bounds = compute(t, tz)
    return bounds


def _day(t: float, tz: ZoneInfo) -> tuple[float, float]:
    local = datetime.fromtimestamp(t, tz).date()
    start = datetime.combine(local, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(local + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    return start.timestamp(), end.timestamp()


def _month(t: float, tz: ZoneInfo) -> tuple[float, float]:
    local = datetime.fromtimestamp(t, tz).date().replace(day=1)
    nxt = (local + timedelta(days=32)).replace(day=1)
    start = datetime.combine(local, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(nxt, datetime.min.time(), tzinfo=tz)
    return start.timestamp(), end.timestamp()


def day_bounds(t: float, tz: ZoneInfo) -> tuple[float, float]:
    """Start and end (epoch seconds) of the calendar day holding ``t`` in ``tz``."""
    return _cached("day", t, tz, _day)


def month_bounds(t: float, tz: ZoneInfo) -> tuple[float, float]:
    """Start and end (epoch seconds) of the calendar month holding ``t`` in ``tz``."""
    return _cached("month", t, tz, _month)


PERIODS: tuple[tuple[str, Callable[[float, ZoneInfo], tuple[float, float]]], ...] = (
    ("day", day_bounds),
    ("month", month_bounds),
)


class WindowReader(Protocol):
    """What :func:`earliest` reads, inside the backend's reservation transaction."""

    def cooldown(self, provider: str) -> tuple[float, str] | None: ...

    def last_slot(self, provider: str) -> float | None:
        """The latest slot time of ``provider`` (a future one is a queued waiter)."""
        ...

    def recent(self, provider: str, since: float) -> list[tuple[float, int]]:
        """``(ts, tokens)`` of the slots after ``since``, oldest first."""
        ...

    def period(self, provider: str, period: str, start: float) -> tuple[int, int]:
        """Requests and tokens counted for ``provider`` in the ``period`` ("day"/"month") starting at ``start``."""
        ...


def earliest(
    reader: WindowReader, provider: str, lim: RateLimit, now: float, est: int, margin: float = 0.0
) -> tuple[float, str]:
    """Earliest time >= now a request of ``est`` tokens fits every limit, and why it cannot go sooner.

    The minute window is sliding and ``MINUTE + margin`` long: a request sent at ``ts`` holds its
    place until ``ts + 60 + margin``, so the provider, which counts it when it arrives, has let it
    go too. Days and months are calendar periods in the provider's timezone."""
    tz = ZoneInfo(lim.timezone)
    t, why = now, ""
    cooling = reader.cooldown(provider)
    if cooling and cooling[0] > t:
        t, why = cooling[0], f"cooling down ({cooling[1]})"
    last = reader.last_slot(provider)
    if last is not None and last > max(t, now + QUEUE_TOLERANCE):
        t, why = last + EPS, "queued behind waiting requests"
    span = MINUTE + margin
    rpm, tpm = lim.requests_per_minute, lim.tokens_per_minute
    for _ in range(12):
        before = t
        if rpm is not None or tpm is not None:
            recent = reader.recent(provider, t - span)
            if rpm is not None and len(recent) >= rpm:
                t = recent[len(recent) - rpm][0] + span + EPS if rpm else float("inf")
                why = f"{rpm} requests/minute used"
            if tpm is not None:
                need, used = min(est, tpm), sum(r[1] for r in recent)
                for ts, tokens in recent:
                    if used + need <= tpm:
                        break
                    used -= tokens
                    t = max(t, ts + span + EPS)
                    why = f"{tpm} tokens/minute used"
        if t == float("inf"):  # a limit of 0 a minute: never (no calendar period holds infinity)
            break
        for per, bounds in PERIODS:
            start, end = bounds(t, tz)
            count, tokens = reader.period(provider, per, start)
            rlim = getattr(lim, f"requests_per_{per}")
            tlim = getattr(lim, f"tokens_per_{per}", None)
            if rlim is not None and count >= rlim:
                t, why = end, f"{rlim} requests/{per} used"
            elif tlim is not None and tokens + min(est, tlim) > tlim:
                t, why = end, f"{tlim} tokens/{per} used"
        if t == before or t == float("inf"):
            break
    return t, why


class QuotaLedger(ABC):
    """Shared request quotas: per-minute (sliding), per-day and per-month (calendar), cooldowns.

    Used by :class:`providers.router.Router` and :class:`providers.usage.AutoOptimizer`. Every
    method is atomic across the processes sharing the ledger; ``reserve`` serves waiters first
    come, first served."""

    limits: Callable[[str], RateLimit]
    margin: float  # seconds added to the minute window for the network round trip

    @abstractmethod
    def reserve(
        self, candidates: Sequence[str], est_tokens: Callable[[str], int], now: float, max_wait: float
    ) -> Slot | Unavailable:
        """Take a slot on the first candidate free now; else the earliest within ``max_wait``.

        Later callers queue behind a slot taken in the future."""

    @abstractmethod
    def sent(self, slot: Slot, now: float) -> Slot | None:
        """The request leaves now: the slot counts from ``now`` (not from when it was reserved). None when it
        may not leave now after all — sent late, it would land in a window that is full as the provider counts
        it (the next day's, or a minute already holding another late one): the slot is given up, and the
        caller reserves again."""

    @abstractmethod
    def settle(self, slot: Slot, tokens: int, now: float, *, ok: bool = True) -> None:
        """The request was answered: record its real token use. ``ok=False`` books a request the
        provider counted but failed (5xx, garbage): it keeps the failure streak instead of resetting it."""

    @abstractmethod
    def release(self, slot: Slot) -> None:
        """The provider never counted the request (429, connection refused): give the slot back."""

    @abstractmethod
    def add_used(self, provider: str, requests: int, now: float) -> None:
        """Count ``requests`` more in the current day and month (the provider says it saw more than we did)."""

    @abstractmethod
    def cool_down(self, provider: str, until: float, reason: str) -> None:
        """Persist a cooldown; the longest deadline wins."""

    @abstractmethod
    def record_failure(self, provider: str, now: float, threshold: int, cooldown_s: float) -> bool:
        """Count a transient failure; after ``threshold`` in a row, cool down. True if it did."""

    @abstractmethod
    def cooldown_until(self, provider: str) -> tuple[float, str]:
        """The provider's cooldown deadline and reason (0 and "" when none)."""

    @abstractmethod
    def counts(self, provider: str, now: float) -> dict[str, int]:
        """``requests_/tokens_`` ``minute``/``day``/``month`` used in the current windows."""

    @abstractmethod
    def prune(self, now: float) -> None:
        """Forget what no window needs any more (recent slots past the minute window, old periods)."""
