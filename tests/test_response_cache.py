"""The response cache: same request -> same answer across processes, within the TTL; never errors."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from free_llm_agent.config import ProviderConfig
from free_llm_agent.providers import AllProvidersExhausted, QuotaAwareChatModel, build_chat_model
from free_llm_agent.providers.cache import ResponseCache, cache_key
from free_llm_agent.providers.registry import build_client
from free_llm_agent.storage.registry import open_state, resolve_database_url
from tests.fakes.provider_server import FakeProvider, Reply
from tests.support.config import ConfigFactory, FakeFactory

T0 = 1_800_000_000.0
pytestmark = pytest.mark.both_backends


def ask_capital(config_dir: str, home: str, out: str, database_url: str | None = None) -> None:
    """One agent process: its own chat model on the shared state asks one question."""
    msg = build_chat_model(config_dir, home, database_url=database_url).invoke("What is the capital of Japan?")
    meta = {k: msg.response_metadata.get(k) for k in ("provider", "cached", "model")}
    Path(out).write_text(json.dumps({"content": msg.content, **meta}))


def posts(fp: FakeProvider) -> int:
    return sum(1 for r in fp.requests if r.method == "POST")


LlmFactory = Callable[..., tuple[QuotaAwareChatModel, FakeProvider, Path]]


@pytest.fixture
def cached_llm(fake_server: FakeFactory, make_config: ConfigFactory, home: Path) -> LlmFactory:
    def make(kind: str = "openai_compatible", **optimization: Any) -> tuple[QuotaAwareChatModel, FakeProvider, Path]:
        fp = fake_server("gemini" if kind == "gemini" else "openai")
        opt: Mapping[str, Any] = {"enable_caching": True, **optimization}
        cfg = make_config({"solo": {"kind": kind, "base_url": fp.base_url}}, optimization=opt)
        return build_chat_model(cfg, home), fp, cfg

    return make


def test_cache_hit_across_processes(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path, tmp_path: Path, database_url: str | None
) -> None:
    """SQLite: two processes share one home. PostgreSQL: two "machines" (homes) share one database."""
    fp = fake_server("openai")
    spec = {"kind": "openai_compatible", "base_url": fp.base_url}
    cfg = make_config({"solo": spec}, optimization={"enable_caching": True})
    fp.script(Reply.text("Tokyo"), Reply.text("a second request was made"))
    build_client(ProviderConfig(kind="openai_compatible", model="warm-up", base_url=fp.base_url), "unused")
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")

    def run_process(name: str) -> dict[str, Any]:
        out = tmp_path / f"{name}.json"
        where = home if database_url is None else tmp_path / f"machine-{name}"
        proc = ctx.Process(target=ask_capital, args=(str(cfg), str(where), str(out), database_url))  # type: ignore[attr-defined]
        proc.start()
        proc.join(timeout=60)
        assert proc.exitcode == 0
        return dict(json.loads(out.read_text()))

    first, second = run_process("a"), run_process("b")
    assert first == {"content": "Tokyo", "provider": "solo", "cached": False, "model": "solo-model"}
    assert second == {"content": "Tokyo", "provider": "solo", "cached": True, "model": "solo-model"}
    assert posts(fp) == 1


@pytest.mark.parametrize("kind", ["gemini", "groq", "together", "openai_compatible"])
def test_cache_hit_in_process_every_kind(cached_llm: LlmFactory, kind: str) -> None:
    llm, fp, _ = cached_llm(kind)
    fp.script(Reply.text("first answer"), Reply.text("second answer"))
    msgs = [SystemMessage("be brief"), HumanMessage("hello")]
    one, two = llm.invoke(msgs), llm.invoke(msgs)
    assert (one.content, two.content) == ("first answer", "first answer")
    assert (one.response_metadata["cached"], two.response_metadata["cached"]) == (False, True)
    assert two.response_metadata["provider"] == "solo"
    assert posts(fp) == 1
    # the cache hit is logged, but takes no quota
    assert llm.router.quota.counts("solo", time.time())["requests_day"] == 1
    assert llm.router.usage.get_daily_usage("solo")["cached"] == 1


def test_cache_serves_even_when_every_provider_is_out(cached_llm: LlmFactory) -> None:
    llm, fp, _ = cached_llm()
    llm.invoke("remember me")
    llm.router.quota.cool_down("solo", time.time() + 600, "test")
    assert llm.invoke("remember me").response_metadata["cached"] is True
    with pytest.raises(AllProvidersExhausted):
        llm.invoke("something new")
    assert posts(fp) == 1


def test_cached_stream(cached_llm: LlmFactory) -> None:
    llm, fp, _ = cached_llm()
    fp.script(Reply.text("streamed words come in pieces"))
    first = list(llm.stream("tell me"))
    second = list(llm.stream("tell me"))
    assert "".join(str(c.content) for c in first) == "streamed words come in pieces"
    assert "".join(str(c.content) for c in second) == "streamed words come in pieces"
    assert second[0].response_metadata["cached"] is True
    assert posts(fp) == 1


def test_ttl_expiry_with_explicit_now(tmp_path: Path) -> None:
    cache = ResponseCache(open_state(resolve_database_url(), tmp_path), ttl_s=3600)
    key = cache_key([HumanMessage("q")], {"temperature": None})
    cache.put(key, AIMessage("a", response_metadata={"provider": "p"}), T0)
    hit = cache.get(key, T0 + 3599)
    assert hit is not None and hit.content == "a" and hit.response_metadata["provider"] == "p"
    assert cache.get(key, T0 + 3601) is None


def test_ttl_expiry_through_the_model(cached_llm: LlmFactory) -> None:
    llm, fp, _ = cached_llm(cache_ttl_hours=1 / 3600)  # one second
    fp.script(Reply.text("old"), Reply.text("new"))
    assert llm.invoke("q").content == "old"
    assert llm.invoke("q").response_metadata["cached"] is True
    time.sleep(1.1)
    fresh = llm.invoke("q")
    assert (fresh.content, fresh.response_metadata["cached"]) == ("new", False)
    assert posts(fp) == 2


def test_errors_are_never_cached(cached_llm: LlmFactory) -> None:
    llm, fp, _ = cached_llm()
    fp.script(Reply.error(500), Reply.text("good answer"), Reply.text("should not be asked"))
    with pytest.raises(AllProvidersExhausted):
        llm.invoke("q")
    ok = llm.invoke("q")
    assert (ok.content, ok.response_metadata["cached"]) == ("good answer", False)
    again = llm.invoke("q")
    assert (again.content, again.response_metadata["cached"]) == ("good answer", True)
    assert posts(fp) == 2


def test_rate_limited_answer_is_not_cached(cached_llm: LlmFactory) -> None:
    llm, fp, _ = cached_llm(kind="groq")
    fp.script(Reply.rate_limit(retry_after=1), Reply.text("after the wait"))
    with pytest.raises(AllProvidersExhausted):
        llm.invoke("q")
    rows = llm.router.db.query("SELECT COUNT(*) FROM response_cache")
    assert rows[0][0] == 0


def test_caching_disabled(cached_llm: LlmFactory) -> None:
    llm, fp, _ = cached_llm(enable_caching=False)
    fp.script(Reply.text("one"), Reply.text("two"))
    one, two = llm.invoke("same"), llm.invoke("same")
    assert (one.content, two.content) == ("one", "two")
    assert two.response_metadata["cached"] is False
    assert posts(fp) == 2


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return "sunny"


@tool
def get_time(city: str) -> str:
    """Local time in a city."""
    return "noon"


class Capital(BaseModel):
    country: str
    capital: str


def test_temperature_and_tools_split_the_cache(cached_llm: LlmFactory) -> None:
    llm, fp, _ = cached_llm()
    llm.invoke("q")
    llm.invoke("q", temperature=0.1)
    llm.bind_tools([get_weather]).invoke("q")
    llm.bind_tools([get_time]).invoke("q")
    assert posts(fp) == 4
    # and each of them is cached on its own
    assert llm.invoke("q", temperature=0.1).response_metadata["cached"] is True
    assert llm.bind_tools([get_time]).invoke("q").response_metadata["cached"] is True
    assert posts(fp) == 4
    assert fp.requests[1].json is not None and fp.requests[1].json.get("temperature") == 0.1
    assert fp.requests[2].tool_names == ["get_weather"]


def test_structured_output_is_cached(cached_llm: LlmFactory) -> None:
    llm, fp, _ = cached_llm(kind="groq")
    fp.script(Reply.structured({"country": "France", "capital": "Paris"}))
    chain = llm.with_structured_output(Capital)
    assert chain.invoke("capital of France?") == Capital(country="France", capital="Paris")
    assert chain.invoke("capital of France?") == Capital(country="France", capital="Paris")
    assert posts(fp) == 1


def test_cache_key_ignores_volatile_fields() -> None:
    a = [HumanMessage("q", id="1"), AIMessage("a", response_metadata={"provider": "x"}), HumanMessage("q2")]
    b = [HumanMessage("q", id="2"), AIMessage("a", response_metadata={"provider": "y"}), HumanMessage("q2")]
    assert cache_key(a, {}) == cache_key(b, {})
    assert cache_key(a, {}) != cache_key([*a[:2], HumanMessage("other")], {})
    assert cache_key(a, {}) != cache_key(a, {"temperature": 0.2})
