"""``forecast GOAL`` and ``run --dry-run GOAL``: the requests a goal is likely to need against the quota left,
and when it would finish (:mod:`runtime.forecast`). Nothing is sent to any provider and no thread is made."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from typing import Any

from free_llm_agent.cli.support import BadInput, router_for, runner_for
from free_llm_agent.config import load_config


def cmd_forecast(args: argparse.Namespace) -> int:
    from free_llm_agent.config.text import escaped, undecodable
    from free_llm_agent.runtime.forecast import forecast
    from free_llm_agent.runtime.forecast_inputs import past_runs, providers_now

    goal = str(args.goal)
    if not goal.strip():
        raise BadInput('the goal is empty: give it as text, e.g. forecast "count the words in README.md"')
    if (at := undecodable(goal)) is not None:
        raise BadInput(f"the goal holds bytes that are not UTF-8 (character {at + 1}: {escaped(goal[at])}); "
                       "write it as UTF-8 text")
    config = load_config(getattr(args, "config_dir", None))
    router = router_for(args, config=config)
    runner = runner_for(args)
    try:
        history = past_runs(runner)
    finally:
        runner.close()
    now = time.time()
    opt = config.limits.optimization
    report = forecast(goal, history, providers_now(router, now), now=now, batch=opt.max_batch_size,
                      margin=opt.window_margin_seconds)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        _print(report)
    return 0


def _when(iso: str) -> str:
    from free_llm_agent.runtime.forecast import clock_text

    return clock_text(datetime.fromisoformat(iso).timestamp(), time.time())


def _left(value: int | None) -> str:
    return "no limit" if value is None else str(value)


def _print(report: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from free_llm_agent.cli.support import out

    exp = report["expected_requests"]
    span = str(exp["typical"]) if exp["low"] == exp["high"] else f"{exp['typical']} ({exp['low']}–{exp['high']})"
    out.print(Text.assemble(("expected requests: ", "bold"), span, (f"   {exp['basis']}", "dim")))
    table = Table("provider", "left now", "per minute", "resets (left after)", "would take")
    for row in report["providers"]:
        resets = ", ".join(f"{r['window']} {_when(r['at'])} → {_left(r['left'])}" for r in row["resets"])
        table.add_row(Text(row["name"]), _left(row["left_now"]), _left(row["per_minute"]), resets or "-",
                      str(row["would_take"]))
    out.print(table)
    verdict = report["verdict"]
    out.print(Text.assemble(("verdict: ", "bold"), (verdict["reason"], "green" if verdict["fits_now"] else "yellow")))
