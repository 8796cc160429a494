"""Routing that learns: answers graded per provider × purpose, the order they give, ``usage --json``'s rates,
and the experiment (tests/support/routing_experiment.py) with ``routing.learn`` on and off."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from free_llm_agent.config import ConfigError, load_config
from free_llm_agent.nodes.llm import Asked, ask
from free_llm_agent.nodes.parsing import ParseError, parse_plan
from free_llm_agent.nodes.schemas import Plan
from free_llm_agent.providers import build_chat_model
from free_llm_agent.providers.answers import WINDOW, Grades, learned_order
from free_llm_agent.providers.router import Router
from tests.fakes.provider_server import Reply
from tests.support.cli import cli
from tests.support.config import ConfigFactory, FakeFactory
from tests.support.routing_experiment import run_experiment

pytestmark = pytest.mark.timeout(120)
THREE = {"a": {"kind": "openai_compatible"}, "b": {"kind": "openai_compatible"}, "c": {"kind": "openai_compatible"}}


# ----------------------------------------------------------------------------- the rate and the order (pure)


def test_below_the_minimum_sample_a_provider_counts_as_perfect_and_ties_keep_the_configured_order() -> None:
    four_of_four_bad = {"a": Grades(usable=0, unusable=4), "b": Grades(usable=3, repaired=2)}
    assert learned_order(["a", "b"], four_of_four_bad, min_samples=5) == ["a", "b"]  # a: 4 grades, not judged
    judged = {"a": Grades(usable=1, repaired=4), "b": Grades(usable=3, repaired=2)}
    assert learned_order(["a", "b"], judged, min_samples=5) == ["b", "a"]
    assert learned_order(["a", "b", "c"], {"b": Grades(usable=5)}, min_samples=5) == ["a", "b", "c"]
    assert learned_order(["a", "b", "c"], {"a": Grades(usable=4, unusable=1)}, min_samples=5) == ["b", "c", "a"]
    assert Grades(usable=9, repaired=1).rate == 0.9 and Grades().rate is None


def test_exploration_puts_the_least_recently_graded_provider_first() -> None:
    grades = {"a": Grades(usable=5, last=30), "b": Grades(usable=2, unusable=3, last=10),
              "c": Grades(usable=1, unusable=4, last=20)}
    assert learned_order(["a", "b", "c"], grades, min_samples=5) == ["a", "b", "c"]
    assert learned_order(["a", "b", "c"], grades, min_samples=5, explore=True) == ["b", "a", "c"]
    assert learned_order(["a"], grades, min_samples=5, explore=True) == ["a"]


# ----------------------------------------------------------------------------- on both backends


def _router(make_config: ConfigFactory, home: Path, **routing: object) -> Router:
    return build_chat_model(make_config(THREE, routing=routing), home).router


@pytest.mark.both_backends
def test_grades_are_kept_per_provider_and_purpose_over_a_window(make_config: ConfigFactory, home: Path) -> None:
    router = _router(make_config, home)
    for outcome in ("usable", "repaired", "unusable", "usable"):
        router.grade("a", "plan", outcome)  # type: ignore[arg-type]
    router.grade("a", "code", "unusable")
    router.grade("nobody", "plan", "usable")  # a provider this config does not know: not booked
    assert router.answers.grades() == {"a": {
        "code": Grades(unusable=1, last=router.answers.grades()["a"]["code"].last),
        "plan": Grades(usable=2, repaired=1, unusable=1, last=router.answers.grades()["a"]["plan"].last)}}
    assert router.answers.asks("plan") == 4 and router.answers.asks("code") == 1
    for _ in range(WINDOW + 5):
        router.grade("a", "plan", "usable")
    plan = router.answers.for_purpose("plan")["a"]
    assert (plan.total, plan.rate) == (WINDOW, 1.0)  # the older grades left the window
    assert router.answers.asks("plan") == WINDOW + 9
    with pytest.raises(ValueError, match="unknown answer grade"):
        router.answers.grade("a", "plan", "great", 0.0)  # type: ignore[arg-type]


@pytest.mark.both_backends
def test_the_best_rate_goes_first_but_pins_and_preferred_providers_win(make_config: ConfigFactory, home: Path) -> None:
    router = _router(make_config, home, task_types={"code_generation": "a"})
    for _ in range(5):
        router.grade("a", "plan", "repaired")
        router.grade("b", "plan", "unusable")
        router.grade("a", "code", "unusable")
    assert router.candidates("general", purpose="plan") == ["c", "a", "b"]  # c: not judged yet
    assert router.candidates("general", purpose="review") == ["a", "b", "c"]  # nothing learned for it
    assert router.candidates("general") == ["a", "b", "c"]  # no purpose: the configured order
    assert router.candidates("code_generation", purpose="code") == ["a", "b", "c"]  # pinned: first anyway
    assert router.candidates("general", ("b",), purpose="plan") == ["b", "c", "a"]  # asked for by name
    off = _router(make_config, home, learn=False)
    assert off.candidates("general", purpose="plan") == ["a", "b", "c"]


@pytest.mark.both_backends
def test_exploration_lets_a_provider_that_recovered_win_its_place_back(
    make_config: ConfigFactory, home: Path
) -> None:
    cfg = make_config({"a": THREE["a"], "b": THREE["b"]}, routing={"explore_every": 4, "min_samples": 2})
    router = build_chat_model(cfg, home).router
    for _ in range(2):  # a was bad, b is good
        router.grade("a", "plan", "unusable")
        router.grade("b", "plan", "usable")
    order = []
    for _ in range(100):  # every 4th ask goes to the one graded least recently; a answers well now
        first = router.candidates("general", purpose="plan")[0]
        order.append(first)
        router.grade(first, "plan", "usable")
    explored = [i for i, name in enumerate(order) if name == "a"]
    assert explored[:2] == [3, 7]  # the 4th ask (asks 3, 7, ... 0-based), with b still ahead
    # after 20 good answers its bad grades have left its window: as good as b, the configured order is back
    # (a first; every 4th ask now explores b)
    assert order[:80].count("a") == 20 and order[80:] == ["a", "a", "a", "b"] * 5


# ----------------------------------------------------------------------------- grades from ask() and usage --json


@pytest.mark.both_backends
def test_ask_grades_the_first_answer_and_usage_json_shows_the_rates(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    fp = fake_server("openai")
    cfg = make_config({"solo": {"kind": "openai_compatible", "base_url": fp.base_url}},
                      optimization={"enable_caching": True})
    fp.script(Reply.text("1. read\n2. count"),  # usable at once
              Reply.text("no plan, sorry"), Reply.text("1. read\n2. count\n3. print"),  # repaired
              Reply.text("no plan"), Reply.text("still none"))  # unusable
    llm = build_chat_model(cfg, home)
    for n in range(3):
        with contextlib.suppress(ParseError) if n == 2 else contextlib.nullcontext():
            ask(llm, Plan, [HumanMessage(f"Break this goal {n} into tasks")], parse_plan, task_type="general",
                purpose="plan", asked=Asked())
    ask(llm, Plan, [HumanMessage("Break this goal 0 into tasks")], parse_plan, task_type="general", purpose="plan",
        asked=Asked())  # served from the cache: not graded again
    report = json.loads(cli(["usage", "--json"], home, cfg).stdout)
    assert report["providers"]["solo"]["answers"] == {
        "plan": {"usable": 1, "repaired": 1, "unusable": 1, "rate": 0.333}}
    table = cli(["usage"], home, cfg)
    assert table.returncode == 0 and "plan 33% (1/3)" in table.stdout


def test_routing_learn_must_be_a_boolean(make_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match=r"routing\.learn"):
        load_config(make_config(THREE, routing={"learn": "sometimes"}))
    with pytest.raises(ConfigError, match=r"routing\.explore_every"):
        load_config(make_config(THREE, routing={"explore_every": 1}))
    assert load_config(make_config(THREE)).routing.learn is True


# ----------------------------------------------------------------------------- the experiment


def test_routing_learns_to_send_plan_code_and_review_to_the_provider_whose_answers_parse(tmp_path: Path) -> None:
    on = run_experiment(tmp_path / "on", learn=True)
    assert on.floor == 3
    # flaky (first in the priority) is judged after its 5 answers per purpose, then good takes over
    assert on.share(5) >= 0.9 and on.per_goal[5:] == [on.floor] * 15
    assert sum(on.per_goal[:5]) > 5 * on.floor  # flaky's prose needed repairs while it was judged
    off = run_experiment(tmp_path / "off", learn=False)
    assert off.share() == 0.0  # the configured order: flaky first every time
    assert sum(off.per_goal) > sum(on.per_goal) and max(off.per_goal[5:]) > off.floor
