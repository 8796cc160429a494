"""Shared fixtures: an offline environment, loopback fake providers, temp config dirs and homes.

Typical use::

    def test_x(fake_server, make_config, home):
        gem = fake_server("gemini")
        cfg = make_config({"gem": {"kind": "gemini", "base_url": gem.base_url}})
        llm = build_chat_model(cfg, home)

``make_config`` writes ``providers.yaml`` + ``limits.yaml`` into a fresh temp directory.
Each provider spec is a ``providers.yaml`` entry; missing fields get test defaults
(``model: <name>-model``, ``api_key_env: TEST_<NAME>_KEY``, ``timeout_s: 5``) and the key
env var is set to ``"test-key"`` through monkeypatch. A spec may also hold ``limits:``
(that provider's ``rate_limits`` entry) and ``key: None`` (leave its env var unset) or
``key: "..."`` (a different key). ``routing.priority`` defaults to the specs' order.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider
from tests.support.clients import CLIENTS, kind_of
from tests.support.config import CLIENT_ENV_VARS, REAL_KEY_VARS, ConfigFactory, FakeFactory, write_config
from tests.support.pg import Cluster, PostgresUnavailable, start_cluster
from tests.support.provider_clients import KINDS, SetupFactory, setup_factory

# Fixtures kept in their own module: the loopback web server (``base_url``).
pytest_plugins = ("tests.support.web_server",)


@pytest.fixture(scope="session", autouse=True)
def bytecode_cache() -> Iterator[None]:
    """Subprocesses (the CLI, the executor worker, ``langgraph dev``) may cache compiled modules.

    With ``PYTHONDONTWRITEBYTECODE`` set (common in containers) and a venv installed without
    bytecode, every one of the suite's ~100 Python subprocesses compiled langchain, langgraph & co.
    from source again (≈4 s of CPU each). Python's default lets the first one write ``__pycache__``
    and the others read it; nothing a test asserts depends on it (the sandbox sets it again inside,
    where the filesystem is read-only anyway).
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
        yield


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--state-backend", choices=("sqlite", "postgresql"), default="sqlite",
        help="postgresql: every test gets a fresh PostgreSQL database as $FREE_AGENT_DATABASE_URL "
        "(e.g. `uv run pytest --state-backend postgresql tests/test_quota.py tests/test_response_cache.py`)",
    )


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real key, proxy, tracing or config/home/database override from the machine reaches a test
    (the database URL a test gets is :func:`state_backend`'s)."""
    for var in (*REAL_KEY_VARS, *CLIENT_ENV_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(autouse=True)
def user_config_home(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``$XDG_CONFIG_HOME`` in a fresh, empty folder: the user's own config folder (``~/.config/free-llm-agent``,
    which ``init`` writes and every command reads when it holds providers.yaml) never reaches a test, nor the
    CLI subprocesses it starts (they inherit the variable). ``init`` in a test writes under this folder."""
    path = tmp_path_factory.mktemp("xdg-config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(path))
    return path


BOTH_BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_backends: run once per state backend (test ids end in [sqlite] / [postgresql]); "
        "the postgresql run gets a fresh database as $FREE_AGENT_DATABASE_URL")
    config.addinivalue_line(
        "markers", "sqlite_only(reason): inside a both_backends module, a test of SQLite itself (agent.db, its "
        "migrations, its lock file): run once, on SQLite")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``both_backends`` tests run twice: on SQLite and on a fresh PostgreSQL database.

    Not with ``--state-backend postgresql`` (every test is on PostgreSQL already), not for ``sqlite_only``
    tests, and not for tests that take the ``database_url`` fixture (already once per backend)."""
    node = metafunc.definition
    if (metafunc.config.getoption("--state-backend") == "sqlite" and node.get_closest_marker("both_backends")
            and not node.get_closest_marker("sqlite_only") and "database_url" not in metafunc.fixturenames):
        metafunc.parametrize("state_backend", BOTH_BACKENDS, indirect=True)


@pytest.fixture(autouse=True)
def state_backend(offline_env: None, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's state backend: its ``both_backends`` parameter, else ``--state-backend`` (sqlite).

    On postgresql, ``$FREE_AGENT_DATABASE_URL`` is a fresh database of the session's cluster (skipped,
    with the reason printed, where no PostgreSQL can be started). A ``[postgresql]`` test that wrote an
    ``agent.db`` anyway fails: it would have passed on SQLite, not on the database it names."""
    doubled = hasattr(request, "param")
    backend = str(request.param if doubled else request.config.getoption("--state-backend"))
    watched: Path | None = None
    if backend == "postgresql":
        monkeypatch.setenv("FREE_AGENT_DATABASE_URL", str(request.getfixturevalue("postgres_url")))
        if doubled and "tmp_path" in request.fixturenames:
            watched = Path(request.getfixturevalue("tmp_path"))
    yield backend
    if watched is not None:
        stray = sorted(str(p) for p in watched.rglob("agent.db"))
        assert not stray, f"a [postgresql] test used SQLite: {stray} (mark it sqlite_only if it tests SQLite)"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh state directory (agent.db lives here)."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def fake_server() -> Iterator[FakeFactory]:
    """``fake_server(kind, **kwargs)`` starts a loopback FakeProvider, stopped after the test."""
    started: list[FakeProvider] = []

    def start(kind: str, **kwargs: Any) -> FakeProvider:
        fp = FakeProvider(kind, **kwargs).start()
        started.append(fp)
        return fp

    yield start
    for fp in started:
        fp.stop()


@pytest.fixture
def make_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConfigFactory:
    """``make_config(providers, *, routing=None, optimization=None, fallback=None, execution=None) -> config dir``.

    Defaults differ from the shipped files so tests are deterministic: caching off and
    ``max_wait_seconds: 0`` (never wait) unless the test asks otherwise. Key env vars are
    set with monkeypatch, so they vanish after the test.
    """
    counter = itertools.count()

    def make(
        providers: Mapping[str, Mapping[str, Any]],
        *,
        routing: Mapping[str, Any] | None = None,
        optimization: Mapping[str, Any] | None = None,
        fallback: Mapping[str, Any] | None = None,
        execution: Mapping[str, Any] | None = None,
    ) -> Path:
        directory, env = write_config(
            tmp_path / f"config{next(counter)}",
            providers,
            routing=routing,
            optimization=optimization,
            fallback=fallback,
            execution=execution,
        )
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        return directory

    return make


# ------------------------------------------------------------------ real clients against the fakes


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    """Each real LangChain client in turn (gemini, groq, together, openai)."""
    return str(request.param)


@pytest.fixture
def fake(client: str) -> Iterator[FakeProvider]:
    """A fake server speaking ``client``'s wire format."""
    with FakeProvider(kind_of(client)) as fp:
        yield fp


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each provider kind of providers.yaml in turn."""
    return str(request.param)


@pytest.fixture
def setup(fake_server: FakeFactory, make_config: ConfigFactory, home: Path) -> SetupFactory:
    """``setup(kind, primary=..., backup=..., fallback=..., optimization=...)``: a wrapper over two fakes."""
    return setup_factory(fake_server, make_config, home)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A private PostgreSQL cluster for the whole session (stopped and removed at the end)."""
    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        print(f"\nPostgreSQL tests skipped: {exc}")
        pytest.skip(f"no PostgreSQL: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(pg_cluster: Cluster) -> str:
    """The URL of a fresh, empty database in the session's cluster."""
    return pg_cluster.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Each state backend in turn: None (``agent.db`` in the home), then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


# ------------------------------------------------------------------ the sandboxed CLI (test_cli_sandbox, ...)
@pytest.fixture
def var_tmp() -> Iterator[Path]:
    """A folder outside /tmp (the sandbox gives code a private /tmp, so /tmp proves nothing)."""
    path = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="fla-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path]
          ) -> Callable[..., tuple[FakeProvider, Path]]:
    def setup(plan: tuple[tuple[str, str], ...], key: str = "test-key", **config: Any) -> tuple[FakeProvider, Path]:
        server = fake_server("openai", responder=make_responder(plan))
        cfg = make_config({"groq_llama": {"kind": "groq", "base_url": server.base_url, "key": key,
                                          "limits": {"requests_per_minute": 100, "requests_per_day": 1000}}},
                          optimization={"max_batch_size": 3}, **config)
        return server, cfg

    return setup
