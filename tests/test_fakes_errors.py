"""Which exception each real LangChain client raises for each failure of the fake provider,
and where the HTTP status / headers / body live on it (the table in
``tests.fakes.provider_server``'s docstring).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fakes.provider_server import (
    FakeProvider,
    Reply,
    auth_error,
    error,
    garbage,
    hang,
    rate_limit,
)
from tests.support.clients import make_llm

pytestmark = pytest.mark.timeout(60)

TIMEOUT_S = 0.5  # client timeout used for the hang -> timeout cases


# --------------------------------------------------------------------------- errors


def chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def qualname(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


@dataclass(frozen=True)
class Access:
    """Where status/headers/body live on the raised exception ``e``."""

    status: Callable[[BaseException], Any]
    headers: Callable[[BaseException], Any]
    body: Callable[[BaseException], Any]


# ChatOpenAI/ChatTogether: langchain_openai classes (openai SDK error + ModelError)
OPENAI_ACCESS = Access(
    status=lambda e: e.status_code,  # type: ignore[attr-defined]
    headers=lambda e: e.response.headers,  # type: ignore[attr-defined]
    body=lambda e: e.body,  # type: ignore[attr-defined]  # inner "error" object
)
# ChatGroq: raw groq SDK errors
GROQ_ACCESS = Access(
    status=lambda e: e.status_code,  # type: ignore[attr-defined]
    headers=lambda e: e.response.headers,  # type: ignore[attr-defined]
    body=lambda e: e.body["error"],  # type: ignore[attr-defined]  # whole body
)
# Gemini 4xx: langchain wrapper; the google.genai ClientError is __cause__
GEMINI_4XX_ACCESS = Access(
    status=lambda e: e.__cause__.code,  # type: ignore[union-attr]
    headers=lambda e: e.__cause__.response.headers,  # type: ignore[union-attr]
    body=lambda e: e.__cause__.details["error"],  # type: ignore[union-attr]
)
# Gemini 5xx: GoogleAPIError *is* a google.genai ServerError
GEMINI_5XX_ACCESS = Access(
    status=lambda e: e.code,  # type: ignore[attr-defined]
    headers=lambda e: e.response.headers,  # type: ignore[attr-defined]
    body=lambda e: e.details["error"],  # type: ignore[attr-defined]
)

_LCO = "langchain_openai.chat_models.base."
_LCG = "langchain_google_genai.chat_models."

# (client, case) -> (exception class, access or None when no HTTP status exists)
ERROR_CASES: dict[tuple[str, str], tuple[str, Access | None]] = {}
for _c in ("openai", "together"):
    ERROR_CASES |= {
        (_c, "429"): (_LCO + "OpenAIRateLimitError", OPENAI_ACCESS),
        (_c, "500"): (_LCO + "OpenAIAPIError", OPENAI_ACCESS),
        (_c, "503"): (_LCO + "OpenAIAPIError", OPENAI_ACCESS),
        (_c, "401"): (_LCO + "OpenAIAuthenticationError", OPENAI_ACCESS),
        (_c, "403"): (_LCO + "OpenAIPermissionDeniedError", OPENAI_ACCESS),
        (_c, "400"): (_LCO + "OpenAIInvalidRequestError", OPENAI_ACCESS),
        (_c, "404"): (_LCO + "OpenAIModelNotFoundError", OPENAI_ACCESS),
        (_c, "auth"): (_LCO + "OpenAIAuthenticationError", OPENAI_ACCESS),
        (_c, "garbage"): ("json.decoder.JSONDecodeError", None),
        (_c, "garbage-stream"): ("builtins.ValueError", None),
        (_c, "hang"): (_LCO + "OpenAITimeoutError", None),
    }
ERROR_CASES |= {
    ("groq", "429"): ("groq.RateLimitError", GROQ_ACCESS),
    ("groq", "500"): ("groq.InternalServerError", GROQ_ACCESS),
    ("groq", "503"): ("groq.InternalServerError", GROQ_ACCESS),
    ("groq", "401"): ("groq.AuthenticationError", GROQ_ACCESS),
    ("groq", "403"): ("groq.PermissionDeniedError", GROQ_ACCESS),
    ("groq", "400"): ("groq.BadRequestError", GROQ_ACCESS),
    ("groq", "404"): ("groq.NotFoundError", GROQ_ACCESS),
    ("groq", "auth"): ("groq.AuthenticationError", GROQ_ACCESS),
    ("groq", "garbage"): ("json.decoder.JSONDecodeError", None),
    ("groq", "garbage-stream"): ("builtins.ValueError", None),
    ("groq", "hang"): ("groq.APITimeoutError", None),
    ("gemini", "429"): (_LCG + "GoogleRateLimitError", GEMINI_4XX_ACCESS),
    ("gemini", "500"): (_LCG + "GoogleAPIError", GEMINI_5XX_ACCESS),
    ("gemini", "503"): (_LCG + "GoogleAPIError", GEMINI_5XX_ACCESS),
    ("gemini", "401"): (_LCG + "GoogleAuthenticationError", GEMINI_4XX_ACCESS),
    ("gemini", "403"): (_LCG + "GooglePermissionDeniedError", GEMINI_4XX_ACCESS),
    ("gemini", "400"): (_LCG + "GoogleInvalidRequestError", GEMINI_4XX_ACCESS),
    ("gemini", "404"): (_LCG + "GoogleModelNotFoundError", GEMINI_4XX_ACCESS),
    # a real bad Gemini key is HTTP 400 INVALID_ARGUMENT / API_KEY_INVALID, not 401
    ("gemini", "auth"): (_LCG + "GoogleInvalidRequestError", GEMINI_4XX_ACCESS),
    ("gemini", "garbage"): ("json.decoder.JSONDecodeError", None),
    ("gemini", "garbage-stream"): ("google.genai.errors.UnknownApiResponseError", None),
    ("gemini", "hang"): ("httpx.ReadTimeout", None),
}

CASE_REPLY: dict[str, Callable[[], Reply]] = {
    "429": lambda: rate_limit(retry_after=17, headers={"x-fake": "yes"}),
    "500": lambda: error(500, "boom", headers={"x-fake": "yes"}),
    "503": lambda: error(503, headers={"x-fake": "yes"}),
    "401": lambda: error(401, headers={"x-fake": "yes"}),
    "403": lambda: error(403, headers={"x-fake": "yes"}),
    "400": lambda: error(400, headers={"x-fake": "yes"}),
    "404": lambda: error(404, headers={"x-fake": "yes"}),
    "auth": lambda: auth_error(headers={"x-fake": "yes"}),
    "garbage": lambda: garbage(),
    "garbage-stream": lambda: garbage(),
    "hang": lambda: hang(10),
}


# garbage bodies raise differently per mode: "garbage" is the invoke case, "garbage-stream" the stream one
ERROR_MODES = [
    (case, mode)
    for case in CASE_REPLY
    for mode in ("invoke", "stream")
    if (case, mode) not in {("garbage-stream", "invoke"), ("garbage", "stream")}
]


@pytest.mark.parametrize(("case", "mode"), ERROR_MODES)
def test_error_classification(client: str, fake: FakeProvider, case: str, mode: str) -> None:
    exc_name, access = ERROR_CASES[(client, case)]
    fake.script(CASE_REPLY[case]())
    llm = make_llm(client, fake.base_url, timeout=TIMEOUT_S)
    started = time.monotonic()
    with pytest.raises(Exception) as info:  # the exact class is asserted below
        if mode == "invoke":
            llm.invoke("x")
        else:
            list(llm.stream("x"))
    e = info.value
    assert qualname(e) == exc_name, [qualname(x) for x in chain(e)]
    assert len(fake.requests) == 1, "max_retries=0 must mean one attempt"
    if case == "hang":
        assert time.monotonic() - started < 5
        assert getattr(e, "response", None) is None
        assert any(isinstance(x, httpx.TimeoutException) for x in chain(e))
        return
    if access is None:
        return
    want = (400 if client == "gemini" else 401) if case == "auth" else int(case)
    assert access.status(e) == want
    assert access.headers(e)["x-fake"] == "yes"
    body = access.body(e)
    assert isinstance(body, dict) and body.get("message")
    if case == "429" and client != "gemini":
        assert access.headers(e)["retry-after"] == "17"
        assert body["code"] == "rate_limit_exceeded"
        assert "try again in 17s" in body["message"]
    if case == "429" and client == "gemini":
        assert body["status"] == "RESOURCE_EXHAUSTED"
        delays = [d["retryDelay"] for d in body["details"] if d["@type"].endswith("RetryInfo")]
        assert delays == ["17s"]
        quota_ids = [
            v["quotaId"]
            for d in body["details"]
            if d["@type"].endswith("QuotaFailure")
            for v in d["violations"]
        ]
        assert quota_ids == ["GenerateRequestsPerDayPerProjectPerModel-FreeTier"]
        assert "17s" in str(e)  # the wrapper's message embeds the details too
    if client == "gemini" and case == "auth":
        assert body["details"][0]["reason"] == "API_KEY_INVALID"


def test_langchain_core_model_error_hierarchy() -> None:
    """Which clients' errors are ``langchain_core`` ``ModelError``s (groq's are not)."""
    import groq
    from langchain_core.exceptions import ModelAPIError, ModelRateLimitError, ModelTimeoutError
    from langchain_google_genai.chat_models import (
        ChatGoogleGenerativeAIError,
        GoogleAPIError,
        GoogleRateLimitError,
    )
    from langchain_openai.chat_models.base import OpenAIRateLimitError, OpenAITimeoutError

    assert issubclass(OpenAIRateLimitError, ModelRateLimitError)
    assert issubclass(OpenAITimeoutError, ModelTimeoutError)
    assert issubclass(GoogleRateLimitError, ModelRateLimitError)
    assert issubclass(GoogleRateLimitError, ChatGoogleGenerativeAIError)
    assert issubclass(GoogleAPIError, ModelAPIError)
    assert not issubclass(GoogleAPIError, ChatGoogleGenerativeAIError)
    assert not issubclass(groq.RateLimitError, ModelRateLimitError)
