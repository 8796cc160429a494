"""Approval in a real terminal (a pty): the y / n / edit prompt of ``run`` without --yes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from free_llm_agent.tools.sandbox import probe
from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.support.paths import CLI, ROOT, RUN_GRAPH

PLAN = (
    ("write a.txt", "open('a.txt','w').write('a')\nprint('wrote a')"),
    ("write b.txt", "open('b.txt','w').write('original')\nprint('wrote b')"),
    ("write c.txt", "open('c.txt','w').write('c')\nprint('wrote c')"),
)
pytestmark = pytest.mark.timeout(180)
PROMPT = r"Run this code\? \[y\]es / \[n\]o / \[e\]dit:"


def spawn_run(fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path,
              tmp_path: Path, editor_script: str, thread_id: str) -> tuple[pexpect.spawn, Path]:
    """``run`` without --yes in a real terminal, against a fake provider, with ``editor_script`` as $EDITOR;
    returns the terminal and the config dir."""
    server = fake_server("openai", responder=make_responder(PLAN))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    editor = tmp_path / "editor.sh"
    editor.write_text(editor_script)
    editor.chmod(0o755)
    child = pexpect.spawn(
        sys.executable, [str(RUN_GRAPH), "--config-dir", str(cfg), "--home", str(home), "run",
                         "write three files", "--scratch", "--thread-id", thread_id],
        cwd=str(ROOT), env={**os.environ, "EDITOR": str(editor), "VISUAL": str(editor)}, encoding="utf-8",
        use_poll=True, timeout=120, dimensions=(50, 140),
    )
    return child, cfg


def test_terminal_approval_rejects_edits_and_approves(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path, tmp_path: Path
) -> None:
    edit = '#!/bin/sh\nsed -i "s/original/edited/" "$1"\n'  # what the user does in $EDITOR: change the code
    child, _ = spawn_run(fake_server, make_config, home, tmp_path, edit, "tty")
    for answer in ("n", "e", "y", "y"):
        child.expect(PROMPT)
        child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    workspace = home / "workspaces" / "tty"
    assert not (workspace / "a.txt").exists()  # rejected: never ran
    assert (workspace / "b.txt").read_text() == "edited"  # the edited code ran, not the original
    assert (workspace / "c.txt").read_text() == "c"
    assert child.exitstatus == 0, child.before
    assert "Task 1: write a.txt" in (child.before or "")  # summary lists the skipped task


# One session tries each way an edit can change nothing (the editor answers differently on each call):
# quitting without saving, the editor failing, emptying the file.
NO_CHANGE_EDITS = ("exit 0", "exit 3", ': > "$1"')
COUNTING_EDITOR = (
    '#!/bin/sh\nn=$(cat "$0.count" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$0.count"\n'
    'case $n in\n' + "".join(f"  {i}) {edit};;\n" for i, edit in enumerate(NO_CHANGE_EDITS, 1)) + 'esac\n'
)


def test_an_edit_that_changes_nothing_is_not_an_approval_and_ctrl_d_pauses(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path, tmp_path: Path,
) -> None:
    child, cfg = spawn_run(fake_server, make_config, home, tmp_path, COUNTING_EDITOR, "tty2")
    child.expect(PROMPT)
    for _ in NO_CHANGE_EDITS:
        child.sendline("e")
        child.expect(r"Nothing changed; nothing runs until you answer y\.")
        child.expect(PROMPT)  # asked again, nothing ran
    assert (tmp_path / "editor.sh.count").read_text().strip() == str(len(NO_CHANGE_EDITS))  # each edit was made
    child.sendeof()  # Ctrl-D
    child.expect(r"the thread is paused, nothing ran")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert "Traceback" not in (child.before or "")
    assert not (home / "workspaces" / "tty2" / "a.txt").exists()
    threads = subprocess.run([*CLI, "--config-dir", str(cfg), "--home",
                              str(home), "threads", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(threads.stdout)["threads"][0]["status"] == "awaiting_approval"


DOMAIN_PROMPT = r"Allow ([a-z.]+)\? \[o\]nce / for this \[t\]hread / \[n\]o:"


@pytest.mark.skipif(not probe()[0], reason=f"no bubblewrap sandbox: {probe()[1]}")
def test_an_unlisted_domain_is_asked_once_for_the_thread_and_no_refuses(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], home: Path
) -> None:
    web = fake_server("openai")
    port = web.base_url.rsplit(":", 1)[1].split("/")[0]
    def fetch(*hosts: str) -> str:
        return (f"import urllib.request\nfor host in {hosts!r}:\n    try:\n"
                f"        urllib.request.urlopen(f'http://{{host}}:{port}/v1/models', timeout=30)\n"
                "        print(host, 'reached')\n"
                "    except Exception as e:\n        print(host, 'refused', getattr(e, 'code', e))")

    plan = (("fetch twice", fetch("thread.test", "once.test", "no.test")),
            ("fetch again", fetch("thread.test", "once.test")), ("c", "print(3)"))
    server = fake_server("openai", responder=make_responder(plan))
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    pins = {name: "127.0.0.1" for name in ("thread.test", "once.test", "no.test")}
    child = pexpect.spawn(
        sys.executable, [str(RUN_GRAPH), "--config-dir", str(cfg), "--home", str(home), "run",
                         "fetch pages", "--scratch", "--thread-id", "ask"],
        cwd=str(ROOT), env={**os.environ, "FREE_AGENT_TEST_RESOLVE": json.dumps(pins)}, encoding="utf-8", use_poll=True,
        timeout=120, dimensions=(50, 140))
    answers = {"thread.test": "t", "once.test": "o", "no.test": "n"}
    asked = []
    child.expect(PROMPT)
    child.sendline("y")
    for _ in range(3):  # task 1 asks about each domain
        child.expect(DOMAIN_PROMPT)
        asked.append(child.match.group(1))
        child.sendline(answers[asked[-1]])
    child.expect(PROMPT)
    child.sendline("y")
    child.expect(DOMAIN_PROMPT)  # task 2: once.test again, thread.test not
    asked.append(child.match.group(1))
    child.sendline("n")
    child.expect(PROMPT)
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert asked == ["thread.test", "once.test", "no.test", "once.test"]
    shown = subprocess.run([*CLI, "--config-dir", str(cfg), "--home",
                            str(home), "show", "ask", "--json"], capture_output=True, text=True, check=True)
    first, second = (t["output"] for t in json.loads(shown.stdout)["tasks"][:2])
    assert "thread.test reached" in first and "once.test reached" in first and "no.test refused 403" in first
    assert "thread.test reached" in second and "once.test refused 403" in second
