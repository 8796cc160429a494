"""``studio [--port N] [--host H] [--no-browser] [--no-reload]``: LangGraph Studio's development server
(``langgraph dev``) for this agent, offline, its port checked first.

``langgraph dev`` on a port that is taken prints its banner and then dies (uvicorn's bind error and a
shutdown); with its default ``--reload`` the bind fails before the graph module is imported, so nothing in
the served graph can catch it. This command checks the port the way uvicorn binds it (``SO_REUSEADDR``)
and says in one line what to do instead, exit 2; then it becomes ``python -m langgraph_cli dev`` of this
very environment (``exec``: same process, signals and exit status), with the analytics, version check and
LangSmith tracing off unless the environment sets them, and the global flags passed on as the variables the
served graph reads (``FREE_AGENT_HOME`` …).
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import os
import shlex
import socket
import sys
from pathlib import Path

from free_llm_agent.cli.support import BadInput, hint
from free_llm_agent.config import resolve_home

DEFAULT_PORT = 2024
OFFLINE = {"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true", "LANGSMITH_TRACING": "false"}
GRAPH = "free_llm_agent.graph.workflow:graph"
_FLAG_VARS = (("config_dir", "FREE_AGENT_CONFIG_DIR"), ("home", "FREE_AGENT_HOME"),
              ("database_url", "FREE_AGENT_DATABASE_URL"))


def cmd_studio(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise BadInput(f"--port {args.port}: give a port between 1 and 65535, e.g. --port {DEFAULT_PORT}")
    _check_installed()
    problem = bind_error(args.host, args.port)
    if problem is not None:
        raise BadInput(_explain(args, problem))
    config = _config_file(args)
    argv = [sys.executable, "-m", "langgraph_cli", "dev", "--config", str(config), "--host", args.host,
            "--port", str(args.port), *(["--no-browser"] if args.no_browser else []),
            *(["--no-reload"] if args.no_reload else [])]
    env = {**OFFLINE, **os.environ}  # what the user set wins (e.g. LANGSMITH_TRACING=true)
    for name, var in _FLAG_VARS:
        value = getattr(args, name, None)
        if value:
            env[var] = str(Path(value).expanduser().resolve()) if name != "database_url" else str(value)
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(config.parent)  # where langgraph dev keeps .langgraph_api/
    if os.name != "posix":  # no exec there: a child, and its exit status
        import subprocess

        return subprocess.call(argv, env=env)
    os.execve(sys.executable, argv, env)
    return 0  # not reached


def _check_installed() -> None:
    missing = [name for name in ("langgraph_cli", "langgraph_api", "langgraph_runtime_inmem")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise BadInput(f"studio needs the LangGraph CLI with its in-memory server in the agent's environment "
                       f"({', '.join(missing)} missing): in the checkout, uv sync installs it; installed as a "
                       "tool: uv tool install --with 'langgraph-cli[inmem]' free-llm-agent (or pip install "
                       "'langgraph-cli[inmem]' in its environment)")


def bind_error(host: str, port: int) -> OSError | None:
    """Why a server could not listen on ``host:port`` now (None: it can), binding as uvicorn does."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc
    return None


def _free_port_after(host: str, port: int) -> int | None:
    return next((p for p in range(port + 1, min(port + 100, 65536)) if bind_error(host, p) is None), None)


def _explain(args: argparse.Namespace, problem: OSError) -> str:
    others = [*(["--host", shlex.quote(args.host)] if args.host != "127.0.0.1" else []),
              *(["--no-browser"] if args.no_browser else []), *(["--no-reload"] if args.no_reload else [])]
    if isinstance(problem, socket.gaierror):
        return f"--host {args.host}: not a name or address this machine can listen on ({problem.strerror})"
    if problem.errno == errno.EADDRINUSE:
        free = _free_port_after(args.host, args.port)
        instead = f"; use {hint(args, 'studio', *others, '--port', str(free))}" if free else \
            "; stop it or choose another --port"
        return f"port {args.port} is taken (by another langgraph dev?){instead}"
    if problem.errno == errno.EACCES:
        return f"port {args.port}: not allowed to listen on it (ports below 1024 need root); use --port {DEFAULT_PORT}"
    return f"cannot listen on {args.host}:{args.port} ({problem.strerror or problem}); check --host and --port"


def _config_file(args: argparse.Namespace) -> Path:
    """The checkout's ``langgraph.json``; installed (no checkout), one written into the home's ``studio/``."""
    import free_llm_agent

    checkout = Path(free_llm_agent.__file__).resolve().parent.parent
    if (checkout / "langgraph.json").is_file():
        return checkout / "langgraph.json"
    folder = resolve_home(getattr(args, "home", None)) / "studio"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "langgraph.json"
    path.write_text(json.dumps({"dependencies": ["."], "graphs": {"agent": GRAPH}}, indent=2) + "\n")
    return path
