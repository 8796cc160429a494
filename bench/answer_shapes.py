"""LLM requests per completed goal for the tool-call corpus (issue 18), per shape class.

Every ``TOOLCALL_ANSWERS`` entry runs the 4-task goal of ``tests/test_corpus_toolcalls.py``
(``test_tool_call_answer_completes_its_goal_without_a_repair``) with batch size 2, without pytest:
the same ``ToolCallResponder``, ``start`` and ``run_goal`` (``tests/support/corpus.py``), with the
loopback fake and the config written here. Nothing is asserted; per entry it records whether the
goal completed (status "completed", all 4 tasks done), the POSTs the fake got, whether a repair
prompt was sent and whether a task was judged by its exit status only (``unjudged``, or a "judged by
exit status" error), and, for a completed goal, whether a plan or code was misread (tasks not PLAN4,
a task's code not printing its description or not in the entry's language). A crash counts as not
completed. Run it in each checkout, then compare::

    uv run python bench/answer_shapes.py --out /var/tmp/shapes-before.json   # in the old checkout
    uv run python bench/answer_shapes.py --out /var/tmp/shapes-after.json    # in the new one
    uv run python bench/answer_shapes.py --compare /var/tmp/shapes-before.json /var/tmp/shapes-after.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.provider_server import FakeProvider
from tests.support.config import write_config
from tests.support.corpus import ToolCallResponder, posts, run_goal, start
from tests.support.corpus_toolcalls import PLAN4, TOOLCALL_ANSWERS, ToolAnswer

BATCH_SIZE = 2
Row = dict[str, Any]
# Shape classes: the first rule whose substrings occur in the entry's id wins (order matters:
# "plan-as-string" is a reshaped plan, "plan-list-as-string" an encoding; "-one-" not "done-caps").
CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tool_use_failed (Groq 400)", ("tool-use-failed",)),
    ("split: call + text", ("split-call",)),
    ("truncated arguments", ("truncated",)),
    ("ids renumbered from 1", ("ids-from-1",)),
    ("one call per task / bare items", ("-one-", "bare-items")),
    ("wrapper (name/properties/arguments)", ("wrapped", "under-properties", "arguments-wrapper")),
    ("synonyms / enum (language, ids)", ("language-",)),
    ("reshaped: plan objects/steps/string, verdict map", ("task-objects", "plan-steps", "plan-as-string",
                                                           "mapping-by-id")),
    ("encoding: double/py-literal/as-string/args-list", ("double-encoded", "python-literal", "as-string",
                                                          "args-a-list")),
    ("call in text (content/tags/fenced/envelope)", ("content", "tag", "fenced", "in-text", "bare-verdicts")),
)


def shape_of(entry_id: str) -> str:
    for name, needles in CLASSES:
        if any(n in entry_id for n in needles):
            return name
    raise ValueError(f"no shape class for {entry_id!r}")


def run_entry(answer: ToolAnswer, base: Path) -> Row:
    """One goal for ``answer``; what it cost and how it ended (a crash: not completed)."""
    started: list[FakeProvider] = []
    counter = iter(range(100))

    def fake_server(kind: str, **kwargs: Any) -> FakeProvider:
        started.append(FakeProvider(kind, **kwargs).start())
        return started[-1]

    def make_config(providers: Mapping[str, Mapping[str, Any]], **kw: Any) -> Path:
        directory, env = write_config(base / f"config{next(counter)}", providers, **kw)
        os.environ.update(env)
        return directory

    home = base / "home"
    home.mkdir()
    responder = ToolCallResponder(answer)
    row: Row = {"id": answer.id, "kind": answer.kind, "family": answer.family, "shape": shape_of(answer.id),
                "completed": False, "requests": 0, "repair": False, "unjudged": False, "misread": False,
                "status": "", "error": ""}
    llm = None
    try:
        llm, _fake, _name = start(fake_server, make_config, home, answer.family, responder)
        state, executor = run_goal(llm, home, batch_size=BATCH_SIZE)
        tasks = state.get("tasks", [])
        row["completed"] = state.get("status") == "completed" and [t.get("status") for t in tasks] == ["done"] * 4
        row["unjudged"] = any(t.get("unjudged") for t in tasks) or any(
            "exit status" in e for e in state.get("errors", []))
        row["misread"] = row["completed"] and (  # a plan or code not the one sent (the test's assert_read_as_sent)
            [t["description"] for t in tasks] != list(PLAN4) or (answer.kind == "code" and any(
                t["description"] not in t.get("code", "") or t.get("language") != answer.language for t in tasks)))
        row["status"] = state.get("status")
        row["runs"] = len(executor.runs)
        row["llm_calls"] = sum(state.get("llm_calls", {}).values())
        if not row["completed"]:
            row["error"] = f"status={state.get('status')} tasks={[t.get('status') for t in tasks]}"
    except Exception as exc:  # a crash is a failed goal
        row["error"] = f"crash: {type(exc).__name__}: {str(exc)[:300]}"
        traceback.print_exc(file=sys.stderr)
    finally:
        row["requests"] = sum(posts(fp) for fp in started)
        row["repair"] = any(repair for _, repair in responder.log)
        if llm is not None:
            llm.router.db.close()
        for fp in started:
            fp.stop()
    return row


def run_all(only: str | None = None) -> list[Row]:
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                "FREE_AGENT_CONFIG_DIR", "FREE_AGENT_HOME", "FREE_AGENT_DATABASE_URL", "LANGSMITH_TRACING"):
        os.environ.pop(var, None)
    rows: list[Row] = []
    for answer in TOOLCALL_ANSWERS:
        if only and only not in answer.id:
            continue
        with tempfile.TemporaryDirectory(prefix="shapes-") as tmp:
            rows.append(run_entry(answer, Path(tmp)))
        r = rows[-1]
        print(f"{r['id']:34} completed={r['completed']!s:5} requests={r['requests']:2} repair={r['repair']!s:5} "
              f"unjudged={r['unjudged']!s:5} misread={r['misread']!s:5} {r['error']}", file=sys.stderr)
    return rows


def summary(rows: list[Row]) -> dict[str, dict[str, Any]]:
    """Per shape class: entries, completed, requests per completed goal, mean per goal, repairs, unjudged."""
    out: dict[str, dict[str, Any]] = {}
    for name in [c for c, _ in CLASSES] + ["all"]:
        mine = [r for r in rows if name in ("all", r["shape"])]
        done = [r for r in mine if r["completed"]]
        out[name] = {
            "entries": len(mine), "completed": len(done),
            "req_per_completed": round(sum(r["requests"] for r in done) / len(done), 2) if done else None,
            "req_per_goal": round(sum(r["requests"] for r in mine) / len(mine), 2) if mine else None,
            "repairs": sum(r["repair"] for r in mine), "unjudged": sum(r["unjudged"] for r in mine),
            "misread": sum(r["misread"] for r in mine),
        }
    return out


def _fmt(value: object) -> str:
    return "–" if value is None else str(value)


def table(before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The markdown table: one checkout's columns, or before and after side by side."""
    def cols(s: Mapping[str, Any]) -> list[str]:
        return [str(s["completed"]), f"{_fmt(s['req_per_completed'])} ({_fmt(s['req_per_goal'])})"]

    head = ["class", "entries", "completed", "req/completed goal (mean req/goal)", "repairs", "unjudged", "misread"]
    if after is not None:
        head = ["class", "entries", "completed before", "req/completed goal before (mean req/goal)", "completed after",
                "req/completed goal after (mean req/goal)", "repairs before/after", "unjudged before/after",
                "misread before/after"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, b in before.items():
        if not b["entries"]:
            continue
        if after is None:
            cells = [name, str(b["entries"]), *cols(b), *(str(b[k]) for k in ("repairs", "unjudged", "misread"))]
        else:
            a = after[name]
            cells = [name, str(b["entries"]), *cols(b), *cols(a),
                     *(f"{b[k]}/{a[k]}" for k in ("repairs", "unjudged", "misread"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write this checkout's rows and summary as JSON here")
    parser.add_argument("--only", help="run only the entries whose id contains this")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="print the before/after table of two --out files (runs nothing)")
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(p.read_text(encoding="utf-8"))["summary"] for p in args.compare)
        print(table(before, after))
        print(json.dumps({"before": before, "after": after}))
        return 0
    rows = run_all(args.only)
    totals = summary(rows)
    if args.out:
        args.out.write_text(json.dumps({"batch_size": BATCH_SIZE, "summary": totals, "rows": rows}, indent=1),
                            encoding="utf-8")
    print(table(totals))
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
