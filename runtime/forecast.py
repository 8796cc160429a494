"""``forecast GOAL``: how many requests a goal is likely to need, and when the quota lets them through.

Pure arithmetic over what the CLI gathers (:mod:`runtime.forecast_inputs`); nothing here reads a
database or sends a request.

* **Expected requests.** A run asks for a plan (1 request), then code and a verdict per batch of up to
  ``max_batch_size`` tasks: ``1 + 2 * ceil(tasks / batch)`` requests, plus what this home's runs spent
  beyond that (repairs, retries, replanning). The plan sizes and the extra requests come from this
  home's completed threads — those of the same goal when there are any, else all of them; with no
  history, the spec's plan of 3–5 tasks and no extra. ``low``/``typical``/``high`` are the smallest,
  median and largest (10th and 90th percentiles from 5 runs on).
* **When it finishes.** The requests are sent back to back, each to the first provider (in routing
  order) whose quota takes it — the ledger's own arithmetic (:func:`providers.ledger.earliest`): the
  sliding minute with its margin, the calendar day and month in each provider's timezone, cooldowns.
  Requests already in a provider's minute window are taken as sent just now (at worst).
* **Verdict.** ``fits now`` when no request has to wait for a day or month to reset or a cooldown to
  end (waits for the sliding minute only pace the run); otherwise ``finishes around HH:MM when P
  resets``, the reset that lets the last request through. Token limits are not forecast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from free_llm_agent.config import RateLimit
from free_llm_agent.providers.ledger import MINUTE, PERIODS, earliest

DEFAULT_PLAN_SIZES = (3, 4, 5)  # the spec: a goal is planned into 3–5 tasks
MAX_REQUESTS = 100_000  # a forecast beyond this is not scheduled request by request
HORIZON_S = 400 * 86400.0  # a request that cannot go within this is never going


@dataclass(frozen=True)
class PastRun:
    """A completed thread of this home: its goal, how many tasks it planned, how many requests it sent."""

    goal: str
    tasks: int
    requests: int


@dataclass(frozen=True)
class Expected:
    low: int
    typical: int
    high: int
    plan_tasks: tuple[int, int, int]  # the plan sizes behind low, typical, high
    runs: int  # past runs it is based on (0: the default)
    same_goal: bool  # based on earlier runs of this very goal
    basis: str  # one line saying so


@dataclass(frozen=True)
class ProviderNow:
    """A provider's limits and what is used of them now (the quota ledger's counts)."""

    name: str
    limit: RateLimit
    used_minute: int = 0
    used_day: int = 0
    used_month: int = 0
    cooling_until: float = 0.0
    cooling_reason: str = ""


@dataclass(frozen=True)
class Wait:
    """No provider could take request ``index`` at once: it goes at ``at`` to ``provider`` (``why`` it waited)."""

    index: int
    at: float
    provider: str
    why: str

    @property
    def calendar(self) -> bool:
        """A wait for a day or month to reset or a cooldown to end (not the sliding minute's pacing)."""
        return "minute" not in self.why


@dataclass(frozen=True)
class Schedule:
    finish: float | None  # when the last request can go (None: never — no provider can take them)
    waits: list[Wait] = field(default_factory=list)
    per_provider: dict[str, int] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)  # when finish is None: why each provider cannot


def structural(tasks: int, batch: int) -> int:
    """Requests of a run without repairs or retries: the plan, then code + verdict per batch."""
    return 1 + 2 * math.ceil(max(tasks, 0) / max(batch, 1))


