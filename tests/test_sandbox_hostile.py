"""Hostile generated code against canaries outside the working directory, sandbox on and off.

Every snippet runs through a real :class:`IsolatedExecutor` (one warm executor per mode). The
executor is hosted by a small stand-in for the agent process, started with the key
``FLA_TEST_API_KEY`` in its *initial* environment like the real agent, so that reading
``/proc/<ancestor>/environ`` means something (``monkeypatch.setenv`` alone never shows up there).

Canaries, all outside the working directory:

* ``/var/tmp/fla-hostile-*/readonly``: a file and a tree that may be read (the filesystem is
  read-only in the sandbox, not invisible) but never changed;
* a file in the real ``/tmp`` (the sandbox has a private one);
* an agent home (``agent.db``, ``checkpoints.db``), a ``.env`` file and an ``extra_hidden`` folder
  given to :func:`tools.sandbox.resolve`, and a fake ``$HOME`` with ``.ssh``, ``.aws``, ``.netrc``:
  never readable, never changed;
* the key in the agent's environment: never readable, even encoded past the output redaction.

Sandbox on: no canary may change and no secret may show up (raw, reversed or hex) in a result.
Sandbox off: the snippets really act, so they only ever target these canaries (``~`` is the fake
home; this is checked before the first snippet runs); the canaries are restored before each one,
and each outcome is compared with :data:`EXPECTED_OFF`, which documents what the deny-list alone
stops. ``FLA_HOSTILE_MATRIX=<file>`` writes the outcome matrix as Markdown.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import pytest

from free_llm_agent.tools.isolated_executor import ROOT
from free_llm_agent.tools.local_executor import ExecutionResult
from free_llm_agent.tools.sandbox import Sandbox, probe, resolve
from tests.support.hostile_snippets import BLOCKED, ENV_KEY, EXPECTED_OFF, GOT_THROUGH, HARMLESS, SNIPPETS, Snippet

pytestmark = pytest.mark.timeout(300)

RUN_TIMEOUT_S = 30.0
ANSWER_TIMEOUT_S = 240.0
Entry = tuple[object, ...]
Snapshot = dict[str, Entry]


# ---------------------------------------------------------------------------------------- canaries
class Canaries:
    """The canary files and secrets; snapshots, in-place restores and leak checks."""

    def __init__(self, root: Path, tmp_file: Path, scratch: Path) -> None:
        self.root, self.tmp_file, self.scratch = root, tmp_file, scratch
        tag = os.urandom(5).hex()
        self.secrets: dict[str, str] = {
            name: f"flacanary{key}{tag}{os.urandom(4).hex()}"
            for name, key in [("agent.db", "agentdb"), ("checkpoints.db", "ckpt"), ("ssh key", "ssh"),
                              ("aws credentials", "aws"), ("netrc", "netrc"), (".env", "dotenv"),
                              ("hidden_paths", "extra"), ("/tmp canary", "tmp"), (ENV_KEY, "envvar")]
        }
        self.readable_secret = f"flacanaryreadonly{tag}"  # read-only in the sandbox, readable by design
        self.ro, self.agent_home, self.user_home = root / "readonly", root / "agent_home", root / "user_home"
        self.env_file, self.extra = root / "config" / ".env", root / "hidden_extra"
        self.files: dict[Path, bytes] = {
            self.ro / "secret.txt": f"{self.readable_secret}\n".encode(),
            self.ro / "tree" / "d.txt": b"d\n",
            self.ro / "tree" / "a" / "b" / "c.txt": b"c\n",
            self.agent_home / "agent.db": self._db("secrets", self.secrets["agent.db"]),
            self.agent_home / "checkpoints.db": self._db("checkpoints", self.secrets["checkpoints.db"]),
            self.agent_home / "cache" / "responses.json": b"{}\n",
            self.user_home / ".ssh" / "id_rsa": f"-----BEGIN KEY-----\n{self.secrets['ssh key']}\n".encode(),
            self.user_home / ".aws" / "credentials": f"[x]\nkey = {self.secrets['aws credentials']}\n".encode(),
            self.user_home / ".netrc": f"machine x login y password {self.secrets['netrc']}\n".encode(),
            # the whole Open Interpreter package writes this in $HOME when imported (the executor imports
            # only its terminal, but any other import of it would): there already
            self.user_home / ".cache" / "open-interpreter" / "telemetry_user_id": b"fla-hostile-test",
            self.env_file: f"FLA_DOTENV_KEY={self.secrets['.env']}\n".encode(),
            self.extra / "secret.txt": f"{self.secrets['hidden_paths']}\n".encode(),
            tmp_file: f"{self.secrets['/tmp canary']}\n".encode(),
        }
        self.dirs = sorted({p for f in self.files if f != tmp_file for p in f.parents if _under(p, root)})
        self.modes = {self.user_home / ".ssh": 0o700, self.user_home / ".ssh" / "id_rsa": 0o600}
        self.restore()
        self.pristine = self.content(self.snapshot())

    def _db(self, table: str, secret: str) -> bytes:
        path = self.scratch / f"{table}.db"
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute(f"create table {table} (thread text, value text)")
            db.execute(f"insert into {table} values ('t1', ?)", (secret,))
            db.commit()
        return path.read_bytes()

    def placeholders(self) -> dict[str, str]:
        ro_secret, env_file = str(self.ro / "secret.txt"), str(self.env_file)
        return {
            "root": str(self.root), "tag": self.root.name, "ro": str(self.ro), "ro_secret": ro_secret,
            "ro_secret_parts": repr([ro_secret[:9], ro_secret[9:]]), "tree": str(self.ro / "tree"),
            "tmp_canary": str(self.tmp_file), "agent_home": str(self.agent_home),
            "agent_db": str(self.agent_home / "agent.db"), "ckpt_db": str(self.agent_home / "checkpoints.db"),
            "user_home": str(self.user_home), "env_file": env_file,
            "env_file_parts": repr([env_file[:9], env_file[9:]]), "extra": str(self.extra),
        }

    def hidden_canaries(self) -> list[Path]:
        """What resolve() is asked to hide (the credential paths through the fake $HOME)."""
        home = self.user_home
        return [self.agent_home, self.env_file, self.extra, home / ".ssh", home / ".aws", home / ".netrc"]

    def identity(self) -> list[tuple[int, int] | None]:
        """Inodes of the hidden paths: a sandbox hides them by mounts made when it starts."""
        out: list[tuple[int, int] | None] = []
        for path in self.hidden_canaries():
            try:
                st = path.lstat()
                out.append((st.st_dev, st.st_ino))
            except OSError:
                out.append(None)
        return out

    def snapshot(self) -> Snapshot:
        """Every entry under the canary root, and the /tmp canary: kind, mode, mtime, bytes or target."""
        snap: Snapshot = {}
        paths = [self.root, self.tmp_file]
        for top, dirs, files in os.walk(self.root):
            paths += [Path(top, name) for name in dirs + files]
        for path in paths:
            try:
                st = path.lstat()
            except OSError:
                continue
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                snap[str(path)] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                snap[str(path)] = ("dir", mode, st.st_mtime_ns)
            elif stat.S_ISREG(st.st_mode):
                snap[str(path)] = ("file", mode, st.st_mtime_ns, path.read_bytes())
            else:
                snap[str(path)] = ("other", st.st_mode)
        return snap

    @staticmethod
    def content(snap: Snapshot) -> Snapshot:
        return {path: entry[:2] + entry[3:] if entry[0] in ("dir", "file") else entry for path, entry in snap.items()}

    def intact(self) -> bool:
        return self.content(self.snapshot()) == self.pristine

    def restore(self) -> None:
        """Put every canary back, in place (files keep their inode where they still exist)."""
        wanted = {str(p) for p in [*self.files, *self.dirs]}
        for top, dirs, files in os.walk(self.root, topdown=False):
            for name in dirs + files:
                path = Path(top, name)
                if str(path) not in wanted:
                    _remove(path)
        for path in self.dirs:
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                _remove(path)
            path.mkdir(exist_ok=True)
            os.chmod(path, self.modes.get(path, 0o755))
        for path, data in self.files.items():
            if path.is_symlink() or (path.exists() and not path.is_file()):
                _remove(path)
            if path.exists():
                os.chmod(path, 0o644)
            if not path.exists() or path.read_bytes() != data:
                with open(path, "wb") as f:  # in place
                    f.write(data)
            os.chmod(path, self.modes.get(path, 0o644))

    def leaks(self, text: str) -> list[str]:
        """Names of the secrets in ``text``, raw, reversed or hex-encoded (past the output redaction)."""
        return [name for name, s in self.secrets.items() if any(v in text for v in (s, s[::-1], s.encode().hex()))]


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _diff(before: Snapshot, after: Snapshot) -> list[str]:
    changes = [f"gone: {p}" for p in before if p not in after] + [f"new: {p}" for p in after if p not in before]
    changes += [f"changed: {p} {before[p][:2]} -> {after[p][:2]}"
                for p in before if p in after and before[p] != after[p]]
    return changes


# ---------------------------------------------------------------------------------------- the agent stand-in
# The agent process in miniature: it holds the key in its initial environment and runs the executor.
_AGENT = r"""
import dataclasses, json, sys
from pathlib import Path
from free_llm_agent.tools.isolated_executor import IsolatedExecutor
from free_llm_agent.tools.sandbox import Sandbox

