"""The PostgreSQL state backend end to end: several "machines" (homes) share one database.

The ledger's own checks run on both backends in tests/test_quota.py (``database_url`` fixture);
here: migrations, the CLI's ``--database-url`` / ``$FREE_AGENT_DATABASE_URL`` and its errors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from free_llm_agent.providers import build_chat_model
from free_llm_agent.storage.errors import UnknownBackend
from free_llm_agent.storage.postgres.db import MIGRATIONS
from free_llm_agent.storage.registry import open_state
from tests.fakes.provider_server import FakeProvider, Reply
from tests.support.cli import cli

pytestmark = pytest.mark.timeout(180)


def test_migrations_are_numbered_and_applied_once(postgres_url: str, tmp_path: Path) -> None:
    first = open_state(postgres_url, tmp_path / "a")
    second = open_state(postgres_url, tmp_path / "b")  # another machine: nothing to apply
    assert first.version == second.version == len(MIGRATIONS)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall() == [
            (n,) for n in range(1, len(MIGRATIONS) + 1)]
    first.close()
    second.close()


def test_unknown_scheme_is_named(tmp_path: Path) -> None:
    with pytest.raises(UnknownBackend, match="mysql"):
        open_state("mysql://x@y/z", tmp_path)


def test_usage_is_shared_by_two_machines_through_the_cli(
    fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path], tmp_path: Path, postgres_url: str
) -> None:
    server = fake_server("openai")
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url,
                                      "limits": {"requests_per_day": 10}}})
    first = build_chat_model(cfg, tmp_path / "machine-a", database_url=postgres_url)
    for i in range(3):
        first.invoke(f"question {i}")
    server.script(Reply.rate_limit(retry_after=600))
    with pytest.raises(Exception, match="exhausted"):
        first.invoke("one more")
    # machine B: the flag, then the environment variable
    by_flag = cli(["--database-url", postgres_url, "usage", "--json"], tmp_path / "machine-b", cfg)
    assert by_flag.returncode == 0, by_flag.stderr
    row = json.loads(by_flag.stdout)["providers"]["groq_llama"]
    assert row["requests_day"] == 3 and row["cooldown_until"] is not None
    env = {**os.environ, "FREE_AGENT_DATABASE_URL": postgres_url}
    by_env = cli(["usage", "--json"], tmp_path / "machine-c", cfg, env=env)
    assert json.loads(by_env.stdout)["providers"]["groq_llama"]["requests_day"] == 3
    assert not (tmp_path / "machine-b" / "agent.db").exists()  # nothing went to SQLite


def test_a_bad_database_url_is_bad_input(make_config: Callable[..., Path], fake_server: Callable[..., FakeProvider],
                                         tmp_path: Path) -> None:
    server = fake_server("openai")
    cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url}})
    done = cli(["--database-url", "mysql://u@h/db", "usage"], tmp_path / "home", cfg)
    assert done.returncode == 2
    assert "unknown scheme 'mysql'" in done.stderr and "Traceback" not in done.stderr
