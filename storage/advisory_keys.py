"""The PostgreSQL advisory lock keys of the agent, in one table so that no two uses share one.

A key is "FLA" (0x464C41) and a number. Two-key locks (a class and an id) live in a space of their own
(``pg_advisory_lock(int, int)``), but their class numbers are kept distinct here too."""

from __future__ import annotations

LEDGER_LOCK = 0x46_4C_41_01  # every quota write before migration 4 (exclusive); since, held shared
THREAD_LOCK_CLASS = 0x46_4C_41_02  # first key of every thread's run lock (two-key)
CHECKPOINT_SETUP = 0x46_4C_41_03  # one machine at a time runs PostgresSaver.setup() (polled, never waited on)
PROVIDER_LOCK_CLASS = 0x46_4C_41_04  # first key of a provider's quota lock (two-key)
QUOTA_PRUNE = 0x46_4C_41_05  # one pruner of old quota rows at a time (tried, never waited on)
STATE_WRITE = 0x46_4C_41_06  # the write lock of transaction() (cache, usage log, answer grades, schema)
JOB_QUEUE_SCHEMA = 0x46_4C_41_07  # one machine at a time creates the job queue's tables

ALL = {name: value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, int)}
