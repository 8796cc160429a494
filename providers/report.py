"""Data behind ``usage`` and ``check``: quota used/left per provider, and a tiny live request each."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from free_llm_agent.providers.keys import describe_key_vars, resolve_key
from free_llm_agent.providers.quota import Slot, Unavailable
from free_llm_agent.providers.router import Call, Router


def usage_report(router: Router, now: float | None = None) -> dict[str, Any]:
    """``usage --json``: counts, limits, cooldown, recommendation and answer grades per configured provider."""
    now = now or time.time()
    out: dict[str, Any] = {}
    answers = router.answers.grades()
    for name in router.config.providers:
        counts = router.quota.counts(name, now)
        until, reason = router.quota.cooldown_until(name)
        limits = router.config.limit_for(name).model_dump(exclude_none=True)
        out[name] = {
            "requests_minute": counts["requests_minute"],
            "requests_day": counts["requests_day"],
            "requests_month": counts["requests_month"],
            "tokens_minute": counts["tokens_minute"],
            "tokens_day": counts["tokens_day"],
            "limits": limits,
            "cooldown_until": datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds") if until > now else None,
            "cooldown_reason": reason if until > now else None,
            "recommendation": router.optimizer.recommend(name, now),
            "enabled": router.config.providers[name].enabled,
            "has_key": name in router.keys,
            # the last graded answers per purpose: usable at once, after a repair, not at all; rate = usable share
            "answers": {purpose: grades.to_json() for purpose, grades in answers.get(name, {}).items()},
        }
    return {"providers": out}


def check_provider(router: Router, name: str) -> dict[str, Any]:
    """One tiny request to ``name`` (counted against its quota): ok / error + reason + latency."""
    cfg = router.config.providers[name]
    if not cfg.enabled:
        return {"provider": name, "ok": False, "reason": "disabled in providers.yaml", "latency_ms": None}
    if resolve_key(cfg) is None and not cfg.local:
        return {"provider": name, "ok": False, "reason": f"no key: set {describe_key_vars(cfg)}", "latency_ms": None}
    call = Call(messages=[], task_type="check", est_chars=20)
    try:
        client = router.client(name)  # before the slot: building a client can take seconds
    except Exception as exc:
        return {"provider": name, "ok": False, "reason": f"cannot build client: {exc}", "latency_ms": None}
    got = router.quota.reserve([name], lambda _: 20, time.time(), 0)
    if isinstance(got, Unavailable):
        return {"provider": name, "ok": False, "reason": f"quota: {got.reasons.get(name, 'exhausted')}",
                "latency_ms": None}
    leaving = router.sending(got)
    if leaving is None:
        return {"provider": name, "ok": False, "reason": "quota: its window filled before the check could go",
                "latency_ms": None}
    slot: Slot = leaving
    started = time.time()
    try:
        message = client.invoke("Reply with the single word OK.")
    except Exception as exc:
        info = router.failed(call, slot, exc, started)
        reason = router.disabled.get(name) or f"{info.kind.value}: {info.message}"
        if info.kind.value == "error" and info.status is None:
            reason = f"unreachable: {info.message}"
        return {"provider": name, "ok": False, "reason": reason, "latency_ms": round((time.time() - started) * 1000)}
    latency = round((time.time() - started) * 1000)
    message.response_metadata.update(provider=name)
    router.succeeded(call, slot, message, started, None)
    return {"provider": name, "ok": True, "reason": "", "latency_ms": latency, "model": cfg.model}


def daily_requests(router: Router, days: int = 30, now: float | None = None) -> dict[str, dict[str, int]]:
    """Requests that reached each provider per UTC day (cache hits excluded), last ``days`` days."""
    now = now or time.time()
    since = now - days * 86400
    sql = router.db.dialect
    rows = router.db.query(  # recent rows from the log, older days from its daily rollup
        f"SELECT provider, {sql.utc_date('ts')} AS day, COUNT(*) FROM usage_log"
        " WHERE cached=0 AND outcome!='auth' AND ts>=? GROUP BY 1, 2"
        " UNION ALL SELECT provider, day, SUM(requests) FROM usage_daily"
        f" WHERE cached=0 AND outcome!='auth' AND day>={sql.utc_date('?')} GROUP BY 1, 2",
        (since, since),
    )
    out: dict[str, dict[str, int]] = {}
    for provider, day, count in sorted(rows, key=lambda r: str(r[1])):
        per = out.setdefault(str(provider), {})
        per[str(day)] = per.get(str(day), 0) + int(count)  # type: ignore[call-overload]
    return out


def plot_daily_requests(data: dict[str, dict[str, int]], path: str) -> None:
    """A stacked bar chart of requests per provider per day, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = sorted({day for per in data.values() for day in per})
    fig, ax = plt.subplots(figsize=(max(6.0, len(days) * 0.5), 4))
    bottom = [0] * len(days)
    for provider in sorted(data):
        counts = [data[provider].get(day, 0) for day in days]
        ax.bar(days, counts, bottom=bottom, label=provider)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ax.set_title("LLM requests per provider per day (UTC)")
    ax.set_ylabel("requests")
    if days:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no requests yet", ha="center", va="center", transform=ax.transAxes)
    ax.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
