"""kill -9 at each node, then ``resume``: the thread completes, no answered request is paid twice,
no finished task runs twice (see ``tests.faults.kill_chain`` for how each kill point is reached).

The chain runs once per session (module fixture): one thread killed at every node in turn. Each
node's test reads what its kill left behind; the last test checks the whole run.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.fakes.provider_server import FakeProvider
from tests.faults.kill_chain import (
    BATCH,
    FINISHED_LINES,
    PLAN,
    RETRY_DELAY_S,
    Chain,
    Gate,
    Step,
    run_chain,
)
from tests.faults.report import FaultReport, Row
from tests.support.config import CLIENT_ENV_VARS, REAL_KEY_VARS, write_config

pytestmark = pytest.mark.timeout(600)

SUITE = "kill -9 at each node, then resume (one thread, real CLI + Open Interpreter)"
SUITE_TWO = "kill -9 at each node on one machine, resume on the other (two homes, one PostgreSQL)"
NODES = ("plan", "write_code", "approve", "run_task", "reflect", "fallback", "finalize")


@pytest.fixture(scope="module", params=["one machine", "two machines"])
def chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          fault_report: FaultReport) -> Iterator[Chain]:
    """The chain on one machine (SQLite in its home), and on two machines sharing one PostgreSQL
    database: each process runs in the other home than the one before, so every resume continues
    on the other machine what a ``kill -9`` stopped on the first."""
    two = request.param == "two machines"
    url = request.getfixturevalue("pg_cluster").create_database("kill") if two else None
    root = tmp_path_factory.mktemp("kill")
    home, logs = root / ("machine-a" if two else "home"), root / "logs"
    home.mkdir()
    logs.mkdir()
    other = root / "machine-b" if two else None
    workdir = root / "shared-folder" if two else None  # the same path on both (a scratch folder is local)
    for folder in (other, workdir):
        if folder is not None:
            folder.mkdir()
    gate = Gate()
    with FakeProvider("openai", responder=gate) as server:
        config_dir, keys = write_config(
            root / "config",
            {"groq_llama": {"kind": "groq", "base_url": server.base_url,
                            "limits": {"requests_per_minute": 100, "requests_per_day": 1000}}},
            optimization={"enable_caching": True, "max_batch_size": BATCH},
            fallback={"retry_delay_seconds": RETRY_DELAY_S},
        )
        env = {k: v for k, v in os.environ.items() if k not in (*REAL_KEY_VARS, *CLIENT_ENV_VARS)}
        env.update(keys, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        if url:
            env["FREE_AGENT_DATABASE_URL"] = url
        result = Chain(home, config_dir, env, server, gate, database_url=url, other_home=other,
                       workdir=workdir)
        started = time.monotonic()
        try:
            run_chain(result, logs)
        finally:
            gate.release()
        _report(result, fault_report, time.monotonic() - started)
        yield result


def _asked_again(chain: Chain) -> int:
    """Questions that got an answer and were asked (and answered) again."""
    counts = Counter(text for _, text in chain.gate.answered)
    return sum(n - 1 for n in counts.values())


def _report(chain: Chain, report: FaultReport, total_s: float) -> None:
    header = "answered requests asked again"
    suite = SUITE_TWO if chain.other_home is not None else SUITE
    for step in chain.steps:
        report.add(suite, Row(f"kill -9 at {step.node}", step.reached, "—", step.requests, step.seconds,
                              f"left the thread in {', '.join(step.next_nodes) or 'no node'} ({step.status})"),
                   faulty_header=header)
    completed = chain.final.get("status") == "completed"
    report.add(suite, Row("resume to the end", completed, _asked_again(chain),
                          sum(1 for r in chain.server.requests if r.method == "POST"), chain.final_seconds,
                          f"whole chain {total_s:.0f} s, {len(chain.steps) + 1} processes"), faulty_header=header)


def _step(chain: Chain, node: str) -> Step:
    step = next((s for s in chain.steps if s.node == node), None)
    if step is None:
        pytest.fail(f"the chain stopped before {node}: {chain.steps[-1].node if chain.steps else 'start'} "
                    f"failed: {chain.steps[-1].error if chain.steps else ''}")
    return step


@pytest.mark.parametrize("node", NODES)
def test_kill_9_at_node_leaves_a_resumable_thread(chain: Chain, node: str) -> None:
    step = _step(chain, node)
    assert step.reached, step.error
    if node == "finalize":  # killed just after the last answer was stored: in reflect, or in finalize
        assert step.next_nodes in (("reflect",), ("finalize",), ()), step.next_nodes
    else:
        assert step.next_nodes == (node,)
    if step.next_nodes:  # () only if the run had finished before the kill landed
        assert step.status == ("awaiting_approval" if node == "approve" else "interrupted")
    later = chain.steps[chain.steps.index(step) + 1:]
    assert later or chain.final.get("status") == "completed"  # the next resume carried the thread past it


def test_resume_after_every_kill_completes_and_nothing_is_paid_or_run_twice(chain: Chain) -> None:
    assert [s.node for s in chain.steps] == list(NODES), [s.error for s in chain.steps if s.error]
    final = chain.final
    assert final.get("status") == "completed" and final.get("exit_code") == 0, final
    assert [t["status"] for t in final["tasks"]] == ["done"] * len(PLAN)
    lines = chain.log_lines()
    assert [lines.count(line) for line in FINISHED_LINES] == [1] * len(FINISHED_LINES), lines
    assert _asked_again(chain) == 0, chain.gate.answered
    # plan + (code + review) per batch: every answer the thread needed was paid for exactly once
    kinds = Counter(kind for kind, _ in chain.gate.answered)
    assert kinds == {"plan": 1, "code": 2, "review": 2}


def test_each_process_ran_on_its_machine(chain: Chain) -> None:
    """Two machines: each process ran on the other one than the process before, and no home got SQLite
    checkpoints (everything was in the shared database). One machine: every process in its home."""
    if chain.other_home is None:
        assert set(chain.machines) == {"home"} and (chain.home / "checkpoints.db").exists()
        return
    assert chain.machines[:len(NODES) + 1] == ["machine-a", "machine-b"] * 4, chain.machines
    for home in (chain.home, chain.other_home):  # nothing of the thread's state stayed on a machine
        assert [p.name for p in home.iterdir() if p.name in ("agent.db", "checkpoints.db", "locks", "journal")] == []
