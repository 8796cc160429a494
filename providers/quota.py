"""The quota ledger in the state database (the one :class:`~providers.ledger.QuotaLedger` today).

Tables (migration 2 in :mod:`storage.sqlite.db`):

* ``quota_slots`` — one row per request of the sliding minute window (and any booked in the
  near future): send time, tokens, and the day and month it is counted in. Rows past the
  window are pruned, so a reservation reads at most ``requests_per_minute`` of them (through
  the ``(provider, ts)`` index), however long the history.
* ``quota_periods`` — requests and tokens per provider, calendar period (``day``/``month``
  in the provider's timezone) and period start: two primary-key lookups per candidate.
* ``quota_backlog`` — request counts per 15 minutes carried over from the schema-1
  ``requests`` table; folded into ``quota_periods`` (with each provider's timezone) on open.

Every write is one ``BEGIN IMMEDIATE`` transaction taken behind the file's first-come,
first-served lock (:mod:`storage.sqlite.fifo_lock`), so N processes sharing one home never exceed
a limit together and none of them starves. When every provider is full, a caller may take a
slot in the near future and sleep until then: later callers see that row and queue behind it.

On PostgreSQL (the same tables) reserve, sent, settle and release are one stored-function call
each (:mod:`providers.quota_pg`), serialized per provider; the other writes lock their provider too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from free_llm_agent.config import RateLimit
from free_llm_agent.providers.ledger import (
    MINUTE,
    PERIODS,
    QuotaLedger,
    Slot,
    Unavailable,
    day_bounds,
    earliest,
    month_bounds,
)
from free_llm_agent.providers.quota_pg import PgCalls
from free_llm_agent.storage.database import StateDatabase

__all__ = ["MINUTE", "QuotaLedger", "QuotaStore", "Slot", "Unavailable", "day_bounds", "month_bounds"]

_STALE_OPEN_S = 3600.0  # a slot never settled (its process died) stays in the minute table this long
_PERIOD_KEEP_S = 40 * 86400.0  # period counters older than this are no window's any more
_PRUNE_EVERY_S = 300.0


class _Windows:
    """:class:`~providers.ledger.WindowReader` on one SQLite connection (inside its transaction)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def cooldown(self, provider: str) -> tuple[float, str] | None:
        row = self.conn.execute("SELECT until, reason FROM cooldowns WHERE provider=?", (provider,)).fetchone()
        return (float(row[0]), str(row[1])) if row else None

    def last_slot(self, provider: str) -> float | None:
        row = self.conn.execute("SELECT MAX(ts) FROM quota_slots WHERE provider=?", (provider,)).fetchone()
        return None if row[0] is None else float(row[0])

    def recent(self, provider: str, since: float) -> list[tuple[float, int]]:
        return self.conn.execute(
            "SELECT ts, tokens FROM quota_slots WHERE provider=? AND ts>? ORDER BY ts", (provider, since)
        ).fetchall()

    def period(self, provider: str, period: str, start: float) -> tuple[int, int]:
        row = self.conn.execute(
            "SELECT requests, tokens FROM quota_periods WHERE provider=? AND period=? AND start=?",
            (provider, period, start),
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)


