"""overhead worker: LiteLLM Router vs a bare ChatOpenAI, both in the peers' venv, one loopback fake.

argv: BASE_URL CALLS WARMUP. Calls alternate bare / shuffle router / usage-based router so
drift hits all equally; prints one JSON object of per-call seconds lists.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import litellm
from langchain_openai import ChatOpenAI
from litellm import Router


def router(base_url: str, strategy: Any) -> Router:
    params = {"model": "openai/fake-model", "api_base": base_url, "api_key": "test-key", "rpm": 1_000_000}
    return Router(model_list=[{"model_name": "bench", "litellm_params": params}], routing_strategy=strategy,
                  enable_pre_call_checks=True, num_retries=0)


def main() -> None:
    base_url, calls, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    litellm.suppress_debug_info = True
    bare = ChatOpenAI(model="fake-model", base_url=base_url, api_key="test-key", max_retries=0)  # type: ignore[arg-type]
    shuffle = router(base_url, "simple-shuffle")
    usage = router(base_url, "usage-based-routing-v2")

    def via(r: Router) -> Callable[[str], Any]:
        return lambda p: r.completion(model="bench", messages=[{"role": "user", "content": p}])

    paths: dict[str, Callable[[str], Any]] = {"bare_peer": bare.invoke, "litellm_shuffle": via(shuffle),
                                              "litellm_usage": via(usage)}
    samples: dict[str, list[float]] = {k: [] for k in paths}
    for i in range(warmup + calls):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn(f"{name} prompt number {i}")
            if i >= warmup:
                samples[name].append(time.perf_counter() - start)
    print(json.dumps(samples))


if __name__ == "__main__":
    main()
