"""The peers' own virtual environment: LiteLLM and LangChain, never in the project's dependencies.

``ensure_peer_venv()`` creates ``bench/.peers-venv`` (git-ignored) with ``uv venv`` and
``uv pip install`` of ``PEER_PACKAGES`` (pinned) the first time, and returns its python.
Peer workers are the files under ``bench/peers/`` run by that interpreter as subprocesses,
so nothing of a peer is imported into the project's interpreter.

    uv run python bench/peers.py          # create (or check) the venv and print its versions
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".peers-venv"
PEERS_DIR = BENCH / "peers"
# Same versions as the project's lock where the project already has them (uv's cache serves them).
PEER_PACKAGES: tuple[str, ...] = (
    "litellm==1.106.2",
    "langchain-openai==1.7.3",
    "langchain-core==1.7.2",
    "openai==2.54.0",
)
_STAMP = VENV / ".fla-peers"


def peer_python() -> Path:
    return VENV / "bin" / "python"


def peer_venv_ready() -> bool:
    return _STAMP.is_file() and _STAMP.read_text() == "\n".join(PEER_PACKAGES) and peer_python().exists()


def ensure_peer_venv(*, quiet: bool = False) -> Path:
    """Create the peers' venv if missing or built from other pins; return its python."""
    if peer_venv_ready():
        return peer_python()
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is needed to build the peers' venv (pip install uv)")
    out = subprocess.DEVNULL if quiet else None
    if VENV.exists():
        shutil.rmtree(VENV)
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    subprocess.run([uv, "venv", "--python", py, str(VENV)], check=True, stdout=out, stderr=out, env=env)
    subprocess.run(
        [uv, "pip", "install", "--python", str(peer_python()), *PEER_PACKAGES],
        check=True, stdout=out, stderr=out, env=env,
    )
    _STAMP.write_text("\n".join(PEER_PACKAGES))
    return peer_python()


def peer_env() -> dict[str, str]:
    """Environment for a peer subprocess: offline LiteLLM cost map, loopback without proxy."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update({
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def main() -> int:
    python = ensure_peer_venv()
    names = ", ".join(repr(p.split("==")[0]) for p in PEER_PACKAGES)
    code = f"import importlib.metadata as m\nfor p in ({names},):\n    print(p, m.version(p))"
    subprocess.run([str(python), "-c", code], check=True, env=peer_env())
    return 0


if __name__ == "__main__":
    sys.exit(main())
