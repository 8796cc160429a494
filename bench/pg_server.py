"""Fresh PostgreSQL databases for the benchmarks: a throw-away cluster or ``--pg-url``.

``Server(None, ...)`` starts a private cluster (``tests/support/pg.py``: initdb/pg_ctl on 127.0.0.1,
as the ``postgres`` user when run as root) that :meth:`Server.stop` removes; ``Server(url, ...)``
uses a server where that user may create databases. :func:`open_server` turns a missing
server into ``None`` and prints ``PostgreSQL skipped: <reason>`` (the smoke tests look for it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import common  # noqa: F401  (puts the repo on sys.path for tests.support.pg)


class Server:
    """Fresh PostgreSQL databases: in a cluster started here (stopped at the end) or on ``--pg-url``."""

    def __init__(self, url: str | None, max_connections: int) -> None:
        self.cluster: Any = None
        if url is None:
            from tests.support.pg import start_cluster

            self.cluster = start_cluster(max_connections=max_connections)
            print(f"PostgreSQL: throw-away cluster in {self.cluster.root}, port {self.cluster.port}"
                  f" (max_connections {max_connections}; removed at the end)", flush=True)
            url = str(self.cluster.url())
        self.url = url

    @contextmanager
    def database(self, prefix: str = "bench") -> Iterator[str]:
        """A fresh, empty database (dropped afterwards); yields its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlsplit(self.url)._replace(path=f"/{name}").geturl()
        finally:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()


def open_server(url: str | None, max_connections: int = 200) -> Server | None:
    """A :class:`Server`, or None after printing why PostgreSQL cannot be had here."""
    from tests.support.pg import PostgresUnavailable

    try:
        return Server(url, max_connections=max_connections)
    except PostgresUnavailable as exc:
        print(f"PostgreSQL skipped: {exc}", flush=True)
        return None
