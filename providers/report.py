"""Data behind ``usage`` and ``check``: quota used/left per provider, and a tiny live request each."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from config import AppConfig
from providers.keys import resolve_key
from providers.quota import Slot, Unavailable
from providers.router import Call, Router


def usage_report(router: Router, now: float | None = None) -> dict[str, Any]:
    """``usage --json``: counts, limits, cooldown and recommendation per configured provider."""
    now = now or time.time()
    out: dict[str, Any] = {}
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
        }
    return {"providers": out}


def check_provider(router: Router, config: AppConfig, name: str) -> dict[str, Any]:
    """One tiny request to ``name`` (counted against its quota): ok / error + reason + latency."""
    cfg = config.providers[name]
    if not cfg.enabled:
        return {"provider": name, "ok": False, "reason": "disabled in providers.yaml", "latency_ms": None}
    if resolve_key(cfg) is None and not cfg.local:
        return {"provider": name, "ok": False, "reason": f"no key: set {cfg.api_key_env}", "latency_ms": None}
    call = Call(messages=[], task_type="check", est_chars=20)
    got = router.quota.reserve([name], lambda _: 20, time.time(), 0)
    if isinstance(got, Unavailable):
        return {"provider": name, "ok": False, "reason": f"quota: {got.reasons.get(name, 'exhausted')}",
                "latency_ms": None}
    slot: Slot = got
    started = time.time()
    try:
        message = router.client(name).invoke("Reply with the single word OK.")
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
