"""Cache only what was used: empty answers are provider failures, rejected answers leave the
cache, retries carry what went wrong; and the tolerant mapping of code and verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from free_llm_agent.nodes.llm import Asked, ask
from free_llm_agent.nodes.parsing import ParseError, parse_code_batch, parse_plan
from free_llm_agent.nodes.parsing_review import parse_review
from free_llm_agent.nodes.reflect import reflect
from free_llm_agent.nodes.schemas import Plan
from free_llm_agent.providers import build_chat_model
from tests.fakes.provider_server import FakeProvider, Reply
from tests.support.agent import by_id, make_deps, make_state, ran, rt, scripted
from tests.support.config import ConfigFactory, FakeFactory


def posts(fp: FakeProvider) -> int:
    return sum(1 for r in fp.requests if r.method == "POST")


@pytest.mark.both_backends
@pytest.mark.parametrize("kind", ["gemini", "openai_compatible"])
def test_an_empty_answer_goes_to_the_next_provider_and_is_never_cached(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path, kind: str
) -> None:
    empty = fake_server("gemini" if kind == "gemini" else "openai")
    good = fake_server("openai")
    empty.script(Reply.text(""))
    cfg = make_config({"empty": {"kind": kind, "base_url": empty.base_url},
                       "good": {"kind": "openai_compatible", "base_url": good.base_url}},
                      optimization={"enable_caching": True})
    llm = build_chat_model(cfg, home)
    first = llm.invoke("say hi")
    assert first.response_metadata["provider"] == "good" and first.content
    assert posts(empty) == 1
    # only the good answer was stored: the same question is served it, in another process too
    cached = build_chat_model(cfg, home).invoke("say hi")
    assert cached.response_metadata["cached"] and cached.content == first.content
    # and without it, the fixed first provider is asked again (no empty answer waits in the cache)
    fresh = build_chat_model(cfg, home)
    fresh.router.cache.evict(first.response_metadata["cache_key"])
    empty.script(Reply.text("hello from the fixed provider"))
    again = fresh.invoke("say hi")
    assert posts(empty) == 2 and again.content == "hello from the fixed provider"


@pytest.mark.both_backends
def test_a_rejected_answer_is_evicted_and_never_served_again(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    fp = fake_server("openai")
    cfg = make_config({"solo": {"kind": "openai_compatible", "base_url": fp.base_url}},
                      optimization={"enable_caching": True})
    fp.script(Reply.text("I would rather chat about the weather."), Reply.text("Still no plan, sorry."),
              Reply.text("1. read the file\n2. count words\n3. print the top 10"))
    llm = build_chat_model(cfg, home)
    messages: list[BaseMessage] = [HumanMessage("Break this goal into tasks")]
    with pytest.raises(ParseError):  # the answer and its repair are unreadable
        ask(llm, Plan, messages, parse_plan, task_type="general", purpose="plan", asked=Asked())
    # the node's retry: neither unusable answer comes back from the cache, and it says what went wrong
    plan = ask(llm, Plan, messages, parse_plan, task_type="general", purpose="plan", asked=Asked(),
               previous_error="expected a plan of at least 1 task(s)")
    assert plan.tasks == ["read the file", "count words", "print the top 10"]
    assert posts(fp) == 3
    assert "could not be used (expected a plan" in fp.requests[-1].text
    # the accepted answer is cached: the same retry again costs nothing
    again = ask(llm, Plan, messages, parse_plan, task_type="general", purpose="plan", asked=(a := Asked()),
                previous_error="expected a plan of at least 1 task(s)")
    assert again == plan and a.cache_hits == 1 and posts(fp) == 3


def test_an_unreadable_judge_leaves_the_exit_status_to_decide(tmp_path: Path) -> None:
    llm = scripted("I cannot evaluate this.", "Sorry, I am unable to judge these results.")
    state = make_state([ran(1), ran(2), ran(3, "failed", error="exit status 1")], batch=[1, 2, 3])
    update = reflect(state, rt(max_attempts=2), deps=make_deps(tmp_path, llm))
    tasks = by_id(update["tasks"])
    assert tasks[1] == {"id": 1, "status": "done", "unjudged": True}
    assert tasks[2]["status"] == "done" and tasks[3]["status"] == "pending" and tasks[3]["unjudged"]
    assert update["decision"] == "continue" and "fallback" in update and update["fallback"] is None
    assert "judged by exit status" in update["errors"][0]


def test_verdicts_are_read_from_every_channel_before_the_exit_status_decides(tmp_path: Path) -> None:
    """The tool call judges tasks 1 and 2, the text beside it task 3: all three are judged by the
    model, none by its exit status alone."""
    answer = AIMessage(
        content="Task 3: retry - report.md is empty",
        tool_calls=[{"name": "Review", "id": "c1", "type": "tool_call", "args": {
            "verdicts": [{"task_id": 1, "verdict": "done"}, {"task_id": 2, "verdict": "done"}],
            "decision": "continue"}}])
    state = make_state([ran(1), ran(2), ran(3)], batch=[1, 2, 3])
    update = reflect(state, rt(max_attempts=2), deps=make_deps(tmp_path, scripted(answer)))
    tasks = by_id(update["tasks"])
    assert not any(t.get("unjudged") for t in tasks.values())
    assert (tasks[1]["status"], tasks[2]["status"]) == ("done", "done")
    assert (tasks[3]["status"], tasks[3]["hint"]) == ("pending", "report.md is empty")


CODE_SHAPES = [
    ("unlabeled fences in order", "Sure!\n```python\nprint(1)\n```\n```\nprint(2)\n```\n```bash\necho 3\n```",
     [4, 5, 6], [(4, "python", "print(1)"), (5, "python", "print(2)"), (6, "shell", "echo 3")]),
    ("json renumbered from 1", '{"items": [{"task_id": 1, "code": "print(1)"}, {"task_id": 2, "language": "sh", '
     '"code": "echo 2"}]}', [4, 5], [(4, "python", "print(1)"), (5, "shell", "echo 2")]),
    ("headings renumbered", "### Task 1\n```zsh\necho a\n```\n### Task 2\n```python3\nprint('b')\n```", [3, 4],
     [(3, "shell", "echo a"), (4, "python", "print('b')")]),
    ("comment-labelled and unlabelled", "```py\n# Task 5\nprint(5)\n```\nAnd the other:\n```shell\necho 6\n```",
     [5, 6], [(5, "python", "# Task 5\nprint(5)"), (6, "shell", "echo 6")]),
]


@pytest.mark.parametrize(("text", "ids", "expected"), [c[1:] for c in CODE_SHAPES], ids=[c[0] for c in CODE_SHAPES])
def test_code_maps_by_order_when_ids_are_missing_or_renumbered(
    text: str, ids: list[int], expected: list[tuple[int, str, str]]
) -> None:
    batch = parse_code_batch(text, ids)
    assert [(i.task_id, i.language, i.code) for i in batch.items] == expected


def test_code_blocks_that_do_not_fit_the_batch_are_not_guessed() -> None:
    two_for_three = "```python\nprint(1)\n```\n```python\nprint(2)\n```"
    assert parse_code_batch(two_for_three, [4, 5, 6]).items == []


VERDICT_SHAPES = [
    ("blanket done", "All tasks completed successfully.", [4, 5, 6], ["done", "done", "done"]),
    ("blanket bold", "**All three tasks were completed successfully!** The goal is met.", [1, 2, 3],
     ["done"] * 3),
    ("blanket failed", "Both tasks failed.", [7, 8], ["failed", "failed"]),
    ("emoji list by order", "1. ✅ wrote the file\n2. ❌ wrong sum\n3. ✅", [4, 5, 6], ["done", "failed", "done"]),
    ("yes / no by id", "Task 4: yes\nTask 5: no - the file is missing", [4, 5], ["done", "retry"]),
    ("bullets by order", "- success\n- failure: exit 1", [2, 3], ["done", "failed"]),
    ("renumbered ids", "Task 1: done\nTask 2: retry - use csv", [4, 5], ["done", "retry"]),
]


@pytest.mark.parametrize(("text", "ids", "expected"), [c[1:] for c in VERDICT_SHAPES],
                         ids=[c[0] for c in VERDICT_SHAPES])
def test_verdicts_blanket_marks_and_lists(text: str, ids: list[int], expected: list[str]) -> None:
    review = parse_review(text, ids)
    assert [(v.task_id, v.verdict) for v in review.verdicts] == list(zip(ids, expected, strict=True))
