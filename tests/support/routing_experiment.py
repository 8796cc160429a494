"""The routing experiment (docs/how-it-works.md: Routing that learns): two loopback providers, 20 goals.

``flaky`` is first in ``routing.priority``; every other first answer it gives to a plan, code or
review request is prose that no parser reads (its answers to repair prompts are good). ``good``
always answers well. Each goal has ``tasks`` tasks, so its floor is ``1 + 2·ceil(tasks/3)``
requests (one plan, one code and one review request per batch of three). Reproduce with::

    uv run python -m tests.support.routing_experiment
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver

from free_llm_agent.graph.context import Context
from free_llm_agent.graph.workflow import build_graph
from free_llm_agent.providers import build_chat_model
from free_llm_agent.runtime.deps import Deps
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider, Reply, Request
from tests.support.agent import FakeExecutor
from tests.support.config import write_config

PLAN = (("write a.txt", "open('a.txt','w').write('a')"), ("read a.txt", "print(open('a.txt').read())"),
        ("list the files", "import os\nprint(sorted(os.listdir('.')))"))
_PURPOSES = {"Break this goal": "plan", "Write the code for each": "code", "These tasks were just run": "review"}
GARBAGE = "I would rather chat about the weather today. Shall we?"


def flaky_responder(plan: tuple[tuple[str, str], ...] = PLAN):  # type: ignore[no-untyped-def]
    """Like ``make_responder``, but every other first answer per purpose (the 1st, 3rd, ...) is prose."""
    good = make_responder(plan)
    seen: dict[str, int] = {}

    def respond(req: Request) -> Reply:
        text = req.text
        purpose = next((p for marker, p in _PURPOSES.items() if marker in text), "")
        if purpose and not re.search(r"could not be read", text):
            seen[purpose] = seen.get(purpose, 0) + 1
            if seen[purpose] % 2 == 1:
                return Reply.text(GARBAGE)
        return good(req)  # type: ignore[no-any-return]

    return respond


@dataclass
class Figures:
    learn: bool
    per_goal: list[int]  # requests per goal (every POST to either provider)
    good: list[int]  # of which to ``good``
    floor: int

    def share(self, first: int = 0) -> float:
        """The share of requests that went to ``good`` from goal ``first`` (0-based) on."""
        return sum(self.good[first:]) / max(1, sum(self.per_goal[first:]))

    def to_json(self) -> dict[str, object]:
        return {"learn": self.learn, "floor": self.floor, "requests_per_goal": self.per_goal,
                "share_good": round(self.share(), 3), "share_good_after_goal_5": round(self.share(5), 3)}


def _posts(fp: FakeProvider) -> int:
    return sum(1 for r in fp.requests if r.method == "POST")


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_experiment(base: Path, *, learn: bool, goals: int = 20) -> Figures:
    """Run ``goals`` goals of :data:`PLAN`'s tasks through the whole graph; requests per goal and to ``good``."""
    flaky = FakeProvider("openai", responder=flaky_responder()).start()
    good = FakeProvider("openai", responder=make_responder(PLAN)).start()
    try:
        config, keys = write_config(base / "config", {
            "flaky": {"kind": "openai_compatible", "base_url": flaky.base_url},
            "good": {"kind": "openai_compatible", "base_url": good.base_url},
        }, routing={"learn": learn})
        with _env(keys):
            llm = build_chat_model(config, base / "home")
            executor = FakeExecutor()
            deps = Deps(llm=llm, executor_factory=executor.factory, home=base / "home")
            graph = build_graph(checkpointer=InMemorySaver(), deps=deps)
            per_goal: list[int] = []
            to_good: list[int] = []
            for n in range(goals):
                before = (_posts(flaky), _posts(good))
                final = graph.invoke({"goal": f"goal {n}: make and read a file"},
                                     {"configurable": {"thread_id": f"goal-{n}"}, "recursion_limit": 100},
                                     context=Context(auto_approve=True))
                assert final["status"] == "completed", final.get("errors")
                g = _posts(good) - before[1]
                per_goal.append(_posts(flaky) - before[0] + g)
                to_good.append(g)
            deps.close_all()
            llm.router.db.close()
    finally:
        flaky.stop()
        good.stop()
    return Figures(learn, per_goal, to_good, 1 + 2 * math.ceil(len(PLAN) / 3))


def main() -> int:
    for learn in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
            print(json.dumps(run_experiment(Path(tmp), learn=learn).to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
