"""``demo``: a complete run without a key and without a network, in its own home and sample folder; and the
scripted server answering each of the agent's requests (plan, code, reflection, their repairs, a plain ping)
through the agent's own model and readers."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import BaseModel

from free_llm_agent.cli.commands_demo import PROVIDER, write_config
from free_llm_agent.demo import sample
from free_llm_agent.demo.answers import answer, purpose_of
from free_llm_agent.demo.server import DemoServer
from free_llm_agent.nodes import prompts
from free_llm_agent.nodes.llm import Asked, ask
from free_llm_agent.nodes.parsing import parse_code_batch, parse_plan
from free_llm_agent.nodes.parsing_review import parse_review
from free_llm_agent.nodes.schemas import CodeBatch, Plan, Review
from free_llm_agent.providers import build_chat_model
from tests.support.cli import cli_in_process
from tests.support.paths import CLI

pytestmark = pytest.mark.timeout(180)


# ------------------------------------------------------------------------------------- the whole demo

def _isolating_launcher() -> list[str]:
    """argv prefix running a command in a new network namespace with only loopback up; skips without one."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare or ip is not installed: no network namespace to run the demo in")
    for flags in ("-n", "-rn"):  # as root; else as root of a new user namespace
        launcher = ["unshare", flags, "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
        probe = subprocess.run([*launcher, "ip", "-o", "link"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            links = [line.split(":")[1].strip() for line in probe.stdout.splitlines()]
            assert links == ["lo"], probe.stdout  # the namespace has no way out
            return launcher
    pytest.skip(f"cannot make a network namespace here (unshare -n / -rn: {probe.stderr.strip()})")


def _no_keys_env(**paths: Path) -> dict[str, str]:
    """The environment without any key, proxy or agent variable, with the given paths set."""
    dropped = re.compile(r".*(_API_KEY|_TOKEN|_KEY)$|.*PROXY$|FREE_AGENT_.*|LANGCHAIN_.*|LANGSMITH_.*",
                         re.IGNORECASE)
    env = {k: v for k, v in os.environ.items() if not dropped.fullmatch(k)}
    return env | {name: str(path) for name, path in paths.items()}


def _totals(data: Path) -> dict[str, tuple[int, int, Decimal]]:
    """Sales, units and revenue per region, computed here from the CSV."""
    sales: dict[str, int] = defaultdict(int)
    units: dict[str, int] = defaultdict(int)
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    with data.open(newline="") as f:
        for row in csv.DictReader(f):
            sales[row["region"]] += 1
            units[row["region"]] += int(row["units"])
            revenue[row["region"]] += int(row["units"]) * Decimal(row["unit_price"])
    return {r: (sales[r], units[r], revenue[r]) for r in sales}


def _report_rows(report: Path) -> dict[str, tuple[int, int, Decimal]]:
    rows = {}
    for line in report.read_text().splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].isdigit():
            rows[cells[0]] = (int(cells[1]), int(cells[2]), Decimal(cells[3].replace(",", "")))
    return rows


@pytest.fixture
def user(var_tmp: Path) -> Iterator[dict[str, Path]]:
    """The user's folders (home, config, agent home, temp, current folder), all empty."""
    made = {name: var_tmp / name for name in ("home", "xdg", "agent_home", "tmp", "cwd")}
    for path in made.values():
        path.mkdir()
    yield made


def _contents(folders: dict[str, Path], *names: str) -> dict[str, list[str]]:
    return {n: sorted(str(p.relative_to(folders[n])) for p in folders[n].rglob("*")) for n in names}


def test_demo_completes_offline_without_a_key_and_touches_nothing_of_the_user(user: dict[str, Path]) -> None:
    env = _no_keys_env(HOME=user["home"], XDG_CONFIG_HOME=user["xdg"], FREE_AGENT_HOME=user["agent_home"],
                       TMPDIR=user["tmp"])
    proc = subprocess.run([*_isolating_launcher(), *CLI, "demo", "--yes", "--json"], capture_output=True,
                          text=True, timeout=150, cwd=user["cwd"], env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "completed" and out["demo"] is True and "no LLM and no key" in out["note"]
    assert [t["status"] for t in out["tasks"]] == ["done", "done", "done"]
    assert out["llm_calls"] == {PROVIDER: 3}  # plan, one batch of code, one reflection
    assert {"thread_id", "goal", "tasks", "summary", "cache_hits", "resume_after", "folder", "report",
            "seconds"} <= set(out)
    folder = Path(out["folder"])
    assert Path(out["report"]) == folder / "report.md"
    expected = _totals(folder / "sales.csv")
    rows = _report_rows(folder / "report.md")
    assert {r: rows[r] for r in expected} == expected
    assert rows["Total"] == (sum(v[0] for v in expected.values()), sum(v[1] for v in expected.values()),
                             sum((v[2] for v in expected.values()), Decimal()))
    assert list(rows)[: len(expected)] == sorted(expected, key=lambda r: expected[r][2], reverse=True)
    # Everything is in one fresh folder under the temp dir (beside the sandbox's own runtime folder, as in any
    # run); nothing of the user's was created or changed.
    made = [p for p in user["tmp"].iterdir() if p.name.startswith("free-llm-agent-demo-")]
    assert len(made) == 1 and folder.parent == made[0] and (made[0] / "home" / "agent.db").is_file()
    assert _contents(user, "home", "xdg", "agent_home", "cwd") == {"home": [], "xdg": [], "agent_home": [],
                                                                   "cwd": []}


def test_demo_with_home_and_workdir_writes_only_there_and_asks_without_yes(user: dict[str, Path],
                                                                           var_tmp: Path) -> None:
    home, folder = var_tmp / "demo-home", var_tmp / "project"
    folder.mkdir()
    env = _no_keys_env(HOME=user["home"], XDG_CONFIG_HOME=user["xdg"], TMPDIR=user["tmp"])
    argv = [*CLI, "--home", str(home), "demo", "--workdir", str(folder)]

    def demo(*more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*argv, *more], capture_output=True, text=True, timeout=150, cwd=user["cwd"],
                              env=env, stdin=subprocess.DEVNULL)

    # Not a terminal and no --yes: as with `run`, the first approval pauses the run (exit 0); nothing ran.
    paused = demo()
    assert paused.returncode == 0, paused.stderr
    assert "demo: answers come from a scripted local server, no LLM and no key involved" in paused.stderr
    assert "awaiting_approval" in paused.stderr and "--yes" in paused.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["sales.csv"]
    done = demo("--yes")  # the same folder: its sales.csv (the demo's own) is no obstacle
    assert done.returncode == 0, done.stderr
    assert "demo: completed in" in done.stderr and "| **Total** |" in done.stderr  # the report, shown
    assert "keys set" in done.stderr and " init " in done.stderr  # the next steps
    assert sorted(p.name for p in folder.iterdir()) == ["report.md", "sales.csv"]
    assert (home / "demo-config" / "providers.yaml").is_file() and (home / "agent.db").is_file()
    assert not [p for p in user["tmp"].iterdir() if p.name.startswith("free-llm-agent-demo-")]
    assert _contents(user, "home", "xdg", "cwd") == {"home": [], "xdg": [], "cwd": []}
    # A report already there is not overwritten.
    report = (folder / "report.md").read_text()
    again = demo("--yes")
    assert again.returncode == 2 and "report.md" in again.stderr and "Traceback" not in again.stderr
    assert (folder / "report.md").read_text() == report


def test_demo_refuses_a_config_dir_and_a_missing_workdir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli_in_process(["demo", "--yes"], capsys, config=tmp_path)
    assert code == 2 and "--config-dir is not used" in err
    code, _, err = cli_in_process(["demo", "--workdir", str(tmp_path / "nope")], capsys, home=tmp_path / "h")
    assert code == 2 and "no such folder" in err
    assert not (tmp_path / "h").exists()


# ------------------------------------------------------------------------------------- the server


@pytest.fixture
def server() -> Iterator[DemoServer]:
    with DemoServer() as started:
        yield started


@pytest.fixture
def llm(server: DemoServer, tmp_path: Path) -> Any:
    """The agent's own model (QuotaAwareChatModel) on the demo's configuration and server."""
    return build_chat_model(write_config(tmp_path / "config", server.base_url), tmp_path / "home", offline=True)


def _ask(llm: Any, schema: type[BaseModel], messages: list[Any], parse: Any) -> Any:
    return ask(llm, schema, messages, parse, task_type="general", purpose="test", asked=Asked())


BATCH = [{"id": i, "description": d} for i, d in enumerate(sample.TASKS, start=1)]
WHERE = prompts.workdir("/work/sales-demo", "  sales.csv (2.1 KB)")


def test_server_answers_the_agents_plan_code_and_reflection(llm: Any, server: DemoServer) -> None:
    plan = _ask(llm, Plan, prompts.plan(sample.GOAL, WHERE), parse_plan)
    assert plan.tasks == list(sample.TASKS)
    batch = _ask(llm, CodeBatch, prompts.code(sample.GOAL, BATCH[1:], BATCH[:1], WHERE),
                 lambda t: parse_code_batch(t, [2, 3]))
    assert [(i.task_id, i.code.strip()) for i in batch.items] == [(2, sample.TOTALS_CODE.strip()),
                                                                 (3, sample.REPORT_CODE.strip())]
    ran = [{**BATCH[0], "status": "done", "output": "rows: 60"},
           {**BATCH[1], "status": "failed", "error": "exit status 1", "output": "KeyError: 'region'"},
           {**BATCH[2], "status": "done", "output": "wrote report.md", "changes": []}]
    review = _ask(llm, Review, prompts.reflect(sample.GOAL, ran), lambda t: parse_review(t, [1, 2, 3]))
    assert [(v.task_id, v.verdict) for v in review.verdicts] == [(1, "done"), (2, "retry"), (3, "done")]
    assert review.verdicts[1].hint and review.decision == "continue"
    assert server.answered == ["plan", "code", "reflect"]  # one request each: every answer was usable at once


def test_server_answers_a_new_plan_with_what_is_left_and_a_report_not_written_is_retried(llm: Any) -> None:
    history = [{"id": 1, "description": sample.INSPECT, "status": "done", "output": "rows: 60"},
               {"id": 2, "description": sample.TOTALS, "status": "failed", "output": "Traceback"}]
    plan = _ask(llm, Plan, prompts.replan(sample.GOAL, history, "fix the totals", WHERE), parse_plan)
    assert plan.tasks == [sample.TOTALS, sample.REPORT]
    ran = [{**BATCH[2], "status": "done", "output": "done", "changes": []}]  # ran, but wrote no report
    review = _ask(llm, Review, prompts.reflect(sample.GOAL, ran), lambda t: parse_review(t, [3]))
    assert [v.verdict for v in review.verdicts] == ["retry"]


@pytest.mark.parametrize("schema", [Plan, CodeBatch, Review])
def test_server_answers_a_repair_question_without_tools_and_a_stream(llm: Any, schema: type[BaseModel]) -> None:
    question = {Plan: prompts.plan(sample.GOAL, WHERE), CodeBatch: prompts.code(sample.GOAL, BATCH, [], WHERE),
                Review: prompts.reflect(sample.GOAL, [{**t, "status": "done", "output": "wrote report.md"}
                                                      for t in BATCH])}[schema]
    parse: dict[type[BaseModel], Callable[[str], BaseModel]] = {
        Plan: parse_plan, CodeBatch: lambda t: parse_code_batch(t, [1, 2, 3]),
        Review: lambda t: parse_review(t, [1, 2, 3])}
    expected = {Plan: Plan(tasks=list(sample.TASKS)),
                CodeBatch: CodeBatch.model_validate({"items": [{"task_id": i, "code": sample.CODE[d].strip()}
                                                               for i, d in enumerate(sample.TASKS, start=1)]}),
                Review: Review.model_validate({"verdicts": [{"task_id": i, "verdict": "done"} for i in (1, 2, 3)]})}
    # What nodes/llm.py sends after an unreadable answer: the question, that answer, the repair prompt; no tools.
    repair = [*question, AIMessage("[]"), HumanMessage(prompts.repair(schema, "not JSON"))]
    assert parse[schema](llm.invoke(repair).content) == expected[schema]
    assert parse[schema]("".join(str(chunk.content) for chunk in llm.stream(repair))) == expected[schema]


def test_server_tells_purposes_apart_by_tool_then_by_words_and_answers_anything_else() -> None:
    def body(text: str, tool: str | None = None) -> dict[str, Any]:
        tools = [{"type": "function", "function": {"name": tool, "parameters": {}}}] if tool else []
        return {"messages": [{"role": "system", "content": prompts.SYSTEM}, {"role": "user", "content": text}],
                "tools": tools}

    plan_text = str(prompts.plan(sample.GOAL, WHERE)[-1].content)
    code_text = str(prompts.code(sample.GOAL, BATCH, [], WHERE)[-1].content)
    review_text = str(prompts.reflect(sample.GOAL, [{**BATCH[0], "status": "done", "output": ""}])[-1].content)
    assert [purpose_of(body(t)) for t in (plan_text, code_text, review_text)] == ["plan", "code", "reflect"]
    assert purpose_of(body(plan_text, tool="Review")) == "reflect"  # the declared tool decides
    assert [purpose_of(body(prompts.repair(s, "bad"))) for s in (Plan, CodeBatch, Review)] == \
        ["plan", "code", "reflect"]
    ping = answer(body("Say OK"))
    assert (ping.purpose, ping.kind, ping.content) == ("chat", "text", "OK")
    called = answer(body(code_text, tool="CodeBatch"))
    assert called.kind == "tool_call" and called.tool == "CodeBatch"
    assert [i["task_id"] for i in (called.arguments or {})["items"]] == [1, 2, 3]
