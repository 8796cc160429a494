"""Picks the provider for each attempt and books the outcome.

``Router`` owns the shared state of one home directory (quota store, response
cache, usage log, clients, providers disabled for this process). The chat
model drives one ``Call`` per request through ``next_slot`` / ``succeeded`` /
``failed``; all of them are synchronous SQLite work, which the async path runs
in a worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

import free_llm_agent.providers.route_log as route_log
from free_llm_agent.config import AppConfig
from free_llm_agent.providers.answers import AnswerLog, Outcome, learned_order
from free_llm_agent.providers.cache import ResponseCache
from free_llm_agent.providers.errors import (
    AllProvidersExhausted,
    ErrorInfo,
    ErrorKind,
    classify,
    wait_from_headers,
)
from free_llm_agent.providers.keys import usable_providers
from free_llm_agent.providers.ledger import QuotaLedger, Slot, Unavailable, day_bounds
from free_llm_agent.providers.quota import QuotaStore
from free_llm_agent.providers.registry import build_client
from free_llm_agent.providers.usage import AutoOptimizer, UsageEvent, UsageTracker
from free_llm_agent.storage.database import StateDatabase
from free_llm_agent.storage.registry import open_state

DEFAULT_429_COOLDOWN_S = 60.0


@dataclass
class Call:
    """One logical request: it may try several providers before one answers."""

    messages: Sequence[BaseMessage]
    task_type: str
    est_chars: int
    preferred: tuple[str, ...] = ()
    purpose: str = ""  # the node's (plan, code, reflect): what routing learns per
    excluded: set[str] = field(default_factory=set)  # failed for this call: don't retry it
    attempts: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    retry_on: str | None = None  # ask this provider again first (a malformed call's retry without tools)


class Router:
    def __init__(self, config: AppConfig, home: Path, keys: Mapping[str, str | None], *, offline: bool = False,
                 database_url: str | None = None) -> None:
        self.config, self.home, self.keys, self.offline = config, home, dict(keys), offline
        self.database_url = database_url
        self.db: StateDatabase = open_state(database_url, home)
        opt = config.limits.optimization
        self.quota: QuotaLedger = QuotaStore(self.db, config.limit_for, margin=opt.window_margin_seconds)
        self.cache = ResponseCache(self.db, opt.cache_ttl_hours * 3600, opt.enable_caching)
        self.usage = UsageTracker(self.db, config)
        self.optimizer = AutoOptimizer(config, self.quota)
        self.answers = AnswerLog(self.db)
        self.disabled: dict[str, str] = {}  # provider -> why (401/403), for this process
        self._clients: dict[str, BaseChatModel] = {}  # by name, or name@timeout
        self._lock = threading.Lock()
        self.quota.prune(time.time())
        self.usage.rollup(time.time())

    @classmethod
    def from_config(cls, config: AppConfig, home: Path, *, offline: bool = False,
                    database_url: str | None = None) -> tuple[Router, list[str]]:
        keys, notices = usable_providers(config)
        for notice in notices:  # the CLI prints them as one line; -v shows each
            route_log.log.info("%s", notice)
        route_log.log.info("providers with a key (or local): %s%s", ", ".join(keys), " (--offline: local ones only)"
                           if offline else "")
        return cls(config, home, keys, offline=offline, database_url=database_url), notices

    def close(self) -> None:
        """Close the state database's connections (used again, it opens new ones)."""
        self.db.close()

    def client(self, name: str, timeout: float | None = None) -> BaseChatModel:
        """The provider's client (built once); with ``timeout``, one whose requests give up after that long."""
        cfg = self.config.providers[name]
        key = name if timeout is None or timeout == cfg.timeout_s else f"{name}@{timeout}"
        with self._lock:
            if key not in self._clients:
                built = cfg if key == name else cfg.model_copy(update={"timeout_s": float(timeout or cfg.timeout_s)})
                self._clients[key] = build_client(built, self.keys.get(name))
            return self._clients[key]

    def first_choice(self, task_type: str, preferred: Sequence[str] = ()) -> str | None:
        """The provider a request would try first, from the configuration alone (no quota lookups)."""
        routing = self.config.routing
        order = [*preferred, routing.task_types.get(task_type, ""), *routing.priority, *self.config.providers]
        return next((n for n in order if n in self.keys and n not in self.disabled), None)

    # -- selection -------------------------------------------------------------
    def candidates(self, task_type: str, preferred: Sequence[str] = (), now: float | None = None,
                   purpose: str = "") -> list[str]:
        """The providers to try, in order: asked for by name, pinned for the task type, then the rest by
        their usable-at-once rate for ``purpose`` (``routing.learn``), else as configured; those near
        their quota's safety margin (and the emergency and local ones) last."""
        routing = self.config.routing
        pinned = routing.task_types.get(task_type, "")
        order = [*preferred, pinned, *routing.priority, *self.config.providers]
        seen: list[str] = []
        for name in order:
            if name and name not in seen and name in self.keys and name not in self.disabled:
                if self.offline and not self.config.providers[name].local:
                    continue
                seen.append(name)
        chosen = [n for n in seen if n in preferred]  # asked for by name: first, in the order given
        rest = [n for n in seen if n not in chosen]
        if routing.learn and purpose:
            head = [n for n in rest if n == pinned]
            rest = head + self.learned(purpose, [n for n in rest if n != pinned])
        return chosen + self.optimizer.order(rest, now or time.time())

    def learned(self, purpose: str, names: Sequence[str]) -> list[str]:
        """``names`` by their usable-at-once rate for ``purpose`` (providers/answers.py)."""
        if len(names) < 2:
            return list(names)
        routing = self.config.routing
        explore = self.answers.asks(purpose) % routing.explore_every == routing.explore_every - 1
        return learned_order(names, self.answers.for_purpose(purpose), min_samples=routing.min_samples,
                             explore=explore)

    def grade(self, provider: str, purpose: str, outcome: Outcome) -> None:
        """Book how usable ``provider``'s answer for ``purpose`` was (a provider this config does not know: ignored)."""
        if provider in self.config.providers and purpose:
            self.answers.grade(provider, purpose, outcome, time.time())

    def _estimate(self, call: Call, name: str) -> int:
        return call.est_chars // 4 + self.config.providers[name].max_tokens // 4

    def warm(self, names: Sequence[str], timeout: float | None = None) -> None:
        """Build the clients of ``names`` now (a cold one takes seconds: imports, TLS set-up), so that
        none is built between taking a slot and sending on it. A client that cannot be built fails
        later, when its request is attempted, and is booked as that provider's failure."""
        for name in names:
            try:
                self.client(name, timeout)
            except Exception:  # reported by the attempt that needs it
                continue

    def next_slot(self, call: Call, timeout: float | None = None) -> Slot:
        """Reserve the next attempt's slot (maybe in the near future) or raise AllProvidersExhausted.

        The candidates' clients are built first (``timeout``: the call's), so the slot's time is
        when the request can really go out; :meth:`sending` records when it does."""
        names = [n for n in self.candidates(call.task_type, call.preferred, purpose=call.purpose)
                 if n not in call.excluded]
        self.warm(names, timeout)
        now = time.time()
        limit = 2 * len(self.config.providers) + 2
        if not names or call.attempts >= limit:
            # Every candidate failed during this call (or is disabled): an outage, not a spent quota.
            reasons = {**call.errors, **self.disabled}
            live = [n for n in self.keys if n not in self.disabled]
            fb = self.config.limits.fallback
            cooled = [until for n in live if (until := self.quota.cooldown_until(n)[0]) > now]
            retry = min(cooled, default=now + fb.retry_delay_seconds) if live else None
            route_log.exhausted(call, reasons, _dt(retry))
            raise AllProvidersExhausted(_dt(retry), reasons, quota=False,
                                        keys_rejected=not live and bool(self.disabled))
        call.attempts += 1
        estimate, max_wait = (lambda n: self._estimate(call, n)), self.config.limits.fallback.max_wait_seconds
        again, call.retry_on = call.retry_on, None
        if again in names:  # a slot of its own on the same provider, else the others as usual
            same = self.quota.reserve([again], estimate, now, max_wait)
            if not isinstance(same, Unavailable):
                route_log.chosen(self, call, [again], same)
                return same
            names = [n for n in names if n != again]
            if not names:
                when = _dt(same.retry_at if same.retry_at != float("inf") else None)
                route_log.exhausted(call, {**call.errors, **same.reasons, **self.disabled}, when)
                raise AllProvidersExhausted(when, {**call.errors, **same.reasons, **self.disabled})
        got = self.quota.reserve(names, estimate, now, max_wait)
        if isinstance(got, Unavailable):
            retry_at = got.retry_at if got.retry_at != float("inf") else None
            route_log.exhausted(call, {**call.errors, **got.reasons, **self.disabled}, _dt(retry_at))
            raise AllProvidersExhausted(_dt(retry_at), {**call.errors, **got.reasons, **self.disabled})
        route_log.chosen(self, call, names, got)
        return got

    def sending(self, slot: Slot) -> Slot | None:
        """The request is leaving now: the ledger counts it from now (it may have waited for its slot). None:
        sent this late it would not fit its window (see :meth:`QuotaLedger.sent`); reserve again."""
        return self.quota.sent(slot, time.time())

    # -- outcomes --------------------------------------------------------------
    def succeeded(
        self, call: Call, slot: Slot, message: AIMessage, started: float, cache_key: str | None, *,
        reset_streak: bool = True,
    ) -> None:
        """Book an answered request; ``reset_streak=False`` (an answer returned inside an error, Groq's
        ``tool_use_failed``) leaves the provider's failure streak as it was."""
        now = time.time()
        usage: Mapping[str, Any] = message.usage_metadata or {}
        tokens_in, tokens_out = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
        self.quota.settle(slot, tokens_in + tokens_out or self._estimate(call, slot.provider), now, ok=reset_streak)
        self.usage.log(
            UsageEvent(
                slot.provider,
                self.config.providers[slot.provider].model,
                "ok",
                call.task_type,
                tokens_in,
                tokens_out,
                (now - started) * 1000,
            ),
            now,
        )
        headers = message.response_metadata.pop("headers", None)
        if isinstance(headers, Mapping):
            self.correct_from_headers(slot.provider, {str(k).lower(): str(v) for k, v in headers.items()}, now)
        if cache_key is not None:
            self.cache.put(cache_key, message, now)

    def failed(self, call: Call, slot: Slot, exc: BaseException, started: float) -> ErrorInfo:
        now, name = time.time(), slot.provider
        cfg = self.config.providers[name]
        info = classify(exc)
        call.errors[name] = f"{info.kind.value}: {info.message}"
        if info.kind is ErrorKind.RATE_LIMIT:
            self.quota.release(slot)  # the provider refused it: it did not count
            until = now + (info.wait_s if info.wait_s is not None else DEFAULT_429_COOLDOWN_S)
            if info.per_day:
                until = max(until, day_bounds(now, ZoneInfo(self.config.limit_for(name).timezone))[1])
            self.quota.cool_down(name, until, f"429 from provider: {info.message[:120]}")
            # A provider that keeps refusing once its short retry-after is over is failing: it joins the
            # failure streak, so it is not asked again on every call of a long run.
            fb = self.config.limits.fallback
            self.quota.record_failure(name, now, fb.failure_threshold, fb.failure_cooldown_seconds)
            route_log.failed(name, info, f"cooling down until {route_log.clock(until)}; the next provider is tried")
        elif info.kind is ErrorKind.AUTH:
            self.quota.release(slot)
            self.disabled[name] = f"key rejected (HTTP {info.status}): check {cfg.api_key_env or 'the endpoint'}" + (
                f", get a key at {cfg.signup_url}" if cfg.signup_url else ""
            )
            route_log.failed(name, info, "not asked again in this run; the next provider is tried")
        else:
            call.excluded.add(name)
            if info.status is None and "connect" in info.message.lower():
                self.quota.release(slot)
            else:
                self.quota.settle(slot, 0, now, ok=False)
            fb = self.config.limits.fallback
            if info.kind is ErrorKind.TRANSIENT:
                self.quota.record_failure(name, now, fb.failure_threshold, fb.failure_cooldown_seconds)
            route_log.failed(name, info, "not asked again for this request; the next provider is tried")
        self.usage.log(
            UsageEvent(
                name, cfg.model, info.kind.value, call.task_type, latency_ms=(now - started) * 1000, error=info.message
            ),
            now,
        )
        return info

    def unreadable(self, provider: str) -> None:
        """An answer returned inside an error (``tool_use_failed``) could not be read: a failure after all."""
        fb = self.config.limits.fallback
        self.quota.record_failure(provider, time.time(), fb.failure_threshold, fb.failure_cooldown_seconds)

    def served_from_cache(self, call: Call, message: AIMessage) -> None:
        meta = message.response_metadata
        self.usage.log(
            UsageEvent(str(meta.get("provider", "")), str(meta.get("model", "")), "ok", call.task_type, cached=True)
        )

    def correct_from_headers(self, provider: str, headers: Mapping[str, str], now: float) -> None:
        """Trust the provider's own counters: cool down when it says a budget is spent, and
        raise the local daily count when it reports fewer requests left than we think."""
        wait = wait_from_headers(headers)
        if wait is not None:
            self.quota.cool_down(provider, now + wait, "provider reports its budget spent")
        lim = self.config.limit_for(provider)
        remaining = headers.get("x-ratelimit-remaining-requests", "")
        # Only Groq's x-ratelimit-*-requests is known to be the per-day budget.
        if self.config.providers[provider].kind == "groq" and lim.requests_per_day and remaining.isdigit():
            used = self.quota.counts(provider, now)["requests_day"]
            missing = (lim.requests_per_day - used) - int(remaining)
            if missing > 0:
                self.quota.add_used(provider, min(missing, lim.requests_per_day), now)


def _dt(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None
