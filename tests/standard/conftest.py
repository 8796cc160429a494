"""Fixtures of LangChain's standard suites (``langchain-tests``) run against the loopback fakes.

One fake OpenAI-compatible server per session answers the suites' questions
(``tests.fakes.standard_responder``); each test module gets its own wrapper router (own
config dir and home) over it. The suites' test classes read them through ``ModelHarness``.
"""

from __future__ import annotations

import io
import os
import struct
import wave
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from free_llm_agent.providers import build_chat_model
from tests.fakes.provider_server import FakeProvider
from tests.fakes.standard_responder import respond
from tests.standard.capabilities import ModelHarness
from tests.support.config import write_config


@pytest.fixture(scope="session")
def standard_fake() -> Iterator[FakeProvider]:
    with FakeProvider("openai", responder=respond) as fp:
        yield fp


def _harness(fake: FakeProvider, root: Path, *, caching: bool, kind: str = "openai_compatible") -> ModelHarness:
    config_dir, env = write_config(
        root / "config",
        {"fake": {"kind": kind, "base_url": fake.base_url, "timeout_s": 10, "model": "fake-model"}},
        optimization={"enable_caching": caching},
        fallback={"failure_threshold": 1000},  # one test's failure must not cool the provider down for the next
    )
    (root / "home").mkdir()
    with mock.patch.dict(os.environ, env):  # keys are read when the router is built
        llm = build_chat_model(config_dir, root / "home")
    env |= {"FREE_AGENT_CONFIG_DIR": str(config_dir), "FREE_AGENT_HOME": str(root / "home")}
    return ModelHarness(fake, llm.router, kind, env)


@pytest.fixture(scope="module")
def harness(standard_fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> ModelHarness:
    """A wrapper over the fake: one ``openai_compatible`` provider, no limits, caching off (every
    request reaches the fake)."""
    return _harness(standard_fake, tmp_path_factory.mktemp("standard"), caching=False)


@pytest.fixture(scope="module")
def cached_harness(standard_fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> ModelHarness:
    """The same with the response cache on, as shipped: repeated questions are served from it."""
    return _harness(standard_fake, tmp_path_factory.mktemp("standard-cached"), caching=True)


@pytest.fixture(scope="module")
def gemini_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelHarness]:
    """A wrapper over a Gemini fake (``gemini`` kind: ChatGoogleGenerativeAI)."""
    with FakeProvider("gemini", responder=respond) as fp:
        yield _harness(fp, tmp_path_factory.mktemp("standard-gemini"), caching=False, kind="gemini")


@pytest.fixture(scope="session")
def vcr_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``test_stream_time`` records its stream from the fake into a temporary cassette (nothing committed)."""
    from langchain_tests.conftest import base_vcr_config

    return {**base_vcr_config(), "cassette_library_dir": str(tmp_path_factory.mktemp("cassettes"))}


# ------------------------------------------------------------------ the suites' downloads, served locally


def _png() -> bytes:
    """A valid 1x1 white PNG."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\xff\xff")) + chunk(
        b"IEND", b""
    )


def _wav() -> bytes:
    """A tenth of a second of silence, 8 kHz mono."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    return buf.getvalue()


_PDF = (
    b"%PDF-1.1\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 72 72]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


@pytest.fixture
def local_media(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The image, PDF and audio tests download samples with ``httpx.get``: answer those with small local
    files instead (no network in tests); returns the files served. The clients use ``httpx.Client``,
    which is not touched."""
    served: list[bytes] = []
    samples = {".png": (_png(), "image/png"), ".pdf": (_PDF, "application/pdf"), ".wav": (_wav(), "audio/wav")}

    def get(url: str, **_: Any) -> httpx.Response:
        body, mime = next((v for k, v in samples.items() if str(url).endswith(k)), (b"", "text/plain"))
        served.append(body)
        return httpx.Response(200, content=body, headers={"content-type": mime}, request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", get)
    monkeypatch.setenv("LANGCHAIN_TESTS_USER_AGENT", "free-llm-agent tests (local samples)")  # nothing is fetched
    return served
