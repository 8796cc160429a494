"""Every PostgreSQL advisory lock of the agent has its own key: two uses of one key would make unrelated
work wait for each other (a job queue's schema setup behind a checkpoint setup's CREATE INDEX CONCURRENTLY)."""

from __future__ import annotations

import re

from free_llm_agent.runtime import job_queue
from free_llm_agent.storage import advisory_keys
from free_llm_agent.storage.postgres import checkpoints, db, guard, quota_sql
from tests.support.paths import ROOT


def test_each_advisory_lock_has_its_own_key_and_the_modules_use_the_table() -> None:
    values = list(advisory_keys.ALL.values())
    assert len(values) == len(set(values)) == 7
    assert {db.LOCK_KEY, db.WRITE_KEY, guard.LOCK_CLASS, checkpoints.SETUP_LOCK, quota_sql.PROVIDER_LOCK_CLASS,
            quota_sql.PRUNE_KEY} <= set(values)
    assert job_queue.SCHEMA_LOCK == advisory_keys.JOB_QUEUE_SCHEMA


def test_the_stored_functions_lock_only_keys_of_the_table() -> None:
    literals = {int(n) for n in re.findall(r"advisory_xact_lock(?:_shared)?\((\d+)", quota_sql.__doc__ or "")}
    source = (ROOT / "storage" / "postgres" / "quota_sql.py").read_text()
    literals |= {int(n) for n in re.findall(r"advisory_xact_lock(?:_shared)?\((\d+)", source)}
    assert literals and literals <= set(advisory_keys.ALL.values())
