"""What a mistyped command line gets (issue 22, in part): ``--version``; the command or option meant; quotes
for a goal typed as several words. Each is exit 2 (``--version``: 0) with one line naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import cli


def test_version_is_printed() -> None:
    done = cli(["--version"])
    assert done.returncode == 0 and done.stdout.startswith("free-llm-agent ")


@pytest.mark.parametrize(("argv", "hint"), [
    (["rn", "count the words"], "did you mean 'run'?"),
    (["thread"], "did you mean 'threads'?"),
    (["threads", "--jsn"], "did you mean --json?"),
    (["run", "count", "the", "words", "--yes"], 'quote the whole goal: run "count the words"'),
])
def test_a_mistyped_command_line_names_what_was_meant(argv: list[str], hint: str, tmp_path: Path) -> None:
    done = cli(argv, tmp_path / "home")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert hint in done.stderr, done.stderr
