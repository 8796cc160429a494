"""Run a thread to its end, waiting out dry spells of quota (``run --wait``, ``resume --wait``, a batch).

When every provider is out of quota the graph pauses the thread as ``waiting_for_quota`` with
``resume_after``: the earliest time the quota ledger lets a request go (``earliest`` in
:mod:`providers.ledger`: the sliding minute plus its margin, the calendar day and month, cooldowns).
:func:`run_to_end` runs or resumes a thread and, with a :class:`WaitPolicy`, sleeps until that time
(one sleep per report, no polling) and resumes the thread as ``resume`` would, as often as needed,
holding the thread's lock throughout. It stops as a plain pause (the thread stays ``waiting_for_quota``
with its ``resume_after``, resumable later) when:

* the policy's total wait (``max_total_s``, ``--wait-max``) would be exceeded by the next wait
  (waiting part of it would gain nothing: the quota is still dry when the budget ends);
* the wait is interrupted: Ctrl-C (``KeyboardInterrupt`` raised in the sleep) or the policy's
  ``stop`` event (another thread, e.g. a batch shutting down);
* the pause has no ``resume_after`` to wait for;
* every provider failed (5xx, timeouts: an outage, not a spent quota) ``max_outages`` times in a row: waiting
  longer would only spend requests on providers that are down.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from free_llm_agent.runtime.runner import Approver, Listener, Runner, RunResult

# Slept past ``resume_after``: the ledger's time is already the first moment a request fits (it holds the
# sliding minute's margin); this only keeps a clock's rounding from waking a hair early.
WAKE_AFTER_S = 0.05

Phase = Literal["waiting", "tick", "resuming", "over_budget", "gave_up", "stopped"]


MAX_OUTAGES = 3  # pauses in a row because every provider failed (not quota) that are waited out; then stop


def outage_pause(result: Any) -> bool:
    """Whether a paused run stopped because every provider failed (5xx, timeouts), not for spent quota."""
    return bool((getattr(result, "interrupt", None) or {}).get("kind") == "outage")


@dataclass(frozen=True)
class WaitEvent:
    """What the waiting tells its watcher (the progress panel, ``--json``'s stderr lines, a batch table).

    ``waiting``: a wait starts; ``tick``: still waiting (every ``report_every_s``); ``resuming``: the wait
    is over, the thread goes on; ``over_budget``: the next wait would pass ``max_total_s``, the thread stays
    paused; ``gave_up``: no time to wait for, or providers failing again and again, the thread stays paused;
    ``stopped``: Ctrl-C or the stop event ended the wait, the thread stays paused."""

    phase: Phase
    thread_id: str
    until: float | None  # epoch seconds the quota frees up (the thread's resume_after)
    left_s: float  # seconds from now until then (0 once over)
    waited_s: float  # seconds waited so far in this call, in total
    reason: str = ""


WaitListener = Callable[[WaitEvent], None]


@dataclass
class WaitPolicy:
    """How :func:`run_to_end` waits: at most ``max_total_s`` seconds in total (None: as long as it takes),
    a report every ``report_every_s`` seconds of a wait; ``stop`` set from another thread ends a wait (the
    thread stays paused). ``clock`` and ``sleep`` are the real ones unless a test gives its own."""

    max_total_s: float | None = None
    report_every_s: float = 60.0
    stop: threading.Event | None = None
    max_outages: int = MAX_OUTAGES  # pauses for failing providers (not for quota) waited out in a row, at most
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] | None = None  # None: time.sleep, or stop.wait when there is a stop event

    def _nap(self, seconds: float) -> bool:
        """Sleep ``seconds``; False when the stop event ended it."""
        if self.sleep is not None:
            self.sleep(seconds)
        elif self.stop is not None:
            return not self.stop.wait(seconds)
        else:
            time.sleep(seconds)
        return not (self.stop is not None and self.stop.is_set())


def resume_time(result: RunResult) -> float | None:
    """``result.resume_after`` as epoch seconds (None when the thread is not waiting for quota or names no time)."""
    if result.status != "waiting_for_quota" or not result.resume_after:
        return None
    try:
        return datetime.fromisoformat(result.resume_after).timestamp()
    except ValueError:
        return None


def run_to_end(
    runner: Runner,
    thread_id: str,
    *,
    goal: str | None = None,
    approver: Approver | None = None,
    listener: Listener | None = None,
    policy: WaitPolicy | None = None,
    on_wait: WaitListener | None = None,
) -> RunResult:
    """Run ``goal`` on the new thread ``thread_id`` (or, without a goal, resume the thread) until it completes,
    fails, waits for approval — or pauses for quota and ``policy`` is None or says stop (see the module).

    With a policy, each pause for quota is slept out until its ``resume_after`` and the thread resumed, the
    thread lock held all along (no other process takes the thread in between). The result is the last
    run's: a thread left paused is exactly as a run without waiting leaves it."""
    notify = on_wait or (lambda event: None)
    waited = [0.0]  # seconds slept in this call, in total (what max_total_s bounds)
    outages = 0  # pauses in a row because every provider failed
    with runner.deps.lock(thread_id, runner.owner):
        if goal is not None:
            result = runner.run(goal, thread_id, approver=approver, listener=listener)
        else:
            if policy is not None:  # a thread paused until later: wait first (the graph would only pause again)
                paused = runner.result(thread_id)
                if (resume_time(paused) or 0.0) > policy.clock() and not _wait_out(policy, paused, notify, waited):
                    return paused
            result = runner.resume(thread_id, approver=approver, listener=listener)
        while policy is not None and result.status == "waiting_for_quota":
            outages = outages + 1 if outage_pause(result) else 0
            if outages > policy.max_outages:
                notify(WaitEvent("gave_up", thread_id, resume_time(result), 0.0, waited[0],
                                 f"every provider failed {outages} times in a row (an outage, not quota)"))
                return result
            if not _wait_out(policy, result, notify, waited):
                return result
            result = runner.resume(thread_id, approver=approver, listener=listener)
    return result


def _wait_out(policy: WaitPolicy, result: RunResult, notify: WaitListener, waited: list[float]) -> bool:
    """Sleep until the paused ``result`` may go on (adding the time slept to ``waited[0]``); False when the
    thread is to stay paused instead."""
    until = resume_time(result)
    tid = result.thread_id
    if until is None:
        notify(WaitEvent("gave_up", tid, None, 0.0, waited[0], "the pause names no time to wait for"))
        return False
    need = max(0.0, until - policy.clock()) + WAKE_AFTER_S
    if policy.max_total_s is not None and waited[0] + need > policy.max_total_s:
        notify(WaitEvent("over_budget", tid, until, need, waited[0],
                         f"the quota frees up in {need:.0f} s, past the {policy.max_total_s:.0f} s allowed"))
        return False
    try:  # from the first word of the wait on, Ctrl-C leaves the thread paused
        notify(WaitEvent("waiting", tid, until, need, waited[0]))
        while True:
            now = policy.clock()
            left = until + WAKE_AFTER_S - now
            if left <= 0:
                break
            nap = min(left, max(policy.report_every_s, 0.1))
            started = now
            awake = policy._nap(nap)
            waited[0] += max(0.0, policy.clock() - started)
            if not awake:
                notify(WaitEvent("stopped", tid, until, max(0.0, until - policy.clock()), waited[0],
                                 "stopped"))
                return False
            if until + WAKE_AFTER_S - policy.clock() > 0:
                notify(WaitEvent("tick", tid, until, until - policy.clock(), waited[0]))
    except KeyboardInterrupt:  # Ctrl-C while waiting: the thread stays paused, as without --wait
        notify(WaitEvent("stopped", tid, until, max(0.0, until - policy.clock()), waited[0], "Ctrl-C"))
        return False
    notify(WaitEvent("resuming", tid, until, 0.0, waited[0]))
    return True


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``90s``, ``10m``, ``2h``, ``1d``, ``1h30m`` (or plain seconds, ``90``) as seconds; ValueError otherwise."""
    import re

    raw = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return float(raw)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", raw)
    if not parts or re.sub(r"\s+", "", "".join(n + u for n, u in parts)) != re.sub(r"\s+", "", raw):
        raise ValueError(f"{text!r} is not a duration: write it as 90s, 10m, 2h, 1d or 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def left_text(seconds: float) -> str:
    """``45s``, ``4m 05s``, ``2h 03m``: a wait's length as a countdown shows it."""
    s = max(0, math.ceil(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"
