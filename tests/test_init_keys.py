"""A newcomer's set-up (issue 22): ``init`` writes the user's config folder, ``keys set`` stores a key in the
home's ``.env`` (mode 0600), ``keys list`` shows what is set (masked) and where, ``check`` names the config
folder it used; the config lookup order; misspelt names and misplaced keys. End to end through the CLI."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest
import yaml
from dotenv import dotenv_values

from free_llm_agent.config import load_config
from free_llm_agent.config.loader import REPO_CONFIG_DIR
from free_llm_agent.providers.key_formats import key_problems
from tests.fakes.provider_server import FakeProvider
from tests.support.cli import as_json, cli, cli_in_process
from tests.support.paths import ROOT, RUN_GRAPH

GROQ_KEY = "gsk_N0tAReal4ndL0ngEnoughGroqKey7788"
GOOGLE_KEY = "AIzaSyN0tARealG00gleKeyButLongEnough99"


def user_folder(xdg: Path) -> Path:
    return xdg / "free-llm-agent"


def point_at(folder: Path, server: FakeProvider) -> None:
    """The user's providers.yaml as a user would edit it: groq_llama at the loopback fake, nothing else enabled."""
    path = folder / "providers.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for name, entry in doc["providers"].items():
        entry["enabled"] = name == "groq_llama"
    doc["providers"]["groq_llama"].update(base_url=server.base_url, timeout_s=5)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def test_init_then_keys_set_from_stdin_then_check_finds_the_key_and_names_the_config_folder(
        tmp_path: Path, user_config_home: Path, fake_server: Callable[..., FakeProvider]) -> None:
    home, folder = tmp_path / "home", user_folder(user_config_home)
    init = cli(["init"], home)
    assert init.returncode == 0, init.stderr
    for name in ("providers.yaml", "limits.yaml"):
        written = (folder / name).read_text(encoding="utf-8")
        assert f"wrote  {folder / name}" in init.stdout
        assert written.startswith("# free-llm-agent") and (REPO_CONFIG_DIR / name).read_text() in written
    assert "keys set GROQ_API_KEY" in init.stdout and "console.groq.com" in init.stdout  # the next step
    assert "enabled: true" in (folder / "providers.yaml").read_text() and "ollama serve" in init.stdout + (
        folder / "providers.yaml").read_text()

    server = fake_server("openai")
    point_at(folder, server)
    home.mkdir(exist_ok=True)
    env_file = home / ".env"
    env_file.write_text("# my settings\nOTHER_SETTING=kept\nGROQ_API_KEY=an-old-key\n")
    env_file.chmod(0o644)
    stored = cli(["keys", "set", "GROQ_API_KEY"], home, input=GROQ_KEY + "\n")
    assert stored.returncode == 0, stored.stderr
    assert GROQ_KEY not in stored.stdout + stored.stderr
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert dotenv_values(env_file) == {"OTHER_SETTING": "kept", "GROQ_API_KEY": GROQ_KEY}
    assert env_file.read_text().startswith("# my settings\nOTHER_SETTING=kept\n")

    checked = as_json(cli(["check", "--json"], home))
    assert checked["config"] == {"dir": str(folder), "source": "user config folder"}
    assert [(r["provider"], r["ok"]) for r in checked["providers"]] == [("groq_llama", True)], checked
    assert server.last_request is not None
    assert server.last_request.headers["authorization"] == f"Bearer {GROQ_KEY}"
    shown = cli(["check"], home)
    assert shown.returncode == 0 and f"config               {folder}  (your config folder)" in shown.stdout