spec = json.loads(sys.argv[1])
box = Sandbox(spec["kind"], spec["reason"], spec["binary"], spec["version"], tuple(spec["hidden"]))
executor = IsolatedExecutor(Path(spec["workspace"]), timeout_s=spec["timeout_s"], max_output_chars=10**6,
                            sandbox=box)
for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "restart":
        executor.close()
        answer = {}
    else:
        answer = dataclasses.asdict(executor.run(request["language"], request["code"]))
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
executor.close()
"""


_WHERE = "import os\nprint(os.path.expanduser('~'))\nprint(os.getcwd())"


class Agent:
    """An IsolatedExecutor with ``sandbox`` in a stand-in agent process; ``run`` like the executor's."""

    def __init__(self, sandbox: Sandbox, workspace: Path, canaries: Canaries) -> None:
        self.sandbox, self.workspace, self.canaries = sandbox, workspace, canaries
        scratch = canaries.scratch / ("on" if sandbox.active else "off")
        scratch.mkdir()
        env = dict(os.environ)  # HOME is the fake home and the key is set (see the canaries fixture)
        env.update({name: str(scratch / name.lower()) for name in (
            "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR", "MPLCONFIGDIR", "XDG_CACHE_HOME",
            "XDG_DATA_HOME", "XDG_CONFIG_HOME")})  # kernel files away from the fake home
        env["PYTHONPATH"] = str(ROOT)
        spec = {**dataclasses.asdict(sandbox), "workspace": str(workspace), "timeout_s": RUN_TIMEOUT_S}
        self._log = open(scratch / "agent.log", "w")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _AGENT, json.dumps(spec)], cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._answers: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(self.proc.stdout, self._answers), daemon=True).start()
        self.identity = canaries.identity()
        self._send({"op": "run", "language": "python", "code": _WHERE})  # the cold start begins now

    def _send(self, request: dict[str, str]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def _ask(self, request: dict[str, str] | None) -> dict[str, Any]:
        if request is not None:
            self._send(request)
        line = self._answers.get(timeout=ANSWER_TIMEOUT_S)
        assert line is not None, f"the agent stand-in died; see {self._log.name}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(self, language: str, code: str) -> ExecutionResult:
        return ExecutionResult(**self._ask({"op": "run", "language": language, "code": code}))

    def check_setup(self) -> None:
        """Before any hostile snippet: ``~`` is the fake home, the workdir is ours, nothing else is touched."""
        home, ws = str(self.canaries.user_home), str(self.workspace)
        py = ExecutionResult(**self._ask(None))  # the answer to the first request (_WHERE)
        sh = self.run("shell", "echo ~; echo \"$HOME\"; pwd")
        if py.output.split() != [home, ws] or sh.output.split() != [home, home, ws]:
            raise RuntimeError(f"unexpected home/workdir in the executor: {py!r} {sh!r}")
        if not self.canaries.intact():
            now = self.canaries.content(self.canaries.snapshot())
            raise RuntimeError(f"starting the executor changed the canaries: {_diff(self.canaries.pristine, now)}")

    def prepare(self) -> None:
        """Empty workdir, canaries restored; a sandbox started before a hidden path was replaced restarts."""
        for entry in self.workspace.iterdir():
            _remove(entry)
        if not self.canaries.intact():
            self.canaries.restore()
        if self.sandbox.active and self.canaries.identity() != self.identity:
            self._ask({"op": "restart"})
            self.identity = self.canaries.identity()

    def close(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def _pump(stream: IO[str] | None, answers: queue.Queue[str | None]) -> None:
    assert stream is not None
    for line in stream:
        answers.put(line)
    answers.put(None)


# ---------------------------------------------------------------------------------------- fixtures
_RESULTS: dict[str, dict[str, str]] = {}


@pytest.fixture(scope="module")
def canaries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canaries]:
    root = Path(tempfile.mkdtemp(prefix="fla-hostile-", dir="/var/tmp"))
    fd, tmp_name = tempfile.mkstemp(prefix="fla-hostile-", suffix=".txt", dir="/tmp")
    os.close(fd)
    try:
        made = Canaries(root, Path(tmp_name), tmp_path_factory.mktemp("hostile-scratch"))
        with pytest.MonkeyPatch.context() as mp:  # before resolve() and before any executor starts
            mp.setenv("HOME", str(made.user_home))
            mp.setenv(ENV_KEY, made.secrets[ENV_KEY])
            yield made
    finally:
        shutil.rmtree(root, ignore_errors=True)
        Path(tmp_name).unlink(missing_ok=True)
        if os.environ.get("FLA_HOSTILE_MATRIX") and _RESULTS:
            Path(os.environ["FLA_HOSTILE_MATRIX"]).write_text(_matrix(), encoding="utf-8")


@pytest.fixture(scope="module")
def agents(canaries: Canaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Agent]]:
    """The executor without and (if bubblewrap works here) with the sandbox, warming up side by side."""
    modes: list[Literal["off", "required"]] = ["off", "required"] if probe()[0] else ["off"]
    made: dict[str, Agent] = {}
    try:
        for mode in modes:
            box = resolve(mode, canaries.agent_home, env_files=[canaries.env_file],
                          extra_hidden=[str(canaries.extra)])
            made[mode] = Agent(box, tmp_path_factory.mktemp(f"ws-{mode}"), canaries)
        for agent in made.values():
            agent.check_setup()
        yield made
    finally:
        for agent in made.values():
            agent.close()


