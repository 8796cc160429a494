"""The quota ledger on PostgreSQL: reserve, sent, settle and release as one stored-function call each.

:class:`providers.quota.QuotaStore` hands these four to :class:`PgCalls` when its state database is
PostgreSQL. Each is one statement on an autocommit connection — one round trip — and the function
(``fla_quota_*``, created by the state database's migration 4) does the whole read-check-write inside
the server, holding only the providers' own locks: reservations for different providers run side by
side, and no lock is held across a network round trip. The window arithmetic is
:func:`providers.ledger.earliest`'s and the checks of a late send :meth:`QuotaStore._fits`'s, in SQL.

Calendar days and months stay Python's (``zoneinfo``, exactly the starts the other methods use): each
reservation sends, per timezone, the day and month holding ``now``, the next day, and the first day and
month after this one (cached for the day). When the arithmetic needs a period past those (a limit that
carries the wait further), the function writes nothing and names the time; the periods around it are
added and the call is made again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol, cast
from zoneinfo import ZoneInfo

from free_llm_agent.config import RateLimit
from free_llm_agent.providers.ledger import Slot, Unavailable, day_bounds, month_bounds

Period = tuple[str, str, float, float]  # zone, "day" | "month", start, end

_RESERVE = ("SELECT * FROM fla_quota_reserve(?::text[], ?::text[], ?::bigint[], ?::bigint[], ?::bigint[],"
            " ?::bigint[], ?::bigint[], ?::bigint[], ?::float8, ?::float8, ?::float8, ?::float8, ?::float8,"
            " ?::float8[], ?::text[], ?::text[], ?::float8[], ?::float8[])")
_SENT = ("SELECT fla_quota_sent(?::bigint, ?::text, ?::float8, ?::float8, ?::bigint, ?::bigint, ?::bigint,"
         " ?::bigint, ?::bigint, ?::float8, ?::float8)")
_SETTLE = "SELECT fla_quota_settle(?::bigint, ?::text, ?::bigint, ?::boolean)"
_RELEASE = "SELECT fla_quota_release(?::bigint, ?::text)"
_LOCK = "SELECT fla_quota_lock(?::text[])"
_MORE_DAYS = 14  # days of periods added when the arithmetic reaches past the ones sent
_MAX_CALLS = 40  # a reservation that keeps asking for periods is a bug, not a wait
_LIMITS = ("requests_per_minute", "tokens_per_minute", "requests_per_day", "tokens_per_day", "requests_per_month")
_ARRAYS = {0, 1, 2, 3, 4, 5, 6, 7, 13, 14, 15, 16, 17}  # the positions of _RESERVE's array parameters


class FunctionCalls(Protocol):
    """What :class:`PgCalls` needs of the database: one statement, its own transaction, one round trip."""

    def call(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...


def _texts(values: Iterable[str]) -> str:
    """Elements of a PostgreSQL array literal, quoted (the arrays go as text: psycopg's list adaptation
    costs more than the whole reservation does in the server)."""
    return ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)


def _numbers(values: Iterable[float | int | None]) -> str:
    return ",".join("NULL" if v is None else repr(v) for v in values)


def _periods(zone: str, t: float, days: int) -> list[Period]:
    """The ``days`` calendar days from the one holding ``t``, and the months they fall in, in ``zone``."""
    tz = ZoneInfo(zone)
    rows: set[Period] = set()
    day = t
    for _ in range(days):
        start, end = day_bounds(day, tz)
        rows.add((zone, "day", start, end))
        rows.add((zone, "month", *month_bounds(start, tz)))
        day = end
    return sorted(rows)


def _columns(rows: Sequence[Period]) -> tuple[str, str, str, str]:
    """The periods as the elements of four array literals: zones, kinds, starts, ends."""
    return (_texts(r[0] for r in rows), _texts(r[1] for r in rows), _numbers(r[2] for r in rows),
            _numbers(r[3] for r in rows))


class _Zone(NamedTuple):
    """A timezone's periods for one day of reservations."""

    day: tuple[float, float]  # the day they are for
    now: str  # the day's and its month's start and end: array literal elements
    rows: list[Period]  # the periods of the day after, the first day of next month and next month
    columns: tuple[str, str, str, str]  # those as array literal elements: zones, kinds, starts, ends


