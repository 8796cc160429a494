"""quota_throughput worker: LangChain ``with_fallbacks`` + ``InMemoryRateLimiter``.

One ``ChatOpenAI`` per provider in priority order, each with an ``InMemoryRateLimiter``
at the provider's per-minute rate (none where only a per-day limit exists, which the
limiter cannot express), ``max_retries=0`` as LangChain's fallback guide advises, the
first with ``with_fallbacks`` to the others. The limiter lives in the process.
"""

from __future__ import annotations

from typing import Any

from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_openai import ChatOpenAI
from quota_protocol import load_spec, run


def build(spec: dict[str, Any]) -> Any:
    models = []
    for p in spec["providers"]:
        limiter = None
        if p.get("rpm"):
            limiter = InMemoryRateLimiter(requests_per_second=p["rpm"] / 60.0, check_every_n_seconds=0.05,
                                          max_bucket_size=1)
        models.append(ChatOpenAI(model=p["model"], base_url=p["base_url"], api_key="test-key",  # type: ignore[arg-type]
                                 max_retries=0, rate_limiter=limiter))
    return models[0].with_fallbacks(models[1:])


def main() -> None:
    spec = load_spec()
    chain = build(spec)
    run(spec, chain.invoke)


if __name__ == "__main__":
    main()