@pytest.fixture(scope="module")
def agent_on(agents: dict[str, Agent]) -> Agent:
    works, reason, _ = probe()
    if not works:
        pytest.skip(f"bubblewrap cannot run here: {reason}")
    return agents["required"]


@pytest.fixture(scope="module")
def agent_off(agents: dict[str, Agent]) -> Agent:
    return agents["off"]


@dataclasses.dataclass
class Outcome:
    result: ExecutionResult
    changed: list[str]
    leaked: list[str]

    @property
    def verdict(self) -> str:
        if self.result.error and self.result.error.startswith("blocked:"):
            return BLOCKED
        return GOT_THROUGH if self.changed or self.leaked else HARMLESS

    def explain(self) -> str:
        r = self.result
        return f"changed={self.changed}\nleaked={self.leaked}\nerror={r.error!r}\noutput={r.output[-3000:]!r}"


def attempt(agent: Agent, snippet: Snippet) -> Outcome:
    agent.prepare()
    before = agent.canaries.snapshot()
    result = agent.run(snippet.language, snippet.render(agent.canaries.placeholders()))
    assert not (result.error or "").startswith(("could not start", "the executor stopped")), result.error
    if snippet.done_marker and not (result.error or "").startswith("blocked:"):
        marker = agent.workspace / snippet.done_marker
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"the background job of {snippet.id} never finished: {result!r}"
    outcome = Outcome(result, _diff(before, agent.canaries.snapshot()), agent.canaries.leaks(
        f"{result.output}\n{result.error or ''}"))
    _RESULTS.setdefault(snippet.id, {})["on" if agent.sandbox.active else "off"] = outcome.verdict
    return outcome


