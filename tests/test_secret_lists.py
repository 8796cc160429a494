"""Each entry of the lists in tools/secrets.py, on its own: every secret-like variable is removed and
every ordinary one kept; every credential path (and every file a variable names) is found and,
hidden the way tools/sandbox.py hides it, unreadable from inside a real bubblewrap.

The variables' values and the fake home's files hold canaries; one executor run and one bubblewrap
run (module fixtures) then serve every parametrized case.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from free_llm_agent.tools.secrets import (
    CREDENTIAL_DIRS,
    CREDENTIAL_FILE_VARS,
    CREDENTIAL_HOME_VARS,
    CREDENTIAL_PATHS,
    credential_paths,
    hide_args,
    redact,
    scrubbed_env,
    why_secret,
)

# --- environment -----------------------------------------------------------------------------------

GHP = "ghp_" + "C4n4ry" * 6  # a GitHub token by its shape
# Variables generated code must not get: (name, value). Each value is unique, for the executor run.
SECRET_VARS: tuple[tuple[str, str], ...] = (
    # proxies (the sandbox sets its own)
    ("HTTPS_PROXY", "http://user:PW@proxy:3128"), ("HTTP_PROXY", "http://proxy-http.example:3128"),
    ("ALL_PROXY", "socks5://proxy-all.example:1080"), ("https_proxy", "http://proxy-lower.example:3128"),
    ("FTP_PROXY", "http://proxy-ftp.example:21"), ("no_proxy", "canary-no-proxy.example"),
    # credentials in a URL, by name or by value
    ("REDIS_URL", "redis://:pw@host:6379/0"), ("MONGO_URI", "mongodb+srv://u:p@c.example/db"),
    ("DATABASE_URL", "postgresql://app:canary-db-pw@db.example/app"),
    ("SQLALCHEMY_DATABASE_URI", "postgresql://u:canary-sqla@h/db"),
    ("CELERY_BROKER_URL", "amqp://guest:canary-amqp@rabbit.example//"),
    ("PIP_INDEX_URL_PRIVATE", "https://user:canary-pip@pypi.example/simple"),
    ("REPO_REMOTE", f"https://{GHP}@github.com/org/repo.git"),
    ("SENTRY_DSN", "https://canarysentrykey@o1.ingest.sentry.io/1"), ("DJANGO_DSN", "canary-django-dsn"),
    ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/CANARY/WEBHOOK"),
    # tokens and keys by name
    ("TOKEN", "canary-token"), ("APIKEY", "canary-apikey"), ("API_KEY", "canary-api-key"),
    ("OPENAI_API_KEY", "sk-canary-openai"), ("GROQ_API_KEY", "canary-groq"), ("X_APIKEY", "canary-x-apikey"),
    ("GITHUB_TOKEN", "canary-github-token"), ("GH_TOKEN", "canary-gh-token"), ("GITHUB_PAT", "canary-github-pat"),
    ("NPM_TOKEN", "canary-npm-token"), ("HF_TOKEN", "canary-hf-token"), ("VAULT_TOKEN", "canary-vault-token"),
    ("CI_JOB_TOKENS", "canary-ci-tokens"), ("SIGNING_KEY", "canary-signing-key"), ("KEY", "canary-bare-key"),
    ("SSH_PRIVATE_KEY", "canary-ssh-private-key"), ("AZURE_CLIENT_SECRET", "canary-azure-secret"),
    ("JWT_SECRET", "canary-jwt"), ("PGPASSWORD", "canary-pgpassword"), ("MYSQL_PWD", "canary-mysql-pwd"),
    ("LDAP_PASSWD", "canary-ldap"), ("SMTP_PASS", "canary-smtp"), ("GPG_PASSPHRASE", "canary-gpg-passphrase"),
    ("REGISTRY_CREDENTIALS", "canary-registry-creds"), ("npm_config__auth", "canary-npm-auth"),
    ("BASIC_AUTH_HEADER", "canary-basic-auth"), ("SESSION_COOKIE", "canary-cookie"),
    ("MY_SETTING", GHP + "Q"), ("DEPLOY_KEY_PEM", "-----BEGIN OPENSSH PRIVATE KEY-----canary"),
    ("GIT_CONFIG_PARAMETERS", "'http.extraheader=Authorization: canary-git-config'"),
    ("GIT_CONFIG_VALUE_0", "Authorization: canary-git-value"),
    # TOKEN anywhere in the name, JWTs, connection strings, headers, 1Password sessions
    ("SYSTEM_ACCESSTOKEN", "canary-azure-pipelines"), ("NGROK_AUTHTOKEN", "canary-ngrok"),
    ("CIRCLE_OIDC_TOKEN_V2", "canary-circle-oidc"), ("CI_JOB_JWT_V2", "canary-gitlab-jwt"),
    ("npm_config_//registry.npmjs.org/:_authToken", "6f1c2a4e-9b7d-4c3e-8a51-0d2f7e9c4b13"),
    ("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=canary"), ("ConnectionStrings__Main", "canary-cs"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer canary-otel"), ("OP_SESSION_my", "canary-op-session"),
    # keys and passwords by their shape in the value
    ("AzureWebJobsStorage", "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=canaryAzure=="),
    ("SERVICEBUS", "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=canarySb="),
    ("BLOB_SAS_URL", "https://x.blob.core.windows.net/c?sv=2022-11-02&sp=r&sig=canarySas%3D"),
    ("JDBC_URL", "jdbc:postgresql://h/db?user=u&password=canary-jdbc"),
    ("ODBC_DSN_STRING", "Driver={ODBC Driver 18};Server=h;Uid=u;Pwd=canary-odbc;"),
    ("ID_PAYLOAD", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.Y2FuYXJ5LXNpZw"),
    ("STRIPE_LIVE", "sk_live_" + "C4n4ryStr1pe" * 2), ("STRIPE_RESTRICTED", "rk_live_" + "C4n4ryR3str" * 2),
    ("STRIPE_TEST", "sk_test_" + "C4n4ryT3st" * 2),
    # AWS: everything but region and profile names
    ("AWS_ACCESS_KEY_ID", "AKIACANARY0000000000"), ("AWS_SECRET_ACCESS_KEY", "canary-aws-secret"),
    ("AWS_SESSION_TOKEN", "canary-aws-session"), ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://canary-aws/creds"),
    ("AWS_ENDPOINT_URL", "http://canary-aws-endpoint.example"),
    # credential files
    ("GOOGLE_APPLICATION_CREDENTIALS", "/var/canary/gcp.json"), ("KUBECONFIG", "/var/canary/kube-a:/var/canary/kb"),
    ("DOCKER_CONFIG", "/var/canary/docker"), ("NETRC", "/var/canary/netrc"), ("PIP_CONFIG_FILE", "/var/canary/pip"),
    ("HISTFILE", "/var/canary/histfile"), ("GOOGLE_GHA_CREDS_PATH", "/var/canary/gha-creds.json"),
    # this agent's and its tracer's settings
    ("FREE_AGENT_HOME", "/var/canary/free-agent-home"), ("LANGSMITH_API_KEY", "canary-langsmith"),
    ("LANGCHAIN_ENDPOINT", "https://canary-langchain.example"),
    # doors to agents, desktops, terminals and daemons
    ("SSH_AUTH_SOCK", "/tmp/canary-ssh/agent.sock"), ("SSH_AGENT_PID", "4242424"),
    ("GPG_AGENT_INFO", "/tmp/canary-gpg:0:1"), ("DISPLAY", "canary-display:0"), ("WAYLAND_DISPLAY", "canary-wl-0"),
    ("XAUTHORITY", "/var/canary/Xauthority"), ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/canary/bus"),
    ("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/canary/system_bus"), ("XDG_RUNTIME_DIR", "/run/canary-user"),
    ("KRB5CCNAME", "FILE:/tmp/canary_krb5cc"), ("DOCKER_HOST", "unix:///run/canary-docker.sock"),
    ("CONTAINER_HOST", "unix:///run/canary-podman.sock"), ("TMUX", "/tmp/canary-tmux/default,1,0"),
    ("STY", "4242.canary-screen"), ("KITTY_LISTEN_ON", "unix:/tmp/canary-kitty"), ("NVIM", "/tmp/canary-nvim.0"),
    ("GIT_ASKPASS", "/opt/canary/askpass.sh"), ("VSCODE_IPC_HOOK_CLI", "/run/canary/vscode-ipc.sock"),
)
# Ordinary variables that stay, the near misses among them.
KEPT_VARS: tuple[tuple[str, str], ...] = (
    ("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", "/home/someone"), ("LANG", "C.UTF-8"), ("LC_ALL", "C.UTF-8"),
    ("TERM", "xterm-256color"), ("VIRTUAL_ENV", "/work/.venv"), ("PYTHONPATH", "/work"), ("USER", "someone"),
    ("LOGNAME", "someone"), ("SHELL", "/bin/bash"), ("EDITOR", "vim"), ("TZ", "Europe/Paris"), ("PWD", "/work"),
    ("OLDPWD", "/"), ("HOSTNAME", "box"), ("PAGER", "less"), ("COLORTERM", "truecolor"), ("NO_COLOR", "1"),
    ("CI", "true"), ("AWS_REGION", "eu-west-3"), ("AWS_DEFAULT_REGION", "eu-west-3"), ("AWS_PROFILE", "dev"),
    ("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"),
    ("TOKENIZERS_PARALLELISM", "false"), ("KEYMAP", "fr"), ("GIT_AUTHOR_NAME", "Some One"),
    ("GIT_AUTHOR_EMAIL", "one@example.org"), ("GPG_TTY", "/dev/pts/1"), ("PIP_INDEX_URL", "https://pypi.org/simple"),
    ("UPSTREAM", "https://github.com/org/repo"), ("REPO_SSH", "ssh://git@github.com/org/repo.git"),
    ("HF_HUB_OFFLINE", "1"), ("CARGO_HOME", "/opt/cargo"), ("JAVA_HOME", "/usr/lib/jvm/default"),
    ("GOPATH", "/home/someone/go"), ("CONDA_PREFIX", "/opt/conda"), ("XDG_CONFIG_HOME", "/home/someone/.config"),
    ("XDG_SESSION_TYPE", "tty"), ("DESKTOP_SESSION", "gnome"), ("MPLBACKEND", "Agg"), ("OMP_NUM_THREADS", "4"),
    ("CUDA_VISIBLE_DEVICES", "0"), ("PYTHONDONTWRITEBYTECODE", "1"), ("SSH_TTY", "/dev/pts/1"),
    ("TIKTOKEN_CACHE_DIR", "/home/someone/.cache/tiktoken"), ("TOKENIZER_NAME", "gpt2"), ("HEADLESS", "1"),
    ("KEYBOARD_LAYOUT", "us"), ("HEADER_COLOR", "blue"), ("OP_MODE", "fast"), ("JDBC_DRIVER", "org.postgresql.Driver"),
    ("PGOPTIONS", "-c statement_timeout=5s"), ("SQL_OPTS", "sslmode=require;connect_timeout=5"),
    ("QUERY", "https://example.org/search?q=signal&sig_level=2&pwd_hint=none"), ("EYE_COLOR", "eyJane"),
    ("SK_LIVE_REGION", "sk_live_region"),
)


@pytest.mark.parametrize(("name", "value"), SECRET_VARS, ids=[n for n, _ in SECRET_VARS])
def test_secret_variable_is_removed(name: str, value: str) -> None:
    kept, removed = scrubbed_env({name: value, "PATH": "/usr/bin"})
    assert removed == {name: value} and kept == {"PATH": "/usr/bin"}
    assert why_secret(name, value)


@pytest.mark.parametrize(("name", "value"), KEPT_VARS, ids=[n for n, _ in KEPT_VARS])
def test_ordinary_variable_is_kept(name: str, value: str) -> None:
    kept, removed = scrubbed_env({name: value})
    assert kept == {name: value} and removed == {}, why_secret(name, value)


def test_configured_key_vars_are_removed_whatever_their_name() -> None:
    kept, removed = scrubbed_env({"MY_CUSTOM": "custom-key-value", "PATH": "/bin"}, ["MY_CUSTOM"])
    assert removed == {"MY_CUSTOM": "custom-key-value"} and kept == {"PATH": "/bin"}


def test_redact_replaces_values_and_url_passwords_even_short_ones_in_urls() -> None:
    removed = {"REDIS_URL": "redis://:pw@host:6379/0", "DATABASE_URL": "postgresql://app:s3cr3t-pass@db/app",
               "GROQ_API_KEY": "gsk_123456789", "DISPLAY": ":0"}
    text = ("redis://:pw@host:6379/0 | redis://other:pw@elsewhere | dsn postgresql://x:s3cr3t-pass@y | "
            "s3cr3t-pass | gsk_123456789 | pw and :0 stay")
    assert redact(text, removed) == (
        "[redacted REDIS_URL] | redis://other:[redacted REDIS_URL]@elsewhere | dsn postgresql://x:[redacted "
        "DATABASE_URL]@y | [redacted DATABASE_URL] | [redacted GROQ_API_KEY] | pw and :0 stay")


@pytest.fixture
def executor_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in SECRET_VARS:
        monkeypatch.setenv(name, value)
    return dict(SECRET_VARS)


@pytest.mark.timeout(120)
def test_the_sandboxed_executor_gets_none_of_them(executor_env: dict[str, str], tmp_path: Path) -> None:
    try:
        from free_llm_agent.tools.isolated_executor import IsolatedExecutor
        from free_llm_agent.tools.sandbox import SandboxUnavailable, resolve
    except ImportError:  # tools/sandbox.py in the middle of a rewrite: the same check without the executor
        output = subprocess.run(["env"], env=scrubbed_env(os.environ)[0], capture_output=True, text=True).stdout
    else:
        try:
            sandbox = resolve("required", tmp_path / "agent-home")
        except SandboxUnavailable as exc:
            pytest.skip(str(exc))
        with IsolatedExecutor(tmp_path / "ws", timeout_s=60, sandbox=sandbox, network=False) as ex:
            result = ex.run("shell", "env; echo env-done")
        assert result.ok and "env-done" in result.output, result.output
        output = result.output
    assert "PATH=" in output
    # values, not names: the sandbox may set variables of its own (a proxy, a runtime dir), never these
    assert {name for name, value in executor_env.items() if value in output} == set()


# --- credential paths ------------------------------------------------------------------------------

DIR_VARS = {"AZURE_CONFIG_DIR", "CLOUDSDK_CONFIG", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "MINIKUBE_HOME", "GNUPGHOME",
            "PASSWORD_STORE_DIR", "OP_CONFIG_DIR", "KAGGLE_CONFIG_DIR", "CODEX_HOME", "CLAUDE_CONFIG_DIR",
            "GH_CONFIG_DIR"}
_XDG = {"~/.config/": "XDG_CONFIG_HOME", "~/.local/share/": "XDG_DATA_HOME", "~/.cache/": "XDG_CACHE_HOME"}
XDG_ENTRIES = [p for p in CREDENTIAL_PATHS if any(p.startswith(prefix) for prefix in _XDG)]
HOME_ENTRIES = [(var, name) for var, names in CREDENTIAL_HOME_VARS.items() for name in names]


@dataclass
class Case:
    """One thing to hide: the absolute paths it stands for, and what is written in them."""

    paths: list[str]
    is_dir: bool
    canary: str = field(default_factory=lambda: f"CANARY-{secrets.token_hex(6)}")

    def probes(self) -> list[str]:
        return [os.path.join(p, "canary") if self.is_dir else p for p in self.paths]


def _cases(base: Path) -> tuple[dict[str, Case], dict[str, str]]:
    home, targets = base / "home", base / "targets"
    env = {"HOME": str(home), **{var: str(base / var.lower()) for var in _XDG.values()}}
    cases = {f"path:{p}": Case([str(home) + p[1:]], p in CREDENTIAL_DIRS) for p in CREDENTIAL_PATHS}
    for p in XDG_ENTRIES:
        prefix = next(x for x in _XDG if p.startswith(x))
        cases[f"xdg:{p}"] = Case([os.path.join(env[_XDG[prefix]], p[len(prefix):])], p in CREDENTIAL_DIRS)
    for var in CREDENTIAL_FILE_VARS:
        target = str(targets / var)
        if var == "KUBECONFIG":
            case, env[var] = Case([target + "-a", target + "-b"], False), f"{target}-a:{target}-b"
        else:
            case, env[var] = Case([target], var in DIR_VARS), f"FILE:{target}" if var == "KRB5CCNAME" else target
        cases[f"var:{var}"] = case
    for var, name in HOME_ENTRIES:
        env[var] = str(base / "homes" / var)
        cases[f"home:{var}/{name}"] = Case([os.path.normpath(os.path.join(env[var], name))], not name)
    return cases, env


CASE_IDS = list(_cases(Path("/x"))[0])


@dataclass
class World:
    cases: dict[str, Case]
    hidden: tuple[str, ...]
    seen: dict[str, str]  # probe path -> what the sandbox read there (or the error)
    control: str


READER = """
import json, sys
out = {}
for path in json.loads(sys.argv[1]):
    try:
        with open(path, errors="replace") as f:
            out[path] = f.read()
    except OSError as exc:
        out[path] = type(exc).__name__
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    base = Path(tempfile.mkdtemp(prefix="fla-secret-lists-", dir="/var/tmp"))  # not /tmp: private in the sandbox
    try:
        cases, env = _cases(base)
        for case in cases.values():
            for probe in case.probes():
                Path(probe).parent.mkdir(parents=True, exist_ok=True)
                Path(probe).write_text(case.canary)
        control = base / "home" / "notes.txt"
        control.write_text("readable")
        hidden = credential_paths(env, env["HOME"])
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            yield World(cases, hidden, {}, "")
            return
        args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for path in hidden:
            if os.path.lexists(path):
                args += hide_args(path)
        args += ["--unshare-pid", "--unshare-net", "--die-with-parent", "--cap-drop", "ALL", "--"]
        probes = [p for case in cases.values() for p in case.probes()] + [str(control)]
        done = subprocess.run([*args, sys.executable, "-c", READER, json.dumps(probes)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
        yield World(cases, hidden, seen, seen.pop(str(control)))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_no_credential_path_lies_inside_another() -> None:
    """Hiding a folder before a path inside it would leave nothing for the inner mount to cover."""
    paths = [p.rstrip("/") for p in CREDENTIAL_PATHS]
    assert len(paths) == len(set(paths))
    assert [(a, b) for a in paths for b in paths if b.startswith(a + "/")] == []


def test_the_fake_home_is_readable_where_nothing_is_hidden(world: World) -> None:
    if not world.seen:
        pytest.skip("bubblewrap is not installed")
    assert world.control == "readable"


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_credential_path_is_listed_and_unreadable_in_the_sandbox(case_id: str, world: World) -> None:
    case = world.cases[case_id]
    assert [p for p in case.paths if p not in world.hidden] == []
    if case_id.startswith("var:"):
        var = case_id[4:]
        assert why_secret(var, "/some/file"), "a variable naming a credential file is removed too"
    if case_id.startswith("home:"):
        var = case_id[5:].split("/")[0]
        assert why_secret(var, "/some/folder") is None, "a tool's home stays: only its credentials are hidden"
    if not world.seen:
        pytest.skip("bubblewrap is not installed")
    for probe in case.probes():
        assert case.canary not in world.seen[probe], f"{probe} readable in the sandbox"


def test_variable_targets_are_expanded_split_and_deduplicated(tmp_path: Path) -> None:
    home = str(tmp_path)
    env = {"kubeconfig": "~/k1:/etc/k2::", "KRB5CCNAME": "DIR::/run/krb/tkt", "GNUPGHOME": "~/g",
           "NETRC": "rel/netrc", "SSH_AUTH_SOCK": "", "XDG_CONFIG_HOME": f"{home}/.config",
           "GOOGLE_GHA_CREDS_PATH": "/w/gha-creds-1.json"}
    paths = credential_paths(env, home)
    assert {f"{home}/k1", "/etc/k2", "/run/krb/tkt", f"{home}/g", os.path.abspath("rel/netrc"),
            "/w/gha-creds-1.json"} <= set(paths)
    assert len(paths) == len(set(paths)) and all(os.path.isabs(p) for p in paths)
    assert credential_paths({"KRB5CCNAME": "KEYRING:persistent:1000"}, home) == credential_paths({}, home)
