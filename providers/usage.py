"""Usage log (every request, cached or not) and the auto-optimizer built on the quota counts.

The log keeps one row per request for ``optimization.usage_log_retention_days``; older rows
are rolled up into ``usage_daily`` (one row per UTC day, provider, model, task type, outcome
and cached flag: counts, tokens, summed latency), kept ``usage_summary_retention_days``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from free_llm_agent.config import AppConfig
from free_llm_agent.providers.ledger import QuotaLedger, day_bounds
from free_llm_agent.storage.database import StateDatabase

_ROLLUP_BATCH_S = 7 * 86400.0  # days rolled up per transaction: the write lock is never held long

Recommendation = Literal["REDUCE_USAGE", "OPTIMAL", "CAN_INCREASE"]


@dataclass(frozen=True)
class UsageEvent:
    provider: str
    model: str
    outcome: str  # ok | rate_limited | auth | error | bad_request
    task_type: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    cached: bool = False
    error: str = ""


class UsageTracker:
    def __init__(self, db: StateDatabase, config: AppConfig) -> None:
        self.db, self.config = db, config

    def log(self, event: UsageEvent, now: float | None = None) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO usage_log(ts, provider, model, task_type, tokens_in, tokens_out, latency_ms,"
                " outcome, cached, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    now or time.time(),
                    event.provider,
                    event.model,
                    event.task_type,
                    event.tokens_in,
                    event.tokens_out,
                    event.latency_ms,
                    event.outcome,
                    int(event.cached),
                    event.error[:500],
                ),
            )

    def rollup(self, now: float) -> int:
        """Roll usage-log rows older than the retention (whole UTC days) up into ``usage_daily``,
        delete them, and drop summaries past theirs. Returns the rows rolled up."""
        opt = self.config.limits.optimization
        cutoff = _utc_day_start(now - opt.usage_log_retention_days * 86400)
        done = 0
        while True:
            with self.db.transaction() as conn:
                first = conn.execute("SELECT MIN(ts) FROM usage_log").fetchone()[0]
                if first is None or first >= cutoff:
                    break
                upto = min(cutoff, _utc_day_start(first) + _ROLLUP_BATCH_S)
                conn.execute(
                    "INSERT INTO usage_daily(day, provider, model, task_type, outcome, cached, requests, tokens_in,"
                    f" tokens_out, latency_ms) SELECT {self.db.dialect.utc_date('ts')}, provider, model, task_type,"
                    " outcome,"
                    " cached, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(latency_ms) FROM usage_log WHERE ts<?"
                    " GROUP BY 1, 2, 3, 4, 5, 6 ON CONFLICT(day, provider, model, task_type, outcome, cached)"
                    " DO UPDATE SET requests=usage_daily.requests+excluded.requests,"
                    " tokens_in=usage_daily.tokens_in+excluded.tokens_in,"
                    " tokens_out=usage_daily.tokens_out+excluded.tokens_out,"
                    " latency_ms=usage_daily.latency_ms+excluded.latency_ms",
                    (upto,),
                )
                done += conn.execute("DELETE FROM usage_log WHERE ts<?", (upto,)).rowcount
        oldest = datetime.fromtimestamp(now - opt.usage_summary_retention_days * 86400, UTC).date().isoformat()
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM usage_daily WHERE day<?", (oldest,))
        return done

    def get_daily_usage(self, provider: str, now: float | None = None) -> dict[str, int]:
        """Today's (provider's timezone) requests, tokens and cache hits from the log."""
        tz = ZoneInfo(self.config.limit_for(provider).timezone)
        start, end = day_bounds(now or time.time(), tz)
        row = self.db.query(
            "SELECT COUNT(*) FILTER (WHERE cached=0), COALESCE(SUM(tokens_in+tokens_out),0),"
            " COUNT(*) FILTER (WHERE cached=1), COUNT(*) FILTER (WHERE outcome!='ok')"
            " FROM usage_log WHERE provider=? AND ts>=? AND ts<?",
            (provider, start, end),
        )[0]
        requests, tokens, cached, errors = (int(v) for v in row)  # type: ignore[call-overload]
        return {"requests": requests, "tokens": tokens, "cached": cached, "errors": errors}


class AutoOptimizer:
    """REDUCE_USAGE above 80 % of a daily/monthly limit, CAN_INCREASE below 30 %, else OPTIMAL."""

    def __init__(self, config: AppConfig, quota: QuotaLedger) -> None:
        self.config, self.quota = config, quota

    def usage_ratio(self, provider: str, now: float) -> float:
        lim = self.config.limit_for(provider)
        counts = self.quota.counts(provider, now)
        ratios = [
            counts[used] / limit
            for used, limit in (
                ("requests_day", lim.requests_per_day),
                ("requests_month", lim.requests_per_month),
                ("tokens_day", lim.tokens_per_day),
            )
            if limit
        ]
        return max(ratios, default=0.0)

    def recommend(self, provider: str, now: float | None = None) -> Recommendation:
        ratio = self.usage_ratio(provider, now or time.time())
        if ratio > 0.8:
            return "REDUCE_USAGE"
        if ratio < 0.3:
            return "CAN_INCREASE"
        return "OPTIMAL"

    def order(self, candidates: list[str], now: float) -> list[str]:
        """Keep the order, but move providers above the safety margin (and the emergency
        provider, and local ones) behind the rest: they are used only when nothing else is free."""
        margin = self.config.limits.optimization.safety_margin
        emergency = self.config.limits.fallback.emergency_provider

        def rank(name: str) -> int:
            if self.config.providers[name].local:
                return 3
            if name == emergency:
                return 2
            return 1 if self.usage_ratio(name, now) >= margin else 0

        return sorted(candidates, key=rank)


def _utc_day_start(t: float) -> float:
    return t - t % 86400
