"""Shared request quotas: per-minute (sliding), per-day and per-month (calendar).

Every request takes a *slot* first. Slots are rows of ``requests``; taking one
is a single ``BEGIN IMMEDIATE`` transaction that looks at every candidate
provider, so processes sharing one home directory never exceed a limit
together. When every provider is full, a caller may take a slot in the near
future (``ts`` > now) and sleep until then: later callers see that row and
queue behind it, which makes waiting first come, first served across threads
and processes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from config import RateLimit
from providers.db import Database

MINUTE = 60.0
_EPS = 0.001
_QUEUE_TOLERANCE = 0.25  # a row this close to now is a send, not a queued waiter


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


def day_bounds(t: float, tz: ZoneInfo) -> tuple[float, float]:
    local = datetime.fromtimestamp(t, tz).date()
    start = datetime.combine(local, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(local + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    return start.timestamp(), end.timestamp()


def _month_bounds(t: float, tz: ZoneInfo) -> tuple[float, float]:
    local = datetime.fromtimestamp(t, tz).date().replace(day=1)
    nxt = (local + timedelta(days=32)).replace(day=1)
    start = datetime.combine(local, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(nxt, datetime.min.time(), tzinfo=tz)
    return start.timestamp(), end.timestamp()


class QuotaStore:
    """Quota slots, cooldowns and failure streaks in the shared SQLite file."""

    def __init__(self, db: Database, limits: Callable[[str], RateLimit]) -> None:
        self.db = db
        self.limits = limits

    # -- slot arithmetic ---------------------------------------------------------
    def _earliest(self, conn: sqlite3.Connection, provider: str, now: float, est: int) -> tuple[float, str]:
        """Earliest time >= now a request of ``est`` tokens fits every limit, and why."""
        lim = self.limits(provider)
        tz = ZoneInfo(lim.timezone)
        row = conn.execute("SELECT until, reason FROM cooldowns WHERE provider=?", (provider,)).fetchone()
        t, why = now, ""
        if row and row[0] > t:
            t, why = row[0], f"cooling down ({row[1]})"
        last = conn.execute("SELECT MAX(ts) FROM requests WHERE provider=?", (provider,)).fetchone()[0]
        if last is not None and last > max(t, now + _QUEUE_TOLERANCE):
            t, why = last + _EPS, "queued behind waiting requests"
        for _ in range(12):
            before = t
            if lim.requests_per_minute is not None or lim.tokens_per_minute is not None:
                recent = conn.execute(
                    "SELECT ts, tokens FROM requests WHERE provider=? AND ts>? ORDER BY ts",
                    (provider, t - MINUTE),
                ).fetchall()
                rpm = lim.requests_per_minute
                if rpm is not None and len(recent) >= rpm:
                    t = recent[len(recent) - rpm][0] + MINUTE + _EPS if rpm else float("inf")
                    why = f"{rpm} requests/minute used"
                tpm = lim.tokens_per_minute
                if tpm is not None:
                    need, used = min(est, tpm), sum(r[1] for r in recent)
                    for ts, tokens in recent:
                        if used + need <= tpm:
                            break
                        used -= tokens
                        t = max(t, ts + MINUTE + _EPS)
                        why = f"{tpm} tokens/minute used"
            for per, bounds in (("day", day_bounds), ("month", _month_bounds)):
                start, end = bounds(t, tz)
                count, tokens = conn.execute(
                    "SELECT COUNT(*), COALESCE(SUM(tokens),0) FROM requests WHERE provider=? AND ts>=? AND ts<?",
                    (provider, start, end),
                ).fetchone()
                rlim = getattr(lim, f"requests_per_{per}")
                tlim = getattr(lim, f"tokens_per_{per}", None)
                if rlim is not None and count >= rlim:
                    t, why = end, f"{rlim} requests/{per} used"
                elif tlim is not None and tokens + min(est, tlim) > tlim:
                    t, why = end, f"{tlim} tokens/{per} used"
            if t == before or t == float("inf"):
                break
        return t, why

    def reserve(
        self,
        candidates: Sequence[str],
        est_tokens: Callable[[str], int],
        now: float,
        max_wait: float,
    ) -> Slot | Unavailable:
        """Take a slot on the first candidate free now; else the earliest within ``max_wait``."""
        with self.db.transaction() as conn:
            best: tuple[float, str] | None = None
            reasons: dict[str, str] = {}
            for name in candidates:
                at, why = self._earliest(conn, name, now, est_tokens(name))
                if at <= now:
                    return self._insert(conn, name, now, est_tokens(name))
                reasons[name] = why
                if best is None or at < best[0]:
                    best = (at, name)
            if best is None:
                return Unavailable(retry_at=float("inf"), reasons=reasons)
            if best[0] - now <= max_wait:
                return self._insert(conn, best[1], best[0], est_tokens(best[1]))
            return Unavailable(retry_at=best[0], reasons=reasons)

    @staticmethod
    def _insert(conn: sqlite3.Connection, provider: str, at: float, tokens: int) -> Slot:
        cur = conn.execute("INSERT INTO requests(provider, ts, tokens) VALUES (?,?,?)", (provider, at, tokens))
        return Slot(id=int(cur.lastrowid or 0), provider=provider, at=at)

    # -- settling --------------------------------------------------------------
    def settle(self, slot: Slot, tokens: int, now: float, *, ok: bool = True) -> None:
        """The request was answered: record its real token use and its real send time.

        ``ok=False`` books a request the provider counted but failed (5xx, garbage): it
        keeps the failure streak instead of resetting it."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE requests SET tokens=?, ts=MIN(ts, ?) WHERE id=?", (tokens, max(now, slot.at), slot.id))
            if ok:
                conn.execute("UPDATE cooldowns SET failures=0 WHERE provider=?", (slot.provider,))

    def release(self, slot: Slot) -> None:
        """The provider never counted the request (429, connection refused): give the slot back."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM requests WHERE id=?", (slot.id,))

    # -- cooldowns -------------------------------------------------------------
    def cool_down(self, provider: str, until: float, reason: str) -> None:
        """Persist a cooldown; the longest deadline wins."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO cooldowns(provider, until, reason) VALUES (?,?,?) "
                "ON CONFLICT(provider) DO UPDATE SET reason=CASE WHEN excluded.until>until "
                "THEN excluded.reason ELSE reason END, until=MAX(until, excluded.until)",
                (provider, until, reason),
            )

    def record_failure(self, provider: str, now: float, threshold: int, cooldown_s: float) -> bool:
        """Count a transient failure; after ``threshold`` in a row, cool down. True if it did."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO cooldowns(provider, failures) VALUES (?,1) "
                "ON CONFLICT(provider) DO UPDATE SET failures=failures+1",
                (provider,),
            )
            failures = conn.execute("SELECT failures FROM cooldowns WHERE provider=?", (provider,)).fetchone()[0]
            if failures < threshold:
                return False
            conn.execute(
                "UPDATE cooldowns SET failures=0, until=MAX(until, ?), reason=? WHERE provider=?",
                (now + cooldown_s, f"{failures} failures in a row", provider),
            )
            return True

    def cooldown_until(self, provider: str) -> tuple[float, str]:
        rows = self.db.query("SELECT until, reason FROM cooldowns WHERE provider=?", (provider,))
        return (float(rows[0][0]), str(rows[0][1])) if rows else (0.0, "")  # type: ignore[arg-type]

    # -- reporting -------------------------------------------------------------
    def counts(self, provider: str, now: float) -> dict[str, int]:
        """Requests/tokens used in the current minute, day and month windows."""
        tz = ZoneInfo(self.limits(provider).timezone)
        day, month = day_bounds(now, tz), _month_bounds(now, tz)
        out: dict[str, int] = {}
        for key, (start, end) in (("minute", (now - MINUTE, float("inf"))), ("day", day), ("month", month)):
            n, tok = self.db.query(
                "SELECT COUNT(*), COALESCE(SUM(tokens),0) FROM requests WHERE provider=? AND ts>? AND ts<?",
                (provider, start if key == "minute" else start - _EPS, end),
            )[0]
            out[f"requests_{key}"], out[f"tokens_{key}"] = int(n), int(tok)  # type: ignore[call-overload]
        return out

    def prune(self, now: float) -> None:
        """Forget requests older than any window (about 32 days)."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM requests WHERE ts < ?", (now - 33 * 86400,))
