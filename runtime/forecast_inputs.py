"""What :mod:`runtime.forecast` computes from, read from a home without sending anything: the completed
threads (plan sizes, requests spent) and each provider's quota counts and cooldown."""

from __future__ import annotations

from typing import TYPE_CHECKING

from free_llm_agent.runtime.forecast import PastRun, ProviderNow

if TYPE_CHECKING:
    from free_llm_agent.providers.router import Router
    from free_llm_agent.runtime.runner import Runner


def past_runs(runner: Runner) -> list[PastRun]:
    """The completed threads of the runner's checkpoints: goal, tasks planned, requests sent (cache hits
    are not requests). A thread that cannot be read is left out."""
    rows, _ = runner.threads()
    return [PastRun(goal=r.goal, tasks=len(r.tasks), requests=sum(r.llm_calls.values()))
            for r in rows if r.status == "completed"]


def providers_now(router: Router, now: float) -> list[ProviderNow]:
    """The providers a request may go to (with a key, enabled; routing order) and their quota now."""
    out = []
    for name in router.candidates("general", now=now):
        counts = router.quota.counts(name, now)
        until, reason = router.quota.cooldown_until(name)
        out.append(ProviderNow(name=name, limit=router.config.limit_for(name), used_minute=counts["requests_minute"],
                               used_day=counts["requests_day"], used_month=counts["requests_month"],
                               cooling_until=until, cooling_reason=reason))
    return out