def test_init_keeps_what_exists_force_writes_it_again_and_config_dir_is_a_target(
        tmp_path: Path, user_config_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = user_folder(user_config_home)
    folder.mkdir(parents=True)
    (folder / "providers.yaml").write_text("# mine\n")
    code, out, _ = cli_in_process(["init"], capsys, tmp_path / "home")
    assert code == 0 and "kept" in out and "--force" in out
    assert (folder / "providers.yaml").read_text() == "# mine\n"  # never overwritten silently
    code, out, _ = cli_in_process(["init", "--force"], capsys, tmp_path / "home")
    assert code == 0 and (folder / "providers.yaml.bak").read_text() == "# mine\n"
    assert load_config().providers == load_config(REPO_CONFIG_DIR).providers  # the copy loads as the defaults
    assert load_config().config_source == "user config folder"

    elsewhere = tmp_path / "my config"
    code, out, _ = cli_in_process(["init"], capsys, tmp_path / "home", elsewhere)
    assert code == 0 and (elsewhere / "providers.yaml").is_file() and (elsewhere / "limits.yaml").is_file()
    step = next(line for line in out.splitlines() if "keys set GROQ_API_KEY" in line)
    assert f"--config-dir '{elsewhere}'" in step  # the next step names the folder
    every = next(line for line in out.splitlines() if line.startswith("Pass --config-dir"))
    assert every == f"Pass --config-dir '{elsewhere}' to every command, or set FREE_AGENT_CONFIG_DIR='{elsewhere}'."


def test_init_refuses_the_packaged_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FREE_AGENT_CONFIG_DIR", str(REPO_CONFIG_DIR))
    before = (REPO_CONFIG_DIR / "providers.yaml").read_bytes()
    code, _, err = cli_in_process(["init", "--force"], capsys, tmp_path / "home")
    assert code == 2 and "packaged defaults" in err and "--config-dir" in err
    assert (REPO_CONFIG_DIR / "providers.yaml").read_bytes() == before


def test_the_config_lookup_order_is_flag_then_variable_then_user_folder_then_packaged_defaults(
        tmp_path: Path, user_config_home: Path, make_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"

    def used(config: Path | None = None) -> tuple[str, str]:
        code, out, err = cli_in_process(["keys", "list", "--json"], capsys, home, config)
        assert code == 0, err
        found = json.loads(out)["config"]
        return found["dir"], found["source"]

    assert used() == (str(REPO_CONFIG_DIR), "packaged defaults")
    folder = user_folder(user_config_home)
    folder.mkdir(parents=True)
    (folder / "limits.yaml").write_text("{}\n")
    assert used() == (str(REPO_CONFIG_DIR), "packaged defaults")  # a user folder without providers.yaml
    assert cli_in_process(["init"], capsys, home)[0] == 0
    assert used() == (str(folder), "user config folder")
    from_variable = make_config({"a": {"kind": "groq"}})
    monkeypatch.setenv("FREE_AGENT_CONFIG_DIR", str(from_variable))
    assert used() == (str(from_variable), "FREE_AGENT_CONFIG_DIR")
    from_flag = make_config({"b": {"kind": "groq"}})
    assert used(from_flag) == (str(from_flag), "--config-dir")


def test_keys_list_masks_the_values_and_says_where_each_was_found(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert cli(["keys", "set", "GROQ_API_KEY"], home, input=GROQ_KEY).returncode == 0
    env = {**os.environ, "GEMINI_API_KEY": GOOGLE_KEY, "HF_TOKEN": "hf_short"}
    listed = cli(["keys", "list", "--json"], home, env=env)
    assert listed.returncode == 0, listed.stderr
    assert GROQ_KEY not in listed.stdout and GOOGLE_KEY not in listed.stdout and "hf_short" not in listed.stdout
    data = json.loads(listed.stdout)
    rows = {r["variable"]: r for r in data["keys"]}
    assert rows["GROQ_API_KEY"]["value"] == "gsk_…7788" and rows["GROQ_API_KEY"]["source"] == str(home / ".env")
    assert rows["GEMINI_API_KEY"]["value"] == "AIza…gh99" and rows["GEMINI_API_KEY"]["source"] == "environment"
    assert rows["GEMINI_API_KEY"]["alias_of"] == "GOOGLE_API_KEY" and not rows["GOOGLE_API_KEY"]["set"]
    assert rows["HF_TOKEN"]["value"] == "…"  # too short to show any of it
    assert rows["TOGETHER_API_KEY"] == {**rows["TOGETHER_API_KEY"], "set": False, "value": None, "source": None}
    assert data["read_order"][0] == "environment" and data["read_order"][-1] == str(home / ".env")

    # The environment is read before the home's .env: its value is the one used, and listed.
    both = cli(["keys", "list"], home, env={**env, "GROQ_API_KEY": "gsk_fromTheEnvironmentNotTheFile1234"})
    line = next(row for row in both.stdout.splitlines() if "GROQ_API_KEY" in row)
    assert "gsk_…1234" in line and "environment" in line, both.stdout
    assert "the first that sets a variable wins: the environment" in both.stdout


def test_a_misspelt_or_empty_key_writes_nothing_and_exits_2(tmp_path: Path) -> None:
    home = tmp_path / "home"
    typo = cli(["keys", "set", "GROQ_API_KY"], home, input=GROQ_KEY)
    assert typo.returncode == 2 and "did you mean GROQ_API_KEY?" in typo.stderr and "--force" in typo.stderr
    assert not (home / ".env").exists()
    for argv, given, why in ((["keys", "set", "GROQ_API_KEY"], "\n", "no value given"),
                             (["keys", "set", "GROQ-API-KEY"], GROQ_KEY, "not an environment variable name"),
                             (["keys", "set", "GROQ_API_KEY"], "a\nb\n", "several lines")):
        done = cli(argv, home, input=given)
        assert done.returncode == 2 and why in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not (home / ".env").exists()
    forced = cli(["keys", "set", "MY_OWN_KEY", "--force"], home, input="value with ' and \\ inside")
    assert forced.returncode == 0 and "no provider" in forced.stderr
    assert dotenv_values(home / ".env") == {"MY_OWN_KEY": "value with ' and \\ inside"}


def test_a_key_in_the_wrong_place_is_warned_once_per_command_and_still_used(
        tmp_path: Path, fake_server: Callable[..., FakeProvider], make_config: Callable[..., Path]) -> None:
    server = fake_server("openai")
    two = {"groq_llama": {"kind": "groq", "base_url": server.base_url, "api_key_env": "GROQ_API_KEY"},
           "groq_llama_fast": {"kind": "groq", "base_url": server.base_url, "api_key_env": "GROQ_API_KEY"}}
    cfg = make_config(two)
    home = tmp_path / "home"
    stored = cli(["keys", "set", "GROQ_API_KEY"], home, cfg, input=GOOGLE_KEY)
    assert stored.returncode == 0 and stored.stderr.count("looks like a Google key") == 1, stored.stderr
    env = {k: v for k, v in os.environ.items() if k != "GROQ_API_KEY"}  # the key stored in the home's .env
    checked = cli(["check"], home, cfg, env=env)
    assert checked.returncode == 0, checked.stderr  # warned, never refused
    assert checked.stderr.count("GROQ_API_KEY holds what looks like a Google key") == 1, checked.stderr
    assert GOOGLE_KEY not in checked.stderr + checked.stdout
    clean = cli(["check"], home, cfg)  # make_config's own key: nothing to say about it
    assert "warning" not in clean.stderr, clean.stderr


@pytest.mark.parametrize(("var", "value", "kind", "base_url", "expected"), [
    ("GROQ_API_KEY", GOOGLE_KEY, "groq", None, "looks like a Google key"),
    ("GOOGLE_API_KEY", GROQ_KEY, "gemini", None, "looks like a Groq key"),
    ("OPENROUTER_API_KEY", "hf_abcdefghijklmnop", "openai_compatible", "https://openrouter.ai/api/v1",
     "looks like a Hugging Face key"),
    ("HF_TOKEN", "sk-or-v1-abcdefghijklmnop", "openai_compatible", "https://router.huggingface.co/v1",
     "looks like an OpenRouter key"),
    ("GROQ_API_KEY", f'"{GROQ_KEY}"', "groq", None, "starts or ends with a quote"),
    ("GROQ_API_KEY", "gsk_abc def", "groq", None, "a space or line break inside"),
    ("GROQ_API_KEY", "test-key", "groq", None, None),  # no known vendor's prefix: nothing to say
    ("LOCAL_KEY", GOOGLE_KEY, "openai_compatible", "http://127.0.0.1:8080/v1", None),  # vendor unknown
    ("GROQ_API_KEY", GOOGLE_KEY, "groq", "https://generativelanguage.googleapis.com/v1", None),  # host decides
])
def test_key_format_warnings_come_from_the_table_of_prefixes(
        var: str, value: str, kind: str, base_url: str | None, expected: str | None) -> None:
    from free_llm_agent.config import ProviderConfig

    cfg = ProviderConfig(kind=kind, model="m", api_key_env=var, base_url=base_url)  # type: ignore[arg-type]
    problems = key_problems(var, value, [("p", cfg)])
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems
    assert not any(value.strip('"') in p for p in problems)  # never the key itself


def prompt(home: Path) -> pexpect.spawn:
    """``keys set GROQ_API_KEY`` in a terminal, at its prompt (SIGINT at its default: the test sends Ctrl-C)."""
    child = pexpect.spawn(sys.executable, [str(RUN_GRAPH), "--home", str(home), "keys", "set", "GROQ_API_KEY"],
                          cwd=str(ROOT), env=dict(os.environ), encoding="utf-8", use_poll=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    child.expect("GROQ_API_KEY \\(what you type is not shown\\): ")
    return child


def test_the_prompt_does_not_echo_the_key_and_ctrl_c_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    child = prompt(home)
    child.sendline(GROQ_KEY)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert GROQ_KEY not in (child.before or "") and "saved in" in (child.before or "")
    assert dotenv_values(home / ".env") == {"GROQ_API_KEY": GROQ_KEY}

    child = prompt(home)
    child.send("gsk_half")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130 and "nothing was written" in (child.before or ""), child.before
    assert "Traceback" not in (child.before or "")
    assert dotenv_values(home / ".env") == {"GROQ_API_KEY": GROQ_KEY}


def test_with_no_key_at_all_the_error_names_the_command_that_stores_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli_in_process(["check"], capsys, tmp_path / "home")
    assert code == 2 and "No LLM provider is usable" in err
    assert "keys set GROQ_API_KEY" in err  # the provider routing tries first
    assert "'init' writes one to edit" in err  # enabling ollama: not in the packaged files


def test_init_names_the_first_key_not_set_yet(tmp_path: Path, user_config_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY")}
    done = cli(["init"], tmp_path / "home", env={**env, "GROQ_API_KEY": GROQ_KEY})
    assert done.returncode == 0, done.stderr
    step = next(line for line in done.stdout.splitlines() if " keys set " in line)
    assert step.endswith("keys set GOOGLE_API_KEY"), done.stdout  # groq's key is set: gemini is tried next


def test_keys_list_suggests_the_key_routing_tries_first_as_init_does(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GROQ_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY")}
    listed = cli(["keys", "list"], tmp_path / "home", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.rstrip().endswith("keys set GROQ_API_KEY"), listed.stdout  # not the file's first
    with_groq = cli(["keys", "list"], tmp_path / "home", env={**env, "GROQ_API_KEY": GROQ_KEY})
    assert with_groq.stdout.rstrip().endswith("keys set GOOGLE_API_KEY"), with_groq.stdout
