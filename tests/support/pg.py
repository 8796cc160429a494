"""A throw-away PostgreSQL cluster for the tests: ``initdb`` + ``pg_ctl`` on 127.0.0.1 and a free port.

``initdb`` refuses to run as root, so when the tests run as root the cluster belongs to the
``postgres`` user (``runuser -u postgres``) and lives in a folder that user owns. Where the
server binaries are missing (or cannot be run), :func:`start_cluster` raises
:class:`PostgresUnavailable` with the reason; the fixtures turn it into a printed skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

BINARIES = ("initdb", "pg_ctl", "postgres")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    root: Path
    port: int
    user: str  # the cluster's superuser (the OS user that ran initdb)
    as_user: list[str]  # command prefix that runs a program as that OS user
    options: str = ""  # the server's options (pg_ctl -o)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)

    def halt(self) -> None:
        """Stop the server at once (as a crash would), keeping its data: :meth:`start` brings it back."""
        subprocess.run([*self.as_user, "pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"],
                       capture_output=True, check=False, timeout=60)

    def start(self) -> None:
        done = subprocess.run([*self.as_user, "pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "log"),
                               "-w", "-t", "60", "-o", self.options, "start"], capture_output=True, text=True,
                              check=False, timeout=120, env={**os.environ, "LC_ALL": "C", "LANG": "C"}, cwd=self.root)
        if done.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl start failed: {(done.stderr or done.stdout)[-800:]}")


def start_cluster(max_connections: int = 200) -> Cluster:
    """initdb + start a private cluster, or raise :class:`PostgresUnavailable`.

    ``max_connections``: each ``PgDatabase`` holds a pool of up to 4 connections, so N processes
    that each open one can need 4·N (bench/quota_store.py raises it for its 50 processes).
    """
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        raise PostgresUnavailable(f"PostgreSQL server binaries not on PATH: {', '.join(missing)} "
                                  "(.ci/run installs the postgresql package)")
    as_user: list[str] = []
    user = pwd.getpwuid(os.getuid()).pw_name
    root = Path(tempfile.mkdtemp(prefix="fla-pg-"))
    if os.getuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresUnavailable("running as root and there is no 'postgres' user for initdb") from exc
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root and runuser is missing (initdb refuses root)")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        os.chmod(root, 0o700)
        as_user, user = ["runuser", "-u", "postgres", "--"], "postgres"
    data, sock, port = root / "data", root, _free_port()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    options = f"-h 127.0.0.1 -p {port} -k {sock} -c fsync=off -c max_connections={max_connections}"
    steps = (
        [*as_user, "initdb", "-D", str(data), "-A", "trust", "-U", user, "--no-sync", "-E", "UTF8"],
        [*as_user, "pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o", options, "start"],
    )
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root, check=False, timeout=120)
        if done.returncode != 0:
            log = (root / "log").read_text(errors="replace")[-800:] if (root / "log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable(f"{cmd[len(as_user)]} failed: {(done.stderr or done.stdout)[-800:]} {log}")
    return Cluster(root=root, port=port, user=user, as_user=as_user, options=options)
