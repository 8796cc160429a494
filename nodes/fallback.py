"""fallback: keep the run alive when an LLM node could not get an answer.

* quota (every provider out): if one frees up within ``fallback.max_wait_seconds``,
  sleep and retry the node; otherwise pause the thread as ``waiting_for_quota``
  with ``resume_after`` (the ``wait_for_quota`` node interrupts; ``resume`` goes on).
* outage (every provider failing: 5xx, timeouts, garbage): retry the node up to
  ``fallback.max_retries`` times after ``retry_delay_seconds``, then pause like
  quota, resumable after ``failure_cooldown_seconds`` — a provider that is down
  must not eat the day's requests in a retry loop.
* other failures (unparsable answers, every key rejected): retry the node up to
  ``fallback.max_retries`` times, then finish the run as failed.
Completed tasks are never dropped.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt

from free_llm_agent.graph.context import Context
from free_llm_agent.graph.state import Fallback, State
from free_llm_agent.runtime.deps import Deps

_log = logging.getLogger(__name__)
Target = Literal["plan", "write_code", "reflect", "wait_for_quota", "finalize"]


def fallback(state: State, runtime: Runtime[Context], *, deps: Deps) -> Command[Target]:
    fb = state.get("fallback") or Fallback(node="plan", kind="error", error="", retry_at=None, failures=1)
    node = fb["node"]
    settings = deps.fallback_settings()
    if fb["kind"] == "quota" and fb["retry_at"]:
        retry_at = datetime.fromisoformat(fb["retry_at"])
        wait = (retry_at - datetime.now(UTC)).total_seconds()
        if wait <= settings.max_wait_seconds:
            _log.info("%s: every provider is out of quota; waiting %.0f s for the first to free up, then %s again",
                      node, max(0.0, wait), node)
            time.sleep(max(0.0, wait))
            return Command(goto=node)
        _log.info("%s: every provider is out of quota until %s (longer than fallback.max_wait_seconds): pausing the "
                  "thread", node, fb["retry_at"])
        return Command(goto="wait_for_quota", update={"status": "waiting_for_quota", "resume_after": fb["retry_at"]})
    if fb["kind"] == "dead":  # no provider will answer (keys rejected): say so now, not after the retries
        _log.info("%s: every provider's key was rejected: the run fails now (no retry)", node)
        return Command(goto="finalize", update={"status": "failed"})
    if fb["failures"] <= settings.max_retries:
        _log.info("%s failed (%s: %s); retry %d of %d in %.0f s", node, fb["kind"], fb["error"][:300], fb["failures"],
                  settings.max_retries, settings.retry_delay_seconds)
        time.sleep(settings.retry_delay_seconds)
        return Command(goto=node)
    _log.info("%s failed %d times (%s: %s): no retry left", node, fb["failures"], fb["kind"], fb["error"][:300])
    if fb["kind"] == "outage":
        resume_after = datetime.now(UTC) + timedelta(seconds=settings.failure_cooldown_seconds)
        return Command(
            goto="wait_for_quota", update={"status": "waiting_for_quota", "resume_after": resume_after.isoformat()}
        )
    return Command(goto="finalize", update={"status": "failed"})


def wait_for_quota(state: State) -> Command[Literal["plan", "write_code", "reflect"]]:
    """Pause until the user resumes (``resume THREAD_ID``), then retry the node that ran dry."""
    fb = state.get("fallback")
    interrupt(
        {
            "type": "waiting_for_quota",
            "resume_after": state.get("resume_after"),
            "node": fb["node"] if fb else None,
            "kind": fb["kind"] if fb else "quota",  # "outage": the providers failed, their quota is not spent
            "reason": fb["error"] if fb else "",
        }
    )
    return Command(goto=fb["node"] if fb else "plan", update={"status": "running", "resume_after": None})