class QuotaStore(QuotaLedger):
    """Quota slots, period counters, cooldowns and failure streaks in the shared SQLite file.

    ``margin`` (``optimization.window_margin_seconds``) lengthens the minute window for the
    network round trip; 0 gives the exact 60-second window."""

    def __init__(self, db: StateDatabase, limits: Callable[[str], RateLimit], *, margin: float = 0.0) -> None:
        self.db = db
        self.limits = limits
        self.margin = margin
        self._pruned = 0.0
        self._pg = PgCalls(db) if db.dialect.name == "postgresql" else None
        if db.query("SELECT 1 FROM quota_backlog LIMIT 1"):
            with db.transaction() as conn:
                self._fold_backlog(conn)

    def _zone(self, provider: str) -> ZoneInfo:
        return ZoneInfo(self.limits(provider).timezone)

    def _starts(self, provider: str, t: float) -> tuple[float, float]:
        tz = self._zone(provider)
        return day_bounds(t, tz)[0], month_bounds(t, tz)[0]

    def _lock(self, conn: Any, *providers: str) -> None:
        """On PostgreSQL, hold the providers' quota locks for the rest of the transaction (SQLite: the file's)."""
        if self._pg is not None:
            self._pg.lock(conn, providers)

    @staticmethod
    def _bump(conn: Any, provider: str, starts: tuple[float, float], requests: int, tokens: int) -> None:
        conn.executemany(
            "INSERT INTO quota_periods(provider, period, start, requests, tokens) VALUES (?,?,?,?,?) "
            "ON CONFLICT(provider, period, start) DO UPDATE SET "
            "requests=quota_periods.requests+excluded.requests, tokens=quota_periods.tokens+excluded.tokens",
            [(provider, per, start, requests, tokens) for (per, _), start in zip(PERIODS, starts, strict=True)],
        )

    # -- reserving ---------------------------------------------------------------
    def reserve(
        self,
        candidates: Sequence[str],
        est_tokens: Callable[[str], int],
        now: float,
        max_wait: float,
    ) -> Slot | Unavailable:
        if self._pg is not None:
            prune = None
            if now - self._pruned > _PRUNE_EVERY_S:
                prune, self._pruned = (now - 2 * MINUTE - self.margin, now - _STALE_OPEN_S), now
            return self._pg.reserve(candidates, est_tokens, now, max_wait, self.limits, self.margin, prune)
        with self.db.transaction() as conn:
            if now - self._pruned > _PRUNE_EVERY_S:
                self._prune_slots(conn, now)
            windows = _Windows(conn)
            best: tuple[float, str] | None = None
            reasons: dict[str, str] = {}
            for name in candidates:
                at, why = earliest(windows, name, self.limits(name), now, est_tokens(name), self.margin)
                if at <= now:
                    return self._insert(conn, name, now, est_tokens(name))
                reasons[name] = why
                if best is None or at < best[0]:
                    best = (at, name)
            if best is None:
                return Unavailable(retry_at=float("inf"), reasons=reasons)
            # The margin is ours: it never shortens a wait the caller allows (0 still means never wait).
            if best[0] - now <= (max_wait + self.margin if max_wait > 0 else 0):
                return self._insert(conn, best[1], best[0], est_tokens(best[1]))
            return Unavailable(retry_at=best[0], reasons=reasons)

    def _insert(self, conn: Any, provider: str, at: float, tokens: int) -> Slot:
        starts = self._starts(provider, at)
        (slot_id,) = conn.execute(
            "INSERT INTO quota_slots(provider, ts, tokens, day_start, month_start) VALUES (?,?,?,?,?) RETURNING id",
            (provider, at, tokens, *starts),
        ).fetchone()
        self._bump(conn, provider, starts, 1, tokens)
        return Slot(id=int(slot_id), provider=provider, at=at)

    def _row(self, conn: Any, slot: Slot) -> tuple[int, tuple[float, float] | None] | None:
        """The slot's tokens and the periods it is counted in (None: counted by the backlog), or None if gone."""
        row = conn.execute("SELECT tokens, day_start, month_start FROM quota_slots WHERE id=?", (slot.id,)).fetchone()
        if row is None:
            return None
        return int(row[0]), (None if row[1] is None else (float(row[1]), float(row[2])))

    # -- the request's life ------------------------------------------------------
    def sent(self, slot: Slot, now: float) -> Slot | None:
        if self._pg is not None:
            return self._pg.sent(slot, now, self.limits(slot.provider), self.margin)
        with self.db.transaction() as conn:
            row = self._row(conn, slot)
            if row is None:
                return slot
            tokens, starts = row
            moved = self._starts(slot.provider, now)
            if not self._fits(conn, slot, now, tokens, starts):
                if starts is not None:
                    self._bump(conn, slot.provider, starts, -1, -tokens)
                conn.execute("DELETE FROM quota_slots WHERE id=?", (slot.id,))
                return None
            if starts is not None and moved != starts:  # sent on another day than it was booked for
                self._bump(conn, slot.provider, starts, -1, -tokens)
                self._bump(conn, slot.provider, moved, 1, tokens)
            conn.execute(
                "UPDATE quota_slots SET ts=?, day_start=?, month_start=? WHERE id=?",
                (now, *(moved if starts is not None else (None, None)), slot.id),
            )
        return Slot(id=slot.id, provider=slot.provider, at=now)

    def _fits(self, conn: Any, slot: Slot, now: float, tokens: int, starts: tuple[float, float] | None) -> bool:
        """Whether ``slot`` may leave at ``now``: the other requests of the sliding minute up to now, and of
        the day and month ``now`` falls in (waiters booked for them included), leave room for it."""
        lim, windows = self.limits(slot.provider), _Windows(conn)
        recent = conn.execute("SELECT ts, tokens FROM quota_slots WHERE provider=? AND id<>? AND ts>? AND ts<=?",
                              (slot.provider, slot.id, now - MINUTE - self.margin, now)).fetchall()
        if lim.requests_per_minute is not None and len(recent) >= lim.requests_per_minute:
            return False
        if lim.tokens_per_minute is not None and sum(t for _, t in recent) + min(tokens, lim.tokens_per_minute) > \
                lim.tokens_per_minute:
            return False
        now_starts = self._starts(slot.provider, now)
        for (per, _), start, booked in zip(PERIODS, now_starts, starts or (None, None), strict=True):
            count, used = windows.period(slot.provider, per, start)
            if booked == start:  # counted there already: not another request
                count, used = count - 1, used - tokens
            rlim, tlim = getattr(lim, f"requests_per_{per}"), getattr(lim, f"tokens_per_{per}", None)
            if rlim is not None and count >= rlim:
                return False
            if tlim is not None and used + min(tokens, tlim) > tlim:
                return False
        return True

    def settle(self, slot: Slot, tokens: int, now: float, *, ok: bool = True) -> None:
        if self._pg is not None:
            return self._pg.settle(slot, tokens, ok)
        with self.db.transaction() as conn:
            row = self._row(conn, slot)
            if row is not None:
                if row[1] is not None:
                    self._bump(conn, slot.provider, row[1], 0, tokens - row[0])
                conn.execute("UPDATE quota_slots SET tokens=?, pending=0 WHERE id=?", (tokens, slot.id))
            if ok:
                conn.execute("UPDATE cooldowns SET failures=0 WHERE provider=?", (slot.provider,))

    def release(self, slot: Slot) -> None:
        if self._pg is not None:
            return self._pg.release(slot)
        with self.db.transaction() as conn:
            row = self._row(conn, slot)
            if row is None:
                return
            if row[1] is not None:
                self._bump(conn, slot.provider, row[1], -1, -row[0])
            conn.execute("DELETE FROM quota_slots WHERE id=?", (slot.id,))

    def add_used(self, provider: str, requests: int, now: float) -> None:
        if requests > 0:
            with self.db.transaction() as conn:
                self._lock(conn, provider)
                self._bump(conn, provider, self._starts(provider, now), requests, 0)

    # -- cooldowns -------------------------------------------------------------
    def cool_down(self, provider: str, until: float, reason: str) -> None:
        with self.db.transaction() as conn:
            self._lock(conn, provider)
            conn.execute(
                "INSERT INTO cooldowns(provider, until, reason) VALUES (?,?,?) "
                "ON CONFLICT(provider) DO UPDATE SET reason=CASE WHEN excluded.until>cooldowns.until "
                "THEN excluded.reason ELSE cooldowns.reason END, until="
                + self.db.dialect.greatest("cooldowns.until", "excluded.until"),
                (provider, until, reason),
            )

    def record_failure(self, provider: str, now: float, threshold: int, cooldown_s: float) -> bool:
        with self.db.transaction() as conn:
            self._lock(conn, provider)
            conn.execute(
                "INSERT INTO cooldowns(provider, failures) VALUES (?,1) "
                "ON CONFLICT(provider) DO UPDATE SET failures=cooldowns.failures+1",
                (provider,),
            )
            failures = conn.execute("SELECT failures FROM cooldowns WHERE provider=?", (provider,)).fetchone()[0]
            if failures < threshold:
                return False
            conn.execute(
                f"UPDATE cooldowns SET failures=0, until={self.db.dialect.greatest('until', '?')}, reason=?"
                " WHERE provider=?",
                (now + cooldown_s, f"{failures} failures in a row", provider),
            )
            return True

    def cooldown_until(self, provider: str) -> tuple[float, str]:
        rows = self.db.query("SELECT until, reason FROM cooldowns WHERE provider=?", (provider,))
        return (float(rows[0][0]), str(rows[0][1])) if rows else (0.0, "")  # type: ignore[arg-type]

    # -- reporting -------------------------------------------------------------
    def counts(self, provider: str, now: float) -> dict[str, int]:
        n, tok = self.db.query(
            "SELECT COUNT(*), COALESCE(SUM(tokens),0) FROM quota_slots WHERE provider=? AND ts>?",
            (provider, now - MINUTE),
        )[0]
        out = {"requests_minute": int(n), "tokens_minute": int(tok)}  # type: ignore[call-overload]
        for (per, _), start in zip(PERIODS, self._starts(provider, now), strict=True):
            rows = self.db.query(
                "SELECT requests, tokens FROM quota_periods WHERE provider=? AND period=? AND start=?",
                (provider, per, start),
            )
            out[f"requests_{per}"], out[f"tokens_{per}"] = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)  # type: ignore[call-overload]
        return out

    # -- upkeep ------------------------------------------------------------------
    def prune(self, now: float) -> None:
        with self.db.transaction() as conn:
            self._fold_backlog(conn)
            self._prune_slots(conn, now)
            conn.execute("DELETE FROM quota_periods WHERE start < ?", (now - _PERIOD_KEEP_S,))

    def _prune_slots(self, conn: Any, now: float) -> None:
        """Drop slots no minute window holds any more (one never settled: after an hour, its process is gone)."""
        horizon = now - 2 * MINUTE - self.margin
        conn.execute("DELETE FROM quota_slots WHERE ts < ? AND (pending=0 OR ts < ?)", (horizon, now - _STALE_OPEN_S))
        self._pruned = now

    def _fold_backlog(self, conn: Any) -> None:
        """Count schema-1 request rows (kept per 15 minutes by migration 2) in their day and month."""
        rows = conn.execute("SELECT provider, bucket, requests, tokens FROM quota_backlog").fetchall()
        if rows:
            self._lock(conn, *sorted({str(r[0]) for r in rows}))
        for provider, bucket, requests, tokens in rows:
            self._bump(conn, str(provider), self._starts(str(provider), float(bucket)), int(requests), int(tokens))
        conn.execute("DELETE FROM quota_backlog")