def _matrix() -> str:
    rows = ["| snippet | what it tries | sandbox on | sandbox off (deny-list only) |", "|---|---|---|---|"]
    for s in SNIPPETS:
        got = _RESULTS.get(s.id, {})
        on = got.get("on", "not run")
        on = "**HOLE: got through**" if on == GOT_THROUGH else on
        about = s.about.replace("|", "\\|")
        rows.append(f"| `{s.id}` | {about} | {on} | {got.get('off', 'not run')} |")
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------- tests
def test_snippet_ids_are_unique_and_all_expected() -> None:
    ids = [s.id for s in SNIPPETS]
    assert len(ids) == len(set(ids)) >= 32
    assert set(EXPECTED_OFF) == set(ids)


def test_the_sandbox_hides_the_canaries(agent_on: Agent) -> None:
    hidden = set(agent_on.sandbox.hidden)
    assert {str(p) for p in agent_on.canaries.hidden_canaries()} <= hidden  # ~ expanded with the fake HOME
    c = agent_on.canaries
    agent_on.prepare()
    seen = agent_on.run("shell", f"cat {c.ro}/secret.txt; echo entries: $(find ~/.ssh ~/.aws {c.agent_home} "
                                 f"{c.extra} -mindepth 1 | wc -l); ls {c.tmp_file} 2>&1; echo ok > made.txt")
    assert c.readable_secret in seen.output  # read-only, not invisible: the snippets really run
    assert "entries: 0\n" in seen.output and f"cannot access '{c.tmp_file}'" in seen.output, seen.output
    assert (agent_on.workspace / "made.txt").read_text() == "ok\n"
    assert not c.leaks(seen.output)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_sandbox_on_contains(agent_on: Agent, snippet: Snippet) -> None:
    outcome = attempt(agent_on, snippet)
    assert not outcome.changed and not outcome.leaked, f"SANDBOX HOLE: {snippet.id}\n{outcome.explain()}"


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_sandbox_off_deny_list_only(agent_off: Agent, snippet: Snippet) -> None:
    outcome = attempt(agent_off, snippet)
    if outcome.verdict == BLOCKED:
        assert not outcome.changed and not outcome.leaked
    assert outcome.verdict == EXPECTED_OFF.get(snippet.id), outcome.explain()