class PgCalls:
    """The four hot quota operations as stored-function calls (see the module docstring)."""

    def __init__(self, db: object) -> None:
        self.db = cast(FunctionCalls, db)
        self._cached: dict[str, _Zone] = {}

    def periods(self, zone: str, now: float) -> _Zone:
        """The day and month holding ``now``, the next day, the first day of next month and next month."""
        cached = self._cached.get(zone)
        if cached is None or not cached.day[0] <= now < cached.day[1]:
            tz = ZoneInfo(zone)
            day, month = day_bounds(now, tz), month_bounds(now, tz)
            rows = sorted({*_periods(zone, now, 2), *_periods(zone, month[1], 1)})
            self._cached[zone] = cached = _Zone(day, _numbers((*day, *month)), rows, _columns(rows))
        return cached

    def reserve(self, candidates: Sequence[str], est_tokens: Callable[[str], int], now: float, max_wait: float,
                limits: Callable[[str], RateLimit], margin: float, prune: tuple[float, float] | None
                ) -> Slot | Unavailable:
        names = list(candidates)
        lims = [limits(n) for n in names]
        zones = [lim.timezone for lim in lims]
        own = [self.periods(zone, now) for zone in zones]
        tables = list({id(z): z for z in own}.values())
        rows = [row for z in tables for row in z.rows]
        columns = tuple(",".join(z.columns[k] for z in tables) for k in range(4))
        head = (_texts(names), _texts(zones), _numbers(int(est_tokens(n)) for n in names),
                *(_numbers(getattr(lim, key) for lim in lims) for key in _LIMITS), now, max_wait, margin)
        now_periods = ",".join(z.now for z in own)
        for _ in range(_MAX_CALLS):
            params = (*head, *(prune or (None, None)), now_periods, *columns)
            row = self.db.call(_RESERVE, [f"{{{p}}}" if i in _ARRAYS else p for i, p in enumerate(params)])[0]
            slot_id, provider, at, retry_at, reason_names, reason_texts, need_zone, need_t = row
            if need_zone is None:
                if slot_id is not None:
                    return Slot(id=int(slot_id), provider=str(provider), at=float(at))
                return Unavailable(retry_at=float(retry_at), reasons=dict(zip(reason_names, reason_texts, strict=True)))
            rows += _periods(str(need_zone), float(need_t), _MORE_DAYS)
            columns, prune = _columns(rows), None  # pruned (or skipped) by the first call
        raise RuntimeError(f"quota reservation kept asking for calendar periods (last: {need_zone} at {need_t})")

    def sent(self, slot: Slot, now: float, lim: RateLimit, margin: float) -> Slot | None:
        tz = ZoneInfo(lim.timezone)
        outcome = self.db.call(_SENT, (slot.id, slot.provider, now, margin, lim.requests_per_minute,
                                       lim.tokens_per_minute, lim.requests_per_day, lim.tokens_per_day,
                                       lim.requests_per_month, day_bounds(now, tz)[0], month_bounds(now, tz)[0]))[0][0]
        if outcome == "gone":
            return slot
        return None if outcome == "refused" else Slot(id=slot.id, provider=slot.provider, at=now)

    def settle(self, slot: Slot, tokens: int, ok: bool) -> None:
        self.db.call(_SETTLE, (slot.id, slot.provider, tokens, ok))

    def release(self, slot: Slot) -> None:
        self.db.call(_RELEASE, (slot.id, slot.provider))

    @staticmethod
    def lock(conn: Any, providers: Sequence[str]) -> None:
        """Inside a ``transaction()``: hold these providers' quota locks until it ends."""
        conn.execute(_LOCK, (list(providers),))
