"""Config loading: the shipped files work; every mistake is reported with file, field and fix."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from free_llm_agent.config import ConfigError, load_config
from free_llm_agent.providers import NoUsableProvider, build_chat_model
from tests.support.cli import cli
from tests.support.config import REAL_KEY_VARS, ConfigFactory, FakeFactory, key_env_for
from tests.support.paths import ROOT

SHIPPED = ROOT / "config"

GOOD_PROVIDERS = """\
providers:
  p:
    kind: groq
    model: llama-fake
    api_key_env: TEST_P_KEY
routing:
  priority: [p]
  task_types: {code_generation: p}
"""
GOOD_LIMITS = """\
rate_limits:
  p: {requests_per_minute: 5, requests_per_day: 20}
optimization: {enable_caching: true}
fallback: {max_wait_seconds: 10}
"""

WriteConfig = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> WriteConfig:
    """``write(providers=..., limits=...)``: a config dir with those texts (good ones by default)."""

    def make(providers: str = GOOD_PROVIDERS, limits: str = GOOD_LIMITS) -> Path:
        d = tmp_path / "cfg"
        d.mkdir(exist_ok=True)
        (d / "providers.yaml").write_text(providers, encoding="utf-8")
        (d / "limits.yaml").write_text(limits, encoding="utf-8")
        return d

    return make


def error_of(config_dir: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(config_dir)
    return " ".join(str(info.value).split())


# --------------------------------------------------------------------------- shipped


def test_shipped_config_loads() -> None:
    config = load_config(SHIPPED)
    assert config.config_dir == SHIPPED
    assert {"google_gemini", "groq_llama", "together_ai"} <= set(config.providers)
    assert config.providers["google_gemini"].kind == "gemini"
    assert config.providers["groq_llama"].kind == "groq"
    assert config.providers["together_ai"].kind == "together"
    assert all(name in config.providers for name in config.routing.priority)
    assert config.limit_for("google_gemini").requests_per_day == 20
    assert config.limit_for("google_gemini").timezone == "America/Los_Angeles"
    assert config.limits.fallback.emergency_provider == "together_ai"
    assert config.limits.optimization.enable_caching is True
    # a provider without a rate_limits entry is unlimited rather than an error
    assert config.limit_for("ollama").requests_per_day is None


def test_default_config_dir_is_the_repo_one(monkeypatch: pytest.MonkeyPatch, write: WriteConfig) -> None:
    assert load_config().config_dir == SHIPPED
    custom = write()
    monkeypatch.setenv("FREE_AGENT_CONFIG_DIR", str(custom))
    assert set(load_config().providers) == {"p"}


def test_limits_file_is_optional(write: WriteConfig) -> None:
    d = write()
    (d / "limits.yaml").unlink()
    config = load_config(d)
    assert config.limit_for("p").requests_per_day is None
    assert config.limits.fallback.max_wait_seconds == 60


# --------------------------------------------------------------------------- bad files


def test_yaml_syntax_error_names_line_and_column(write: WriteConfig) -> None:
    broken = GOOD_PROVIDERS.replace("    model: llama-fake", "    model: [llama-fake")
    msg = error_of(write(providers=broken))
    assert "providers.yaml" in msg
    assert "YAML syntax error" in msg
    assert re.search(r"line \d+, column \d+", msg), msg
    line = int(re.search(r"line (\d+)", msg).group(1))  # type: ignore[union-attr]
    assert 4 <= line <= 6  # at (or just after) the broken line 4


def test_unknown_field(write: WriteConfig) -> None:
    msg = error_of(write(providers=GOOD_PROVIDERS.replace("    model: llama-fake", "    model: m\n    max_token: 5")))
    assert f"{write().name}/providers.yaml" in msg
    assert "providers.p.max_token" in msg
    assert "unknown field" in msg and "spelling" in msg


def test_unknown_top_level_field_in_limits(write: WriteConfig) -> None:
    msg = error_of(write(limits=GOOD_LIMITS + "optimisation: {enable_caching: false}\n"))
    assert "limits.yaml" in msg and "optimisation" in msg and "unknown field" in msg


def test_wrong_type(write: WriteConfig) -> None:
    msg = error_of(
        write(providers=GOOD_PROVIDERS.replace("    model: llama-fake", "    model: m\n    max_tokens: lots"))
    )
    assert "providers.yaml" in msg
    assert "providers.p.max_tokens" in msg
    assert "integer" in msg and "'lots'" in msg


def test_unknown_kind(write: WriteConfig) -> None:
    msg = error_of(write(providers=GOOD_PROVIDERS.replace("kind: groq", "kind: grok")))
    assert "providers.p.kind" in msg
    for kind in ("gemini", "groq", "together", "openai_compatible"):
        assert kind in msg


def test_routing_names_undefined_provider(write: WriteConfig) -> None:
    msg = error_of(write(providers=GOOD_PROVIDERS.replace("priority: [p]", "priority: [p, ghost]")))
    assert "providers.yaml" in msg and "routing.priority" in msg
    assert "'ghost' is not defined" in msg and "use one of p" in msg


def test_task_type_names_undefined_provider(write: WriteConfig) -> None:
    msg = error_of(write(providers=GOOD_PROVIDERS.replace("code_generation: p", "code_generation: ghost")))
    assert "routing.task_types.code_generation" in msg and "'ghost'" in msg


def test_limits_name_undefined_provider(write: WriteConfig) -> None:
    msg = error_of(write(limits=GOOD_LIMITS.replace("  p:", "  q:")))
    assert "limits.yaml" in msg and "rate_limits" in msg and "'q' is not defined" in msg


def test_negative_limit(write: WriteConfig) -> None:
    msg = error_of(write(limits=GOOD_LIMITS.replace("requests_per_day: 20", "requests_per_day: -1")))
    assert "limits.yaml" in msg
    assert "rate_limits.p.requests_per_day" in msg
    assert "greater than or equal to 0" in msg and "-1" in msg


def test_bad_timezone(write: WriteConfig) -> None:
    msg = error_of(
        write(limits=GOOD_LIMITS.replace("requests_per_day: 20", "requests_per_day: 20, timezone: Mars/Olympus"))
    )
    assert "limits.yaml" in msg and "rate_limits.p.timezone" in msg
    assert "Mars/Olympus" in msg and "America/Los_Angeles" in msg


def test_missing_api_key_env(write: WriteConfig) -> None:
    msg = error_of(write(providers=GOOD_PROVIDERS.replace("    api_key_env: TEST_P_KEY\n", "")))
    assert "providers.p.api_key_env" in msg and "local: true" in msg


def test_missing_files_and_dir(tmp_path: Path, write: WriteConfig) -> None:
    msg = error_of(tmp_path / "nowhere")
    assert "nowhere" in msg and "does not exist" in msg and "--config-dir" in msg
    d = write()
    (d / "providers.yaml").unlink()
    msg = error_of(d)
    assert "providers.yaml" in msg and "not found" in msg


def test_top_level_not_a_mapping(write: WriteConfig) -> None:
    msg = error_of(write(providers="- just\n- a list\n"))
    assert "providers.yaml" in msg and "mapping" in msg


# --------------------------------------------------------------------------- keys


def test_provider_without_key_is_skipped_with_notice(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path
) -> None:
    fp = fake_server("openai")
    cfg = make_config(
        {
            "nokey": {"kind": "groq", "base_url": "http://127.0.0.1:9", "key": None},
            "haskey": {"kind": "openai_compatible", "base_url": fp.base_url},
        }
    )
    notices: list[str] = []
    llm = build_chat_model(cfg, home, notices=notices)
    assert notices == [f"skipping nokey: {key_env_for('nokey')} is not set"]
    assert llm.invoke("hi").response_metadata["provider"] == "haskey"


def test_gemini_api_key_works_as_well_as_google_api_key(
    fake_server: FakeFactory, make_config: ConfigFactory, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fp = fake_server("gemini")
    cfg = make_config({"google_gemini": {"kind": "gemini", "base_url": fp.base_url, "api_key_env": "GOOGLE_API_KEY",
                                         "key": None}})
    with pytest.raises(NoUsableProvider, match=r"GOOGLE_API_KEY \(or GEMINI_API_KEY\)"):
        build_chat_model(cfg, home)
    monkeypatch.setenv("GEMINI_API_KEY", "the-gemini-key")  # what Google's own docs call it
    llm = build_chat_model(cfg, home)
    assert llm.invoke("hi").response_metadata["provider"] == "google_gemini"
    assert fp.requests[0].headers.get("x-goog-api-key") == "the-gemini-key"


def test_blank_key_counts_as_missing(make_config: ConfigFactory, home: Path) -> None:
    cfg = make_config({"p": {"kind": "groq", "key": "   "}})
    with pytest.raises(NoUsableProvider):
        build_chat_model(cfg, home)


def test_no_usable_provider_lists_every_env_var_and_signup_page(home: Path) -> None:
    for var in REAL_KEY_VARS:
        assert var not in os.environ
    with pytest.raises(NoUsableProvider) as info:
        build_chat_model(SHIPPED, home)
    msg = str(info.value)
    config = load_config(SHIPPED)
    for name, cfg in config.providers.items():
        if cfg.local:
            assert name in msg  # "run a local model and enable ollama"
            continue
        assert cfg.api_key_env and cfg.api_key_env in msg
        assert cfg.signup_url and cfg.signup_url in msg
    for var in (
        "GOOGLE_API_KEY",
        "GROQ_API_KEY",
        "TOGETHER_API_KEY",
        "HF_TOKEN",
        "OPENROUTER_API_KEY",
        "CEREBRAS_API_KEY",
    ):
        assert msg.count(var) == 1, var  # listed once even when two providers share it


def test_keys_never_written_to_disk(fake_server: FakeFactory, make_config: ConfigFactory, home: Path) -> None:
    fp = fake_server("openai")
    cfg = make_config({"p": {"kind": "openai_compatible", "base_url": fp.base_url, "key": "sk-very-secret-123"}})
    build_chat_model(cfg, home).invoke("hi")
    for path in home.rglob("*"):
        if path.is_file():
            assert b"sk-very-secret-123" not in path.read_bytes(), path
    assert "sk-very-secret-123" not in (cfg / "providers.yaml").read_text()


# --------------------------------------------------------------------------- CLI


# As the README runs it: ``uv run python run_graph.py ...`` (this interpreter where uv is missing).
UV_PYTHON: tuple[str, ...] = (uv, "run", "--no-sync", "python") if (uv := shutil.which("uv")) else (sys.executable,)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_dir", ["does not exist", "--config-dir"]),
        ("unknown_field", ["providers.yaml", "providers.p.max_token", "unknown field"]),
        ("yaml_syntax", ["providers.yaml", "YAML syntax error", "line"]),
    ],
)
def test_cli_bad_config_exits_2_without_traceback(
    case: str, expected: list[str], write: WriteConfig, tmp_path: Path
) -> None:
    if case == "missing_dir":
        bad = tmp_path / "no-such-config"
    elif case == "unknown_field":
        bad = write(providers=GOOD_PROVIDERS.replace("    model: llama-fake", "    model: m\n    max_token: 5"))
    else:
        bad = write(providers=GOOD_PROVIDERS.replace("    model: llama-fake", "    model: [llama-fake"))
    done = cli(["usage"], tmp_path / "home", bad, launcher=UV_PYTHON)
    assert done.returncode == 2, (done.stdout, done.stderr)
    stderr = " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert stderr.startswith("error:"), stderr
    for part in expected:
        assert part in stderr, (part, stderr)
    assert done.stdout == ""


def test_cli_usage_json_on_good_config(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = make_config({"p": {"kind": "groq", "base_url": "http://127.0.0.1:9", "limits": {"requests_per_day": 20}}})
    done = cli(["usage", "--json"], tmp_path / "home", cfg, launcher=UV_PYTHON)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    row = report["providers"]["p"]
    assert row["requests_day"] == 0 and row["limits"]["requests_per_day"] == 20
    assert row["cooldown_until"] is None and row["recommendation"] == "CAN_INCREASE"
    assert yaml.safe_load((cfg / "providers.yaml").read_text())["providers"]["p"]["api_key_env"] == key_env_for("p")


def test_a_task_type_typo_in_routing_is_named(write: WriteConfig) -> None:
    bad = write(providers=GOOD_PROVIDERS.replace("{code_generation: p}", "{code_gen: p}"))
    with pytest.raises(ConfigError, match=r"routing\.task_types\.code_gen: unknown task type; did you mean "
                                         r"'code_generation'\?"):
        load_config(bad)


def test_an_installed_package_reads_no_dotenv_above_it_but_a_checkout_does(tmp_path: Path) -> None:
    """Installed under ``~/.local/share/uv/tools/…/site-packages``, the walk up from the package must not
    load an unrelated ``~/.env``; in a checkout the nearest ``.env`` at or above it is read."""
    from free_llm_agent.config.env_file import repo_env_file

    (tmp_path / ".env").write_text("SOMEONE_ELSES_SECRET=x\n")
    installed = tmp_path / ".local" / "share" / "uv" / "tools" / "fla" / "site-packages" / "free_llm_agent"
    installed.mkdir(parents=True)
    assert repo_env_file(installed) is None
    checkout = tmp_path / "src" / "free-llm-agent"
    checkout.mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'free-llm-agent'\n")
    assert repo_env_file(checkout) == tmp_path / ".env"
    (checkout / ".env").write_text("GROQ_API_KEY=k\n")
    assert repo_env_file(checkout) == checkout / ".env"
