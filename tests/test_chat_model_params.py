"""LangChain's standard parameters through the wrapper: temperature, max_tokens, timeout and stop,
at construction and per call, reach the provider that answers; every generation parameter is
part of the response cache key; a cached answer gets a fresh message id; providers named by the
caller are tried first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from free_llm_agent.providers import QuotaAwareChatModel, build_chat_model
from tests.fakes.provider_server import Reply
from tests.fakes.wire import Request
from tests.support.config import ConfigFactory, FakeFactory
from tests.support.provider_clients import SetupFactory

pytestmark = [pytest.mark.timeout(60), pytest.mark.both_backends]


def sent(req: Request) -> dict[str, Any]:
    """temperature / max_tokens / stop as the provider received them, whatever its wire format."""
    body = req.json or {}
    if req.kind == "gemini":
        gen = body.get("generationConfig") or body.get("generation_config") or {}
        return {"temperature": gen.get("temperature"), "max_tokens": gen.get("maxOutputTokens"),
                "stop": gen.get("stopSequences")}
    return {"temperature": body.get("temperature"),
            "max_tokens": body.get("max_tokens") or body.get("max_completion_tokens"), "stop": body.get("stop")}


def test_standard_parameters_at_construction_and_per_call_reach_the_provider(kind: str, setup: SetupFactory) -> None:
    s = setup(kind)
    llm = s.llm.model_copy(update={"temperature": 0.2, "max_tokens": 77, "stop": ["END"]})
    llm.invoke("one")
    llm.invoke("two", temperature=0.9, max_tokens=5, stop=["STOP"])
    first, second = (sent(r) for r in s.primary.requests)
    assert first["temperature"] == pytest.approx(0.2) and first["max_tokens"] == 77
    assert first["stop"] in (["END"], "END")
    assert second["temperature"] == pytest.approx(0.9) and second["max_tokens"] == 5
    assert second["stop"] in (["STOP"], "STOP")


def test_per_call_timeout_gives_up_and_falls_back(kind: str, setup: SetupFactory) -> None:
    s = setup(kind, primary={"timeout_s": 30})  # the configured timeout would wait 30 s
    s.primary.script(Reply.hang(20))
    msg = s.llm.invoke("hi", timeout=1)
    assert msg.response_metadata["provider"] == "backup"
    assert len(s.primary.requests) == 1


def test_every_generation_parameter_is_part_of_the_cache_key(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    fp = fake_server("openai")
    fp.script(*(Reply.text(f"answer {i}") for i in range(6)))
    cfg = make_config({"p": {"kind": "openai_compatible", "base_url": fp.base_url}},
                      optimization={"enable_caching": True})
    llm = build_chat_model(cfg, home)
    short = llm.invoke("same prompt", max_tokens=5)
    long = llm.invoke("same prompt", max_tokens=500)
    assert short.content == "answer 0" and long.content == "answer 1"  # not the 5-token answer again
    assert llm.invoke("same prompt", max_tokens=500).response_metadata["cached"]
    assert not llm.invoke("same prompt", max_tokens=500, stop=["x"]).response_metadata["cached"]
    assert not llm.invoke("same prompt", max_tokens=500, temperature=0.1).response_metadata["cached"]
    assert len(fp.requests) == 4


def test_a_cached_answer_gets_a_fresh_message_id(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    fp = fake_server("openai")
    cfg = make_config({"p": {"kind": "openai_compatible", "base_url": fp.base_url}},
                      optimization={"enable_caching": True})
    llm = build_chat_model(cfg, home)
    first, again, third = (llm.invoke("hello") for _ in range(3))
    assert again.response_metadata["cached"] and third.response_metadata["cached"]
    assert len({first.id, again.id, third.id}) == 3  # the same id never shows up in two threads
    assert len(fp.requests) == 1


def test_providers_named_by_the_caller_are_tried_first_even_the_emergency_one(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    main, emergency = fake_server("openai"), fake_server("openai")
    cfg = make_config({"main": {"kind": "openai_compatible", "base_url": main.base_url},
                       "together_ai": {"kind": "openai_compatible", "base_url": emergency.base_url}},
                      fallback={"emergency_provider": "together_ai"})
    llm = build_chat_model(cfg, home)
    assert llm.invoke("hi").response_metadata["provider"] == "main"
    assert llm.invoke("hi", providers=["together_ai"]).response_metadata["provider"] == "together_ai"
    preferring = build_chat_model(cfg, home, preferred=["together_ai"])
    assert preferring.invoke("hi").response_metadata["provider"] == "together_ai"


def test_tracing_parameters_name_a_model(setup: SetupFactory) -> None:
    s = setup("groq")
    llm: QuotaAwareChatModel = s.llm.model_copy(update={"temperature": 0.3, "max_tokens": 9})
    params = llm._get_ls_params(stop=["x"])
    assert params["ls_model_name"] == "primary-model" and params["ls_model_type"] == "chat"
    assert params["ls_temperature"] == 0.3 and params["ls_max_tokens"] == 9 and params["ls_stop"] == ["x"]
    assert llm._get_ls_params(providers=["backup"])["ls_model_name"] == "backup-model"


@pytest.mark.parametrize("kind", ["groq", "together", "openai_compatible"])
def test_a_per_call_model_reaches_the_provider_and_is_reported(kind: str, setup: SetupFactory) -> None:
    """``invoke(p, model=...)`` (LangChain's model override): tracing names it, the provider that answers
    is asked for it, and the answer says so. ChatGoogleGenerativeAI takes no per-call model (see
    tests/standard/capabilities.py)."""
    s = setup(kind)
    assert s.llm._get_ls_params(model="other-model")["ls_model_name"] == "other-model"
    answer = s.llm.invoke("hi", model="other-model")
    assert s.primary.requests[-1].model == "other-model"
    assert answer.response_metadata["model"] == "other-model"
    streamed = [c for c in s.llm.stream("hi", model="other-model")]
    assert streamed[0].response_metadata["model"] == "other-model"
