"""The test session's PostgreSQL cluster starts and hands out fresh databases."""

from __future__ import annotations

import psycopg

from tests.support.pg import Cluster


def test_fresh_databases_are_separate(pg_cluster: Cluster, postgres_url: str) -> None:
    other = pg_cluster.create_database()
    assert other != postgres_url
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE t (x int)")
    with psycopg.connect(other) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
