"""A server a test started as a process (``langgraph dev``, ``free-llm-agent studio``): a free loopback
port for it, waiting until it answers, and stopping its whole process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ok(proc: subprocess.Popen[bytes], url: str, seconds: float, what: str) -> None:
    """Until ``url/ok`` answers 200; fails with the server's output if it exits, or after ``seconds``."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (proc.stdout.read() if proc.stdout else b"").decode()[-3000:]
        time.sleep(0.3)
    pytest.fail(f"{what} did not answer within {seconds:.0f} s")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and everything it started (its process group, ``start_new_session=True``)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue
