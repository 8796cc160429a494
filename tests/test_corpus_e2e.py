"""The answer corpus end to end (issue 8): every plan, code and verdict answer in the shapes free
models really give runs a whole goal through the real graph (InMemorySaver), the real
``QuotaAwareChatModel`` from ``build_chat_model`` and the real LangChain clients against loopback
fakes, with a ``FakeExecutor`` whose runs all exit 0.

The fake answers the prompt under test with the corpus text as plain prose (ignoring the
structured-output tool), to the repair prompt too (a model that answers in prose keeps doing so,
unless the entry gives a repair answer), and every other prompt with good structured output.
Each run must complete with every task done, every task run exactly once, and no more LLM calls
than the batch budget (1 + 2 per batch) plus one repair per node call. Then the issue's named
cases: renumbered ids in a later batch, an unreadable judge, and providers answering empty 200s.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import messages_from_dict

from free_llm_agent.providers import QuotaAwareChatModel, build_chat_model
from tests.fakes.provider_server import FakeProvider, Reply, Request
from tests.support.agent import FakeExecutor
from tests.support.config import ConfigFactory, FakeFactory
from tests.support.corpus import FALLBACK, REPAIR, good_reply, outcome, posts, prompt_of, reach, run_goal
from tests.support.corpus_answers import GEMINI, LLAMA, PLAN, PLAN_ANSWERS, Answer
from tests.support.corpus_answers_code import CODE_ANSWERS
from tests.support.corpus_answers_review import REVIEW_ANSWERS

pytestmark = pytest.mark.timeout(60)

CORPUS: tuple[Answer, ...] = (*PLAN_ANSWERS, *CODE_ANSWERS, *REVIEW_ANSWERS)

@dataclass
class Responder:
    """A FakeProvider responder: ``answers[kind]`` as prose for those prompt kinds, good answers else."""

    plan: Sequence[str] = PLAN[:3]
    answers: Mapping[str, Answer] = field(default_factory=dict)
    log: list[tuple[str, bool]] = field(default_factory=list)  # (prompt kind, is a repair) per request

    def __call__(self, req: Request) -> Reply:
        text = req.text
        kind, batch = prompt_of(text)
        repair = REPAIR in text
        self.log.append((kind, repair))
        answer = self.answers.get(kind)
        if answer is not None:
            return Reply.text(answer.render(batch, repair=repair))
        return good_reply(kind, batch, self.plan)

    @property
    def node_calls(self) -> int:
        return sum(1 for _, repair in self.log if not repair)


@dataclass
class CorpusSetup:
    llm: QuotaAwareChatModel
    fake: FakeProvider
    responder: Responder


def setup_for(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path, family: str, responder: Responder
) -> CorpusSetup:
    wire, name, spec = reach(family)
    fake = fake_server(wire, responder=responder)
    cfg = make_config({name: {**spec, "base_url": fake.base_url}}, fallback=FALLBACK)
    return CorpusSetup(build_chat_model(cfg, home), fake, responder)


def assert_completed(state: Mapping[str, Any], executor: FakeExecutor, tasks: int) -> None:
    """Completed, ``tasks`` tasks all done, each run exactly once."""
    assert state.get("status") == "completed", outcome(state)
    assert len(state["tasks"]) == tasks, [t["description"] for t in state["tasks"]]
    assert [t["status"] for t in state["tasks"]] == ["done"] * tasks, outcome(state)
    assert len(executor.runs) == tasks, executor.runs


def assert_within_budget(
    state: Mapping[str, Any], responder: Responder, fake: FakeProvider, *, batch_size: int = 3
) -> None:
    """At most 1 + 2 calls per batch, plus at most one repair right after a node call."""
    budget = 1 + 2 * math.ceil(len(state["tasks"]) / batch_size)
    log = responder.log
    assert responder.node_calls <= budget, f"{responder.node_calls} node calls > budget {budget}: {log}"
    assert not (log and log[0][1]), log
    for before, now in itertools.pairwise(log):
        assert not now[1] or (not before[1] and before[0] == now[0]), f"a repair not right after its node call: {log}"
    repairs = len(log) - responder.node_calls
    assert sum(state.get("llm_calls", {}).values()) <= budget + repairs, (state.get("llm_calls"), log)
    assert posts(fake) <= budget + repairs, log


def last_batch(ids: Sequence[int], batch_size: int = 3) -> list[int]:
    return list(ids[(math.ceil(len(ids) / batch_size) - 1) * batch_size :])


def assert_judged(state: Mapping[str, Any], batch: Sequence[int], judged: int | None = None) -> None:
    """The judge's answer was read: ``judged`` verdicts (default: all) of ``batch`` say done."""
    read = [v["task_id"] for v in state.get("verdicts", []) if v.get("verdict") == "done"]
    assert set(read) <= set(batch), (read, batch)
    assert len(set(read)) == (len(batch) if judged is None else judged), (read, batch, state.get("errors"))
    unjudged = [t["id"] for t in state["tasks"] if t["id"] in read and t.get("unjudged")]
    assert not unjudged, unjudged


