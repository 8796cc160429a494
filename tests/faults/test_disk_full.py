"""A full disk is named as such (issue 21, case 5). With 0 bytes free in the home, ``doctor`` said "healthy"
(its check creates an empty file, which still works), other commands "cannot be opened for writing … choose a
writable --home". Now every command says "no space left on DEVICE (N KB free)" with the fix, exit 2 (doctor:
the problem, exit 1), and nothing is half-written. The home is a full tmpfs in a mount namespace of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.support.paths import ROOT

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                 reason="needs root and unshare to mount a full tmpfs in a mount namespace")]

DRIVER = """
import json, os, subprocess, sys
home, cfg, out = sys.argv[1:4]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", home], check=True)
fd = os.open(os.path.join(home, "fill"), os.O_WRONLY | os.O_CREAT)
try:  # every block of it
    while True:
        os.write(fd, b"x" * 4096)
except OSError:
    pass
os.close(fd)
results = {}
for name, args in (("threads", ["threads"]), ("usage", ["usage"]), ("doctor", ["doctor"]),
                   ("run", ["run", "write a.txt", "--scratch", "--yes"])):
    p = subprocess.run([sys.executable, "run_graph.py", "--config-dir", cfg, "--home", home, *args],
                       capture_output=True, text=True, timeout=120)
    results[name] = [p.returncode, p.stdout, p.stderr]
results["left"] = sorted(n for n in os.listdir(home) if n != "fill")
json.dump(results, open(out, "w"))
"""


def test_every_command_says_the_disk_is_full_naming_the_device(
        tmp_path: Path, var_tmp: Path, fake_server: Callable[..., FakeProvider],
        make_config: Callable[..., Path]) -> None:
    server = fake_server("openai", responder=make_responder((("write a.txt", "open('a.txt','w').write('a')"),)))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    home, out = var_tmp / "home", tmp_path / "results.json"
    home.mkdir()
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", DRIVER,
                           str(home), str(cfg), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    device = f"no space left on {home} (0 KB free)"
    for name in ("threads", "usage", "run"):
        code, _, err = results[name]
        message = " ".join(err.split())
        assert code == 2 and device in message and "use --home elsewhere" in message, (name, err[-1500:])
        assert "Traceback" not in err
    code, printed, err = results["doctor"]
    assert code == 1 and device in " ".join(printed.split()), printed  # before: "healthy", exit 0
    assert not [n for n in results["left"] if n.endswith((".tmp", "-journal", "-wal"))], results["left"]
    assert not [r for r in server.requests if r.method == "POST"]  # nothing was asked: no work lost
