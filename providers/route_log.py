"""What routing decided and why, for ``-v`` (``logging`` at INFO on ``free_llm_agent.providers.route_log``).

Nothing here changes a decision: each function only describes one the router made — the provider a request
goes to and the order it was picked from, a failure and what follows from it, a request with no provider
left. The descriptions that cost a database read are built only when INFO is enabled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from free_llm_agent.providers.errors import ErrorInfo
    from free_llm_agent.providers.ledger import Slot

Router = Any  # providers.router.Router (not imported: the router imports this module)
Call = Any  # providers.router.Call

log = logging.getLogger(__name__)


def _what(call: Call) -> str:
    return call.purpose or call.task_type


def clock(epoch: float) -> str:
    """``epoch`` in local time: ``14:03:07``, with the date when it is not today."""
    at = datetime.fromtimestamp(epoch, UTC).astimezone()
    return at.strftime("%H:%M:%S" if at.date() == datetime.now(UTC).astimezone().date() else "%Y-%m-%d %H:%M:%S")


def _order_why(router: Router, call: Call, names: Sequence[str]) -> str:
    """How the candidates were ordered: asked for by name, pinned for the task type, learned or configured."""
    routing = router.config.routing
    why = [f"asked for {', '.join(asked)}" for asked in [[n for n in call.preferred if n in names]] if asked]
    if (pinned := routing.task_types.get(call.task_type, "")) in names:
        why.append(f"{pinned} pinned for task type {call.task_type!r}")
    if len(names) > 1:
        why.append(f"ranked by usable {call.purpose!r} answers" if routing.learn and call.purpose else "as configured")
    return f" ({'; '.join(why)})" if why else ""


def chosen(router: Router, call: Call, names: Sequence[str], slot: Slot) -> None:
    """The provider this attempt goes to, among ``names`` (in routing order), and why the earlier ones were not."""
    if not log.isEnabledFor(logging.INFO):
        return
    now = time.time()
    passed = []
    for name in names[: names.index(slot.provider)] if slot.provider in names else []:
        until, reason = router.quota.cooldown_until(name)
        passed.append(f"{name} (cooling down until {clock(until)}: {reason})" if until > now
                      else f"{name} (no request free in its quota window now)")
    wait = slot.at - now
    log.info("%s: request %d → %s%s; order %s%s%s%s", _what(call), call.attempts, slot.provider,
             f" in {wait:.1f} s (its next free slot)" if wait > 0.25 else "", " > ".join(names),
             _order_why(router, call, names), f"; passed over: {', '.join(passed)}" if passed else "",
             f"; already failed in this request: {', '.join(sorted(call.excluded))}" if call.excluded else "")


def failed(name: str, info: ErrorInfo, then: str) -> None:
    """A failed attempt: its HTTP status, kind and message, and what the router does about it."""
    status = f"HTTP {info.status}" if info.status is not None else "no HTTP status"
    log.info("%s failed (%s, %s): %s → %s", name, status, info.kind.value, info.message[:300], then)


def exhausted(call: Call, reasons: Mapping[str, str], retry_at: datetime | None) -> None:
    """No provider is left for this request (the node's fallback takes over)."""
    when = f"the earliest frees up at {clock(retry_at.timestamp())}" if retry_at else "none will free up"
    log.info("%s: no provider left for this request (%s): %s", _what(call), when,
             "; ".join(f"{k}: {v}" for k, v in reasons.items()) or "none configured")