def _rank(values: Sequence[int], q: float) -> int:
    """The nearest-rank ``q`` quantile of ``values`` (sorted here)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _spread(values: Sequence[int]) -> tuple[int, int, int]:
    if len(values) >= 5:
        return _rank(values, 0.1), _rank(values, 0.5), _rank(values, 0.9)
    return min(values), _rank(values, 0.5), max(values)


def _same(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def expected_requests(goal: str, history: Sequence[PastRun], batch: int) -> Expected:
    """The requests ``goal`` is likely to need (see the module)."""
    same = [r for r in history if _same(r.goal, goal)]
    pool = [r for r in (same or history) if r.tasks > 0]
    if not pool:
        sizes, extras = DEFAULT_PLAN_SIZES, (0, 0, 0)
        basis = (f"no completed run in this home yet: a plan of {sizes[0]}–{sizes[2]} tasks, "
                 f"{batch} per batch")
    else:
        sizes = _spread([r.tasks for r in pool])
        extras = _spread([r.requests - structural(r.tasks, batch) for r in pool])
        what = "earlier run(s) of this goal" if same else "completed run(s) in this home"
        basis = f"{len(pool)} {what}: plans of {_range(sizes[0], sizes[2])} tasks"
    low, typical, high = (max(1, structural(n, batch) + e) for n, e in zip(sizes, extras, strict=True))
    typical = max(low, typical)
    return Expected(low, typical, max(typical, high), sizes, len(pool), bool(same), basis)


def _range(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}–{high}"


class _Simulated:
    """The ledger's windows as they would be after the requests scheduled so far (a WindowReader)."""

    def __init__(self, providers: Sequence[ProviderNow], now: float) -> None:
        self.slots: dict[str, list[float]] = {}
        self.periods: dict[tuple[str, str, float], int] = {}
        self.cooling = {p.name: (p.cooling_until, p.cooling_reason) for p in providers if p.cooling_until > now}
        for p in providers:
            self.slots[p.name] = [now] * p.used_minute  # at worst, all sent just now
            for (per, bounds), used in zip(PERIODS, (p.used_day, p.used_month), strict=True):
                self.periods[(p.name, per, bounds(now, ZoneInfo(p.limit.timezone))[0])] = used

    def cooldown(self, provider: str) -> tuple[float, str] | None:
        return self.cooling.get(provider)

    def last_slot(self, provider: str) -> float | None:
        return max(self.slots[provider], default=None)

    def recent(self, provider: str, since: float) -> list[tuple[float, int]]:
        return [(ts, 0) for ts in self.slots[provider] if ts > since]

    def period(self, provider: str, period: str, start: float) -> tuple[int, int]:
        return self.periods.get((provider, period, start), 0), 0

    def take(self, p: ProviderNow, at: float) -> None:
        horizon = at - 2 * MINUTE - 30
        self.slots[p.name] = [ts for ts in self.slots[p.name] if ts > horizon] + [at]
        tz = ZoneInfo(p.limit.timezone)
        for per, bounds in PERIODS:
            key = (p.name, per, bounds(at, tz)[0])
            self.periods[key] = self.periods.get(key, 0) + 1


def schedule(providers: Sequence[ProviderNow], requests: int, now: float, margin: float = 0.0) -> Schedule:
    """When ``requests`` sent back to back from ``now`` could go, each to the first provider free (see the
    module); ``margin`` is ``optimization.window_margin_seconds``."""
    sim = _Simulated(providers, now)
    t, waits, per_provider = now, [], dict.fromkeys((p.name for p in providers), 0)
    for index in range(min(requests, MAX_REQUESTS)):
        for _ in range(64):  # each turn moves t to the earliest time some provider frees up
            best: tuple[float, ProviderNow, str] | None = None
            for p in providers:
                at, why = earliest(sim, p.name, p.limit, t, 0, margin)
                if at <= t:
                    best = (t, p, "")
                    break
                if best is None or at < best[0]:
                    best = (at, p, why)
            if best is None or best[0] - now > HORIZON_S:
                break
            at, chosen, why = best
            if at <= t:
                sim.take(chosen, t)
                per_provider[chosen.name] += 1
                break
            waits.append(Wait(index, at, chosen.name, why))
            t = at
        else:
            best = None
        if best is None or best[0] - now > HORIZON_S:
            blocked = {p.name: earliest(sim, p.name, p.limit, t, 0, margin)[1] for p in providers}
            return Schedule(None, waits, per_provider, blocked)
    return Schedule(t, waits, per_provider)


