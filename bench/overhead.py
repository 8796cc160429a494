"""Per-call overhead: ours and LiteLLM Router over a bare ChatOpenAI call, loopback fake, cache off.

All paths call the same ``FakeProvider("openai")`` with distinct prompts (nothing cached).
Ours (``QuotaAwareChatModel``: quota reservation, settling, usage log in SQLite) is timed
in the project's interpreter, alternating with a bare ``ChatOpenAI``; LiteLLM's Router
(one deployment, simple-shuffle and usage-based-routing-v2, ``enable_pre_call_checks``)
runs in the peers' venv (``bench/peers/litellm_overhead.py``), alternating with a bare
``ChatOpenAI`` of that venv, so each ratio is taken against a bare call of its own process.

    uv run python bench/overhead.py [--calls 1000] [--no-peers] [--tiny]

``--tiny`` skips LiteLLM (printed) unless ``FLA_BENCH_PEERS=1``.
This replaces the former ``bench/wrapper_overhead.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, add_output_args, loaded_note, markdown_table, median_ms, plt_figure, png_path, save
from langchain_openai import ChatOpenAI
from peers import PEERS_DIR, ensure_peer_venv, peer_env
from pydantic import SecretStr

from free_llm_agent.providers import QuotaAwareChatModel, build_chat_model
from tests.fakes.provider_server import FakeProvider
from tests.support.config import write_config


def ours(base_url: str, calls: int, warmup: int, tmp: Path) -> dict[str, list[float]]:
    config_dir, env = write_config(tmp / "config", {"bench": {"kind": "openai_compatible", "base_url": base_url,
                                                                "model": "fake-model"}},
                                   optimization={"enable_caching": False})
    os.environ.update(env)
    wrapped: QuotaAwareChatModel = build_chat_model(config_dir, tmp / "home")
    bare = ChatOpenAI(model="fake-model", api_key=SecretStr("test-key"), base_url=base_url, max_retries=0)
    samples: dict[str, list[float]] = {"bare": [], "ours": []}
    for i in range(warmup + calls):
        start = time.perf_counter()
        bare.invoke(f"bare prompt number {i}")
        mid = time.perf_counter()
        msg = wrapped.invoke(f"wrapped prompt number {i}")
        end = time.perf_counter()
        assert not msg.response_metadata["cached"]
        if i >= warmup:
            samples["bare"].append(mid - start)
            samples["ours"].append(end - mid)
    return samples


def peers(base_url: str, calls: int, warmup: int) -> dict[str, list[float]]:
    out = subprocess.run([str(ensure_peer_venv()), str(PEERS_DIR / "litellm_overhead.py"), base_url, str(calls),
                          str(warmup)], cwd=REPO, env=peer_env(), check=True, capture_output=True, text=True)
    result: dict[str, list[float]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--no-peers", action="store_true")
    add_output_args(parser)
    args = parser.parse_args()
    calls, warmup = (20, 3) if args.tiny else (args.calls, args.warmup)
    run_peers = not args.no_peers and (not args.tiny or os.environ.get("FLA_BENCH_PEERS") == "1")
    if not run_peers:
        print("note: LiteLLM skipped (--no-peers, or --tiny without FLA_BENCH_PEERS=1)\n")
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    with FakeProvider("openai") as fake, tempfile.TemporaryDirectory() as tmp:
        s = ours(fake.base_url, calls, warmup, Path(tmp))
        if run_peers:
            s.update(peers(fake.base_url, calls, warmup))
    bare, bare_peer = median_ms(s["bare"]), median_ms(s.get("bare_peer", []))
    rows: list[list[object]] = [
        ["bare ChatOpenAI.invoke", f"{bare:.2f}", "1.00×", "—"],
        ["ours: QuotaAwareChatModel.invoke (quota + usage in SQLite)", f"{median_ms(s['ours']):.2f}",
         f"{median_ms(s['ours']) / bare:.2f}×", f"{median_ms(s['ours']) - bare:+.2f}"],
    ]
    labels = {"litellm_shuffle": "LiteLLM Router.completion, simple-shuffle",
              "litellm_usage": "LiteLLM Router.completion, usage-based-routing-v2"}
    if run_peers:
        rows.append(["bare ChatOpenAI.invoke (peers' venv)", f"{bare_peer:.2f}", "1.00×", "—"])
        for key, label in labels.items():
            m = median_ms(s[key])
            rows.append([label, f"{m:.2f}", f"{m / bare_peer:.2f}×", f"{m - bare_peer:+.2f}"])
    print(f"median of {calls} calls per path, loopback FakeProvider('openai'), caching off, distinct prompts")
    print(markdown_table(["path", "median ms", "× bare call (same process)", "overhead ms"], rows))
    p90 = statistics.quantiles(s["ours"], n=10)[-1] - statistics.quantiles(s["bare"], n=10)[-1]
    print(f"\nours: overhead at p90 {p90 * 1000:+.2f} ms; {loaded_note()}")
    fig, (ax,) = plt_figure(7.5, 4.0)
    names = ["bare", "ours"] + ([*labels] if run_peers else [])
    short = {"bare": "bare ChatOpenAI", "ours": "ours", "litellm_shuffle": "LiteLLM shuffle",
             "litellm_usage": "LiteLLM usage-v2"}
    ax.bar([short[n] for n in names], [median_ms(s[n]) for n in names], color="tab:blue")
    ax.set_ylabel("median ms per call (loopback)")
    ax.set_title("Per-call time, cache off")
    save(fig, png_path(args, "overhead"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
