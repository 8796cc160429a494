"""quota_throughput worker: LiteLLM Router, rate-limit aware as its docs recommend.

One deployment per provider in one model group, ``rpm`` set per deployment (LiteLLM has
no per-day limit), ``routing_strategy`` from the spec (default ``usage-based-routing-v2``)
and ``enable_pre_call_checks=True``; everything else at LiteLLM's defaults (its own
retries, cooldowns). No Redis: each process keeps its own usage counts.
"""

from __future__ import annotations

from typing import Any

import litellm
from litellm import Router
from quota_protocol import load_spec, run


def build(spec: dict[str, Any]) -> Router:
    model_list: list[dict[str, Any]] = []
    for p in spec["providers"]:
        params: dict[str, Any] = {"model": f"openai/{p['model']}", "api_base": p["base_url"], "api_key": "test-key"}
        if p.get("rpm"):
            params["rpm"] = p["rpm"]
        model_list.append({"model_name": "bench", "litellm_params": params})
    return Router(
        model_list=model_list,
        routing_strategy=spec.get("litellm_strategy", "usage-based-routing-v2"),
        enable_pre_call_checks=True,
    )


def main() -> None:
    litellm.suppress_debug_info = True
    spec = load_spec()
    router = build(spec)

    def call(prompt: str) -> object:
        return router.completion(model="bench", messages=[{"role": "user", "content": prompt}])

    run(spec, call)


if __name__ == "__main__":
    main()