def provider_rows(providers: Sequence[ProviderNow], now: float) -> list[dict[str, Any]]:
    """Per provider: what it can take before its next reset (``left_now``; None: no daily or monthly limit),
    its per-minute limit, and what it can take after each upcoming reset (``resets``)."""
    rows = []
    for p in providers:
        tz, lim = ZoneInfo(p.limit.timezone), p.limit
        day_end, month_end = PERIODS[0][1](now, tz)[1], PERIODS[1][1](now, tz)[1]

        def left(at: float, p: ProviderNow = p, lim: RateLimit = lim, day_end: float = day_end,
                 month_end: float = month_end) -> int | None:
            caps = []
            if lim.requests_per_day is not None:
                caps.append(lim.requests_per_day - (0 if at >= day_end else p.used_day))
            if lim.requests_per_month is not None:
                caps.append(lim.requests_per_month - (0 if at >= month_end else p.used_month))
            return max(0, min(caps)) if caps else None

        resets: list[dict[str, Any]] = []
        if p.cooling_until > now:
            resets.append({"window": "cooldown", "at": _iso(p.cooling_until), "left": left(p.cooling_until),
                           "reason": p.cooling_reason})
        if lim.requests_per_day is not None:
            resets.append({"window": "day", "at": _iso(day_end), "left": left(day_end)})
        if lim.requests_per_month is not None:
            resets.append({"window": "month", "at": _iso(month_end), "left": left(month_end)})
        resets.sort(key=lambda r: str(r["at"]))
        rows.append({"name": p.name, "left_now": 0 if p.cooling_until > now else left(now),
                     "per_minute": lim.requests_per_minute,
                     "used": {"minute": p.used_minute, "day": p.used_day, "month": p.used_month},
                     "limits": {k: v for k, v in lim.model_dump().items() if v is not None},
                     "cooling_until": _iso(p.cooling_until) if p.cooling_until > now else None,
                     "resets": resets})
    return rows


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def clock_text(t: float, now: float, tz: tzinfo | None = None) -> str:
    """``HH:MM`` in the local time (``tz``), with the day when it is not today's."""
    at, today = datetime.fromtimestamp(t, tz).astimezone(tz), datetime.fromtimestamp(now, tz).astimezone(tz)
    return at.strftime("%H:%M") if at.date() == today.date() else at.strftime("%a %d %b %H:%M")


def _why_reset(wait: Wait) -> str:
    if wait.why.startswith("cooling"):
        return f"when {wait.provider}'s cooldown ends"
    for per, word in (("day", "daily"), ("month", "monthly")):
        if f"/{per}" in wait.why:
            return f"when {wait.provider} resets (its {word} quota)"
    return f"when {wait.provider} frees up ({wait.why})"


def verdict(expected: Expected, plan: Schedule, providers: Sequence[ProviderNow], now: float,
            tz: tzinfo | None = None) -> dict[str, Any]:
    """``fits_now``, ``finishes_at`` (ISO time of the last request; None: never) and the ``reason`` in words."""
    n = expected.typical
    if plan.finish is None:
        why = "; ".join(f"{name}: {reason or 'unavailable'}" for name, reason in plan.blocked.items())
        return {"fits_now": False, "finishes_at": None,
                "reason": f"no provider can take {n} requests ({why or 'no provider has a key'})"}
    finishes = _iso(plan.finish)
    calendar = [w for w in plan.waits if w.calendar]
    if not calendar:
        paced = f"; paced by per-minute limits, the last request around {clock_text(plan.finish, now, tz)}" \
            if plan.waits else ""
        return {"fits_now": True, "finishes_at": finishes,
                "reason": f"fits now: about {n} requests, within what is left{paced}"}
    first, last = calendar[0], calendar[-1]
    return {"fits_now": False, "finishes_at": finishes,
            "reason": f"finishes around {clock_text(plan.finish, now, tz)} {_why_reset(last)}: about {n} requests, "
                      f"{first.index} of them before the first reset ({clock_text(first.at, now, tz)})"}


def forecast(goal: str, history: Sequence[PastRun], providers: Sequence[ProviderNow], *, now: float, batch: int,
             margin: float = 0.0, tz: tzinfo | None = None) -> dict[str, Any]:
    """The whole forecast as ``forecast --json`` prints it."""
    expected = expected_requests(goal, history, batch)
    plan = schedule(providers, expected.typical, now, margin)
    return {
        "goal": goal,
        "expected_requests": {"low": expected.low, "typical": expected.typical, "high": expected.high,
                              "plan_tasks": dict(zip(("low", "typical", "high"), expected.plan_tasks, strict=True)),
                              "runs": expected.runs, "same_goal": expected.same_goal, "basis": expected.basis},
        "providers": [row | {"would_take": plan.per_provider.get(row["name"], 0)}
                      for row in provider_rows(providers, now)],
        "verdict": verdict(expected, plan, providers, now, tz),
    }
