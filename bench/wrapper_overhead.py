"""Per-call overhead of QuotaAwareChatModel over a bare client, against one loopback fake.

Both paths use the same ``ChatOpenAI`` against the same ``FakeProvider("openai")``; the
wrapper adds the quota reservation, settling, usage log and header correction (SQLite,
WAL) per call. Caching is off and every prompt is different, so every call reaches the
fake. Calls alternate bare / wrapped so drift on a busy machine hits both equally.

Run: ``cd /work/main && uv run python bench/wrapper_overhead.py [--calls 1000]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from providers import QuotaAwareChatModel, build_chat_model
from tests.conftest import write_config
from tests.fakes.provider_server import FakeProvider


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000, help="calls per path (>= 200)")
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"

    with FakeProvider("openai") as fake, tempfile.TemporaryDirectory() as tmp:
        config_dir, env = write_config(
            Path(tmp) / "config",
            {"bench": {"kind": "openai_compatible", "base_url": fake.base_url, "model": "fake-model"}},
            optimization={"enable_caching": False},
        )
        os.environ.update(env)
        wrapped: QuotaAwareChatModel = build_chat_model(config_dir, Path(tmp) / "home")
        bare = ChatOpenAI(model="fake-model", api_key=SecretStr("test-key"), base_url=fake.base_url, max_retries=0)

        for i in range(args.warmup):
            bare.invoke(f"warm-up bare {i}")
            wrapped.invoke(f"warm-up wrapped {i}")

        bare_s: list[float] = []
        wrapped_s: list[float] = []
        for i in range(args.calls):
            start = time.perf_counter()
            bare.invoke(f"bare prompt number {i}")
            bare_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            msg = wrapped.invoke(f"wrapped prompt number {i}")
            wrapped_s.append(time.perf_counter() - start)
            assert msg.response_metadata["provider"] == "bench" and not msg.response_metadata["cached"]

        posts = sum(1 for r in fake.requests if r.method == "POST")
        expected = 2 * (args.calls + args.warmup)
        assert posts == expected, f"fake saw {posts} requests, expected {expected}"

    bare_ms, wrapped_ms = median_ms(bare_s), median_ms(wrapped_s)
    print(f"{args.calls} calls each against a loopback FakeProvider('openai'), caching off, distinct prompts")
    print(f"  bare ChatOpenAI.invoke            median {bare_ms:7.2f} ms")
    print(f"  QuotaAwareChatModel.invoke        median {wrapped_ms:7.2f} ms")
    print(f"  overhead                          median {wrapped_ms - bare_ms:+7.2f} ms per call")
    p90 = statistics.quantiles(wrapped_s, n=10)[-1] * 1000 - statistics.quantiles(bare_s, n=10)[-1] * 1000
    print(f"  overhead at p90                          {p90:+7.2f} ms")


if __name__ == "__main__":
    main()
