"""``doctor [--repair] [--json]``: runs the storage backend's checks (:mod:`storage.doctor`) and prints the report.

The checks return findings and never print; this module is where they become lines (or JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from free_llm_agent.storage.doctor import Report


def cmd_doctor(args: argparse.Namespace) -> int:
    from free_llm_agent.cli.support import BadInput, database_url, hint, out
    from free_llm_agent.config import resolve_home
    from free_llm_agent.storage.doctor import SpaceCheck, run_doctor
    from free_llm_agent.storage.errors import StateUnavailable
    from free_llm_agent.storage.registry import doctor_checks

    home, url = resolve_home(getattr(args, "home", None)), database_url(args)
    try:
        space = SpaceCheck({"home": home, "working directory": Path.cwd()})
        report = run_doctor(home, [*doctor_checks(url, home), space], repair=args.repair, database_url=url)
    except StateUnavailable as exc:
        raise BadInput(str(exc)) from None
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print_report(report, out, hint(args, "doctor", "--repair"))
    return report.exit_code


def print_report(report: Report, console: Any, repair_hint: str) -> None:
    """The report as lines on ``console`` (a rich Console); text is never read as markup."""
    console.print(f"doctor: {report.home}" + (f" and {report.database}" if report.database else ""),
                  style="bold", markup=False)
    for line in report.actions:
        console.print(f"  repaired: {line}", style="green", markup=False)
    if report.repaired:
        console.print("after the repair:", style="bold", markup=False)
    for f in report.findings:
        if f.ok:
            console.print(f"  ok       {f.subject:<28} {f.detail}", markup=False)
        else:
            console.print(f"  PROBLEM  {f.subject:<28} {f.problem}", style="red", markup=False)
            if f.fix:
                console.print(f"  {'':<37}fix: {f.fix}", style="dim", markup=False)
    problems = report.problems
    if not problems:
        console.print("healthy" + (" after repair" if report.repaired else ""), style="green", markup=False)
    elif any(f.repairable for f in problems) and not report.repaired:
        console.print(f"{len(problems)} problem(s); repair with: {repair_hint}", style="yellow", markup=False)
    else:
        console.print(f"{len(problems)} problem(s) left: see the fix of each", style="yellow", markup=False)


def state_error_fix(kind: str, path: Path, repair_hint: str) -> str:
    """The fix line the CLI prints under a damaged-state or unwritable-state error."""
    if kind == "full":
        return "fix: free space there, or use --home elsewhere (or FREE_AGENT_HOME); this command changed nothing"
    if kind == "damaged":
        kept = "the quota records it can read" if path.name == "agent.db" else "every readable thread"
        return f"fix: run `{repair_hint}` (moves it aside, keeping {kept}); this command changed nothing"
    return f"fix: choose a writable --home (or FREE_AGENT_HOME), or make {path.parent} writable"