_LABEL = re.compile(r"(?i)\s*(?:\*\*)?(?:task|step)\s*\d+\s*[:.)]")


def assert_plan_clean(descriptions: Sequence[str]) -> None:
    for d in descriptions:
        assert len(d) >= 10 and not _LABEL.match(d), d
        assert not any(junk in d for junk in ("{", "}", "|", "```", "<think", "</think>", "':")), d


# ------------------------------------------------------------------------------ the corpus


@pytest.mark.parametrize("answer", CORPUS, ids=[a.id for a in CORPUS])
def test_corpus_answer_completes_its_run_within_budget(
    answer: Answer, fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    responder = Responder(plan=PLAN[: answer.tasks], answers={answer.kind: answer})
    s = setup_for(fake_server, make_config, home, answer.family, responder)
    state, executor = run_goal(s.llm, home)
    assert_completed(state, executor, answer.tasks)
    assert_within_budget(state, responder, s.fake)
    tasks = state["tasks"]
    if answer.kind == "plan":
        assert_plan_clean([t["description"] for t in tasks])
    elif answer.kind == "code":
        languages = answer.languages or ("python",) * 3
        for i, task in enumerate(tasks):
            assert task["description"] in task["code"], (task["id"], task["code"])  # the block of its position
            assert task["language"] == languages[i % 3], (task["id"], task["language"], task["code"])
    else:
        assert_judged(state, last_batch([t["id"] for t in tasks]), answer.judged)


def test_corpus_covers_the_issue() -> None:
    kinds = {kind: [a for a in CORPUS if a.kind == kind] for kind in ("plan", "code", "review")}
    assert (len(kinds["plan"]), len(kinds["code"]), len(kinds["review"])) >= (40, 30, 30)
    assert len({a.id for a in CORPUS}) == len(CORPUS)
    assert len({a.family for a in CORPUS}) == 5
    shapes = {a.shape for a in CORPUS}
    for shape in ("fenced-json", "prose+json", "think", "list", "pipe", "trailing-comma", "single-quotes", "py-repr",
                  "truncated", "table", "wrong-count", "unlabeled-fences", "renumbered", "fence-lang", "blanket",
                  "emoji", "yes-no", "success-words"):
        assert shape in shapes, shape


# ------------------------------------------------------------------------------ named cases


@pytest.mark.parametrize("family", [LLAMA, GEMINI])
def test_second_batch_numbered_from_one_runs_all_four_tasks(
    family: str, fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    code = Answer("renumbered-2", "code", "renumbered", family,
                  'Here you go:\n\n### Task 1\n```python\nprint("{d1}: ok")\n```\n\n'
                  '### Task 2\n```python\nprint("{d2}: ok")\n```')
    review = Answer("renumbered-2", "review", "renumbered", family, "Task 1: done\nTask 2: done\n\nDecision: continue")
    responder = Responder(plan=PLAN[:4], answers={"code": code, "review": review})
    s = setup_for(fake_server, make_config, home, family, responder)
    state, executor = run_goal(s.llm, home, batch_size=2)
    assert_completed(state, executor, 4)
    assert [code for _, code in executor.runs] == [f'print("{d}: ok")' for d in PLAN[:4]]
    assert_within_budget(state, responder, s.fake, batch_size=2)
    assert_judged(state, [3, 4])


@pytest.mark.parametrize("family", [LLAMA, GEMINI])
def test_unreadable_judge_after_three_ok_tasks_completes_unjudged(
    family: str, fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    judge = Answer("unreadable", "review", "unreadable", family, "I cannot evaluate this.")
    responder = Responder(answers={"review": judge})
    s = setup_for(fake_server, make_config, home, family, responder)
    state, executor = run_goal(s.llm, home)
    assert_completed(state, executor, 3)
    assert [t.get("unjudged") for t in state["tasks"]] == [True, True, True], state["tasks"]
    assert ("review", True) in responder.log  # the repair was asked for, and was unreadable too
    assert_within_budget(state, responder, s.fake)


_GEMINI_USAGE = {"promptTokenCount": 10, "totalTokenCount": 10}
EMPTY_200S: dict[str, tuple[str, str, Reply]] = {  # provider kind, fake wire format, the empty answer
    "gemini-empty-text": ("gemini", "gemini", Reply.text("")),
    "gemini-safety-block": ("gemini", "gemini", Reply.raw(200, json.dumps({
        "candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]}],
        "usageMetadata": _GEMINI_USAGE, "modelVersion": "gemini-flash"}))),
    "gemini-thinking-budget": ("gemini", "gemini", Reply.raw(200, json.dumps({
        "candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}],
        "usageMetadata": {**_GEMINI_USAGE, "thoughtsTokenCount": 1024}, "modelVersion": "gemini-flash"}))),
    "groq-empty-content": ("groq", "openai", Reply.text("")),
}


def empty_setup(
    case: str, fake_server: FakeFactory, make_config: ConfigFactory, steady: Responder, **fallback: float
) -> tuple[FakeProvider, FakeProvider, Path]:
    """"flaky" (first choice) answers empty 200s; "steady" answers through ``steady``; caching on."""
    kind, wire, empty = EMPTY_200S[case]
    flaky = fake_server(wire, responder=lambda req: empty)
    good = fake_server("openai", responder=steady)
    cfg = make_config(
        {"flaky": {"kind": kind, "base_url": flaky.base_url}, "steady": {"kind": "groq", "base_url": good.base_url}},
        optimization={"enable_caching": True}, fallback={**FALLBACK, **fallback},
    )
    return flaky, good, cfg


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A working directory of its own: the same prompts (and cache keys) for every run of the goal."""
    path = tmp_path / "project"
    path.mkdir()
    return path


def cached_answers(llm: QuotaAwareChatModel) -> list[Any]:
    rows = llm.router.db.query("SELECT message FROM response_cache")
    return [messages_from_dict([json.loads(str(row[0]))])[0] for row in rows]


@pytest.mark.parametrize("case", list(EMPTY_200S))
def test_empty_200s_fail_over_to_the_next_provider_and_are_never_cached(
    case: str, fake_server: FakeFactory, make_config: ConfigFactory, home: Path, project: Path
) -> None:
    steady = Responder()
    flaky, good, cfg = empty_setup(case, fake_server, make_config, steady)
    llm = build_chat_model(cfg, home)
    state, executor = run_goal(llm, home, workdir=project)
    assert_completed(state, executor, 3)
    assert posts(flaky) >= 1  # it was asked first
    assert state["llm_calls"] == {"steady": 3}, state["llm_calls"]  # an empty answer is no answer
    assert state.get("cache_hits", 0) == 0
    assert_within_budget(state, steady, good)
    for message in cached_answers(llm):
        assert str(message.content).strip() or message.tool_calls, f"an empty answer was cached: {message!r}"


@pytest.mark.parametrize("case", list(EMPTY_200S))
def test_after_empty_200s_clear_the_same_goal_sends_requests_again(
    case: str, fake_server: FakeFactory, make_config: ConfigFactory, home: Path, project: Path
) -> None:
    steady = Responder()
    flaky, good, cfg = empty_setup(case, fake_server, make_config, steady, failure_cooldown_seconds=0)
    good.responder = lambda req: Reply.error(503)  # the other provider is down meanwhile: nothing good to cache
    first, _ = run_goal(build_chat_model(cfg, home), home, thread="during-the-fault", workdir=project)
    assert first.get("status") != "completed", outcome(first)
    asked = posts(flaky)
    assert asked >= 1
    fixed = Responder()
    flaky.responder = fixed  # the fault clears; a new process runs the same goal in the same folder
    llm = build_chat_model(cfg, home)
    state, executor = run_goal(llm, home, thread="after-the-fault", workdir=project)
    assert_completed(state, executor, 3)
    assert posts(flaky) - asked >= 3, fixed.log  # plan, code and reflect were asked, not served from the cache
    assert state.get("cache_hits", 0) == 0
    assert state["llm_calls"] == {"flaky": 3}, state["llm_calls"]
