"""What a mistyped command line gets (issue 22, in part): ``--version``; the command or option meant; quotes
for a goal typed as several words. Each is exit 2 (``--version``: 0) with one line naming the fix."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.provider_server import FakeProvider, Reply
from tests.support.cli import cli


def test_version_is_printed() -> None:
    done = cli(["--version"])
    assert done.returncode == 0 and done.stdout.startswith("free-llm-agent ")


@pytest.mark.parametrize(("argv", "hint"), [
    (["rn", "count the words"], "did you mean 'run'?"),
    (["thread"], "did you mean 'threads'?"),
    (["threads", "--jsn"], "did you mean --json?"),
    (["run", "count", "the", "words", "--yes"], 'quote the whole goal: run "count the words"'),
    # the suggested command is safe to paste: no `…`, $(…) or $VAR the shell would run or expand
    (["run", "list `rm -rf ~` and $HOME", "now"], "quote the whole goal: run 'list `rm -rf ~` and $HOME now'"),
    (["run", "it's", "fine"], 'quote the whole goal: run "it\'s fine"'),  # plain words: double quotes
])
def test_a_mistyped_command_line_names_what_was_meant(argv: list[str], hint: str, tmp_path: Path) -> None:
    done = cli(argv, tmp_path / "home")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert hint in done.stderr, done.stderr


def test_providers_without_a_key_are_one_quiet_line_and_check_says_no_key(
        tmp_path: Path, fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path]) -> None:
    """Every command used to print one "skipping X: … is not set" line per provider without a key, and
    ``check`` listed them as ``error``; ``usage`` recommended CAN_INCREASE for them."""
    server = fake_server("openai")
    cfg = make_config({"mine": {"kind": "groq", "base_url": server.base_url},
                       "nokey1": {"kind": "groq", "api_key_env": "NO_SUCH_KEY_1"},
                       "nokey2": {"kind": "groq", "api_key_env": "NO_SUCH_KEY_2"}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("NO_SUCH_KEY")}
    usage = cli(["usage"], tmp_path / "home", cfg, env=env)
    assert usage.returncode == 0, usage.stderr
    assert usage.stderr.count("no key for") == 1 and "nokey1, nokey2" in usage.stderr
    assert "keys set NO_SUCH_KEY_1" in usage.stderr  # the command that fixes it: the key routing tries first
    assert "skipping" not in usage.stderr
    rows = {line.split()[0]: line for line in usage.stdout.splitlines() if "nokey" in line}
    assert rows and all("CAN_INCREASE" not in line for line in rows.values())
    check = cli(["check"], tmp_path / "home", cfg, env=env)
    lines = {line.split()[0]: line for line in check.stdout.splitlines() if line.strip()}
    assert "no key" in lines["nokey1"] and "error" not in lines["nokey1"], check.stdout
    assert " ok " in lines["mine"] + " ", check.stdout


def test_a_rejected_key_is_one_request_and_one_message_never_retried(
        tmp_path: Path, fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path]) -> None:
    """A 401 used to be retried three times, 5 s apart, then reported as "all providers exhausted". With a
    retry delay of 10 minutes configured, the run would take half an hour if it were still retried."""
    server = fake_server("openai")
    server.script(Reply.auth_error())
    cfg = make_config({"mine": {"kind": "groq", "base_url": server.base_url}},
                      fallback={"retry_delay_seconds": 600, "max_retries": 3})
    done = cli(["run", "count the words", "--scratch", "--yes", "--json"], tmp_path / "home", cfg, timeout=120)
    assert json.loads(done.stdout)["status"] == "failed", done.stdout + done.stderr
    assert len([r for r in server.requests if r.method == "POST"]) == 1
    shown = cli(["show", json.loads(done.stdout)["thread_id"], "--json"], tmp_path / "home", cfg)
    errors = json.loads(shown.stdout)["errors"]
    assert len(errors) == 1 and "key rejected (HTTP 401)" in errors[0], errors
