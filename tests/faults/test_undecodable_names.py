"""File names that are not UTF-8 (issue 21, case 1): a folder holding ``caf\\xe9.txt`` (from another system, an
archive) made ``run`` end in a traceback (the listing goes into the prompt, and the prompt is hashed); a task
that created such a name crashed the next batch and every resume. Now such names reach the model as ``\\xNN``
escapes it can open, the run completes, and ``show``/``threads`` work; a goal holding such bytes is exit 2
before anything is stored."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.support.cli import options
from tests.support.paths import CLI, ROOT

PLAN = (
    ("read the old file", "import os\nprint(open(os.fsdecode(b'caf\\xe9.txt')).read())"),
    ("make a new one", "import os\nopen(os.fsdecode(b'n\\xe9w.txt'), 'w').write('new')"),
    ("list the names", "import os\nfor name in sorted(os.listdir('.')):\n    print(name)"),
    ("count the files", "import os\nprint(len(os.listdir('.')))"),
)
pytestmark = pytest.mark.timeout(300)


def _cli(cfg: Path, home: Path, *args: str | bytes) -> subprocess.CompletedProcess[str]:
    argv: list[str | bytes] = [*CLI, *options(home, cfg), *args]  # a goal may be bytes: argv as the OS has it
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=ROOT)


def test_a_folder_with_names_that_are_not_utf8_completes_a_run(
        home: Path, var_tmp: Path, fake_server: Callable[..., FakeProvider],
        make_config: Callable[..., Path]) -> None:
    server = fake_server("openai", responder=make_responder(PLAN))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    (var_tmp / os.fsdecode(b"caf\xe9.txt")).write_text("old")
    done = _cli(cfg, home, "run", "use the files here", "--workdir", str(var_tmp), "--yes", "--json",
                "--thread-id", "bytes")
    assert done.returncode == 0, done.stderr[-3000:]  # before: a traceback from the cache key
    result = json.loads(done.stdout)
    assert result["status"] == "completed", result
    assert (var_tmp / os.fsdecode(b"n\xe9w.txt")).read_text() == "new"
    prompts = [r.text for r in server.requests if r.method == "POST"]
    assert any("caf\\xe9.txt" in p for p in prompts)  # the name as the model can use it
    assert any("n\\xe9w.txt" in p for p in prompts[2:])  # created mid-run: the second batch's listing has it
    shown = _cli(cfg, home, "show", "bytes", "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    outputs = [t["output"] for t in json.loads(shown.stdout)["tasks"]]
    assert "old" in outputs[0] and "w.txt" in outputs[2]  # as the task printed it (Jupyter replaces the byte)
    assert _cli(cfg, home, "threads").returncode == 0


def test_a_goal_holding_bytes_that_are_not_utf8_is_exit_2_before_anything_is_stored(
        home: Path, fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path]) -> None:
    server = fake_server("openai", responder=make_responder(PLAN))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    done = _cli(cfg, home, "run", b"rename caf\xe9.txt", "--scratch", "--yes")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "not UTF-8" in done.stderr and "character 11" in done.stderr
    assert not [r for r in server.requests if r.method == "POST"]
    listed = _cli(cfg, home, "threads", "--json")
    assert json.loads(listed.stdout) == {"threads": []}
