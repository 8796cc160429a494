"""What generated code must never see: secret environment variables and credential files.

* :func:`scrubbed_env` splits an environment into what the executor keeps and what it must not
  get (:func:`why_secret` says why for one variable); :func:`redact` then replaces the removed
  values in output, as a second line of defence.
* :data:`CREDENTIAL_PATHS` are the credential stores of the tools developers use beside this one
  (``~/...``); :func:`credential_paths` adds the files that :data:`CREDENTIAL_FILE_VARS` name and the
  ``$XDG_*_HOME`` copies, as absolute paths to hide; :func:`hide_args` is how bubblewrap hides one.

The lists are policy: each entry is tested on its own (tests/test_secret_lists.py), so one
can be added or dropped with its test. A variable or path that is only *probably* a secret is
removed or hidden: the cost is a tool inside the sandbox that finds no config, the other way a leak.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

__all__ = [
    "AWS_KEPT", "CREDENTIAL_DIRS", "CREDENTIAL_FILES", "CREDENTIAL_FILE_VARS", "CREDENTIAL_HOME_VARS",
    "CREDENTIAL_PATHS", "DOOR_VARS", "SECRET_NAME", "credential_paths", "hide_args", "redact", "scrubbed_env",
    "why_secret",
]

# Folders (hidden under an empty tmpfs).
CREDENTIAL_DIRS: tuple[str, ...] = (
    # SSH, GnuPG, secret stores and keyrings
    "~/.ssh", "~/.gnupg", "~/.password-store", "~/.local/share/keyrings", "~/.gnome2/keyrings",
    "~/.local/share/kwalletd", "~/.config/op", "~/.op", "~/.config/Bitwarden CLI", "~/.pki",
    # cloud CLIs
    "~/.aws", "~/.azure", "~/.config/gcloud", "~/.oci", "~/.config/doctl", "~/.config/hcloud",
    "~/.config/openstack", "~/.fly", "~/.config/rclone", "~/.terraform.d", "~/.cloudflared", "~/.wrangler",
    "~/.config/.wrangler", "~/.config/sops", "~/.ngrok2", "~/.config/ngrok",
    # containers and clusters
    "~/.docker", "~/.kube", "~/.minikube", "~/.config/helm",
    # forges
    "~/.config/gh", "~/.config/hub", "~/.config/glab-cli",
    # AI tools: this agent's home, the coding agents beside it, model hubs
    "~/.free-llm-agent", "~/.config/langgraph", "~/.codex", "~/.claude", "~/.config/claude", "~/.gemini",
    "~/.config/github-copilot", "~/.config/openai", "~/.cache/huggingface", "~/.huggingface", "~/.kaggle",
    # connection files of running Jupyter kernels (their HMAC keys let a client run code in them)
    "~/.local/share/jupyter/runtime",
    # browsers and mail (cookies, saved passwords, session tokens)
    "~/.mozilla", "~/.thunderbird", "~/.config/google-chrome", "~/.config/chromium", "~/.config/BraveSoftware",
    "~/.config/microsoft-edge", "~/.config/vivaldi", "~/.config/opera", "~/snap/firefox", "~/snap/chromium",
    "~/.var/app",  # Flatpak apps' data, browsers' profiles among them
    # package managers' config that may hold index passwords
    "~/.config/pip", "~/.pip",
    # histories: commands and queries typed with passwords in them
    "~/.mongosh", "~/.local/share/atuin",
)
# Files (hidden behind /dev/null).
CREDENTIAL_FILES: tuple[str, ...] = (
    "~/.netrc", "~/.git-credentials", "~/.config/git/credentials", "~/.vault-token", "~/.terraformrc",
    "~/.s3cfg", "~/.boto", "~/.claude.json", "~/.ollama/id_ed25519", "~/.config/containers/auth.json",
    # databases
    "~/.pgpass", "~/.my.cnf", "~/.mylogin.cnf",
    # package registries
    "~/.pypirc", "~/.npmrc", "~/.yarnrc", "~/.yarnrc.yml", "~/.gem/credentials", "~/.config/composer/auth.json",
    "~/.composer/auth.json", "~/.nuget/NuGet/NuGet.Config", "~/.m2/settings.xml", "~/.m2/settings-security.xml",
    "~/.gradle/gradle.properties", "~/.ivy2/.credentials", "~/.cargo/credentials.toml", "~/.cargo/credentials",
    "~/.config/pypoetry/auth.toml",
    # shell and REPL histories
    "~/.bash_history", "~/.zsh_history", "~/.zhistory", "~/.local/share/fish/fish_history", "~/.python_history",
    "~/.psql_history", "~/.mysql_history", "~/.sqlite_history", "~/.node_repl_history", "~/.rediscli_history",
    "~/.dbshell", "~/.irb_history", "~/.Rhistory", "~/.ipython/profile_default/history.sqlite",
)
CREDENTIAL_PATHS: tuple[str, ...] = (*CREDENTIAL_DIRS, *CREDENTIAL_FILES)
_XDG_HOMES = (("XDG_CONFIG_HOME", "~/.config/"), ("XDG_DATA_HOME", "~/.local/share/"), ("XDG_CACHE_HOME", "~/.cache/"))

# Variables naming credential files or folders: removed from the environment, their targets hidden.
CREDENTIAL_FILE_VARS: tuple[str, ...] = (
    "GOOGLE_APPLICATION_CREDENTIALS", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AZURE_CONFIG_DIR", "AZURE_FEDERATED_TOKEN_FILE", "CLOUDSDK_CONFIG", "OCI_CLI_CONFIG_FILE", "KUBECONFIG",
    "DOCKER_CONFIG", "DOCKER_CERT_PATH", "REGISTRY_AUTH_FILE", "HELM_REGISTRY_CONFIG", "MINIKUBE_HOME",
    "GNUPGHOME", "PASSWORD_STORE_DIR", "OP_CONFIG_DIR", "SOPS_AGE_KEY_FILE", "ANSIBLE_VAULT_PASSWORD_FILE",
    "VAULT_CONFIG_PATH", "RCLONE_CONFIG", "S3CMD_CONFIG", "BOTO_CONFIG", "TF_CLI_CONFIG_FILE", "TERRAFORM_CONFIG",
    "NETRC", "PGPASSFILE", "PGSERVICEFILE", "MYSQL_TEST_LOGIN_FILE", "PIP_CONFIG_FILE", "NPM_CONFIG_USERCONFIG",
    "HF_TOKEN_PATH", "KAGGLE_CONFIG_DIR", "CODEX_HOME", "CLAUDE_CONFIG_DIR", "GH_CONFIG_DIR", "GOOGLE_GHA_CREDS_PATH",
    "SSH_AUTH_SOCK", "KRB5CCNAME", "KRB5_KTNAME", "KRB5_CLIENT_KTNAME", "XAUTHORITY",
    "HISTFILE", "PYTHON_HISTORY", "NODE_REPL_HISTORY", "PSQL_HISTORY", "MYSQL_HISTFILE", "SQLITE_HISTORY",
)
# Homes of tools that keep credentials inside: kept in the environment (the tool needs it), the files hidden.
CREDENTIAL_HOME_VARS: dict[str, tuple[str, ...]] = {
    "CARGO_HOME": ("credentials", "credentials.toml"),
    "GRADLE_USER_HOME": ("gradle.properties",),
    "HF_HOME": ("token", "stored_tokens"),
    "COMPOSER_HOME": ("auth.json",),
    "JUPYTER_RUNTIME_DIR": ("",),  # the folder itself: the connection files of the user's running kernels
}
_KRB5_PREFIXES = ("FILE:", "WRFILE:", "DIR:")  # KEYRING:, KCM:, MEMORY: name no file

# Doors to agents, desktops, terminals and daemons that would act for the code (the sockets are also
# hidden or unreachable, but their addresses are no business of the code either).
DOOR_VARS: frozenset[str] = frozenset({
    "SSH_AUTH_SOCK", "SSH_AGENT_PID", "SSH_ASKPASS", "GIT_ASKPASS", "SUDO_ASKPASS", "GPG_AGENT_INFO",
    "GNOME_KEYRING_CONTROL", "GNOME_KEYRING_PID", "DBUS_SESSION_BUS_ADDRESS", "DBUS_SYSTEM_BUS_ADDRESS",
    "DBUS_STARTER_ADDRESS", "AT_SPI_BUS_ADDRESS", "KRB5CCNAME", "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY",
    "XDG_RUNTIME_DIR", "DOCKER_HOST", "CONTAINER_HOST", "TMUX", "TMUX_PANE", "STY", "KITTY_LISTEN_ON",
    "WEZTERM_UNIX_SOCKET", "NVIM", "NVIM_LISTEN_ADDRESS", "SWAYSOCK", "I3SOCK", "VSCODE_IPC_HOOK_CLI",
    "VSCODE_GIT_IPC_HANDLE", "PULSE_SERVER",
})
# AWS_* goes (the SDKs read dozens of variables that lead to credentials: AWS_CONTAINER_AUTHORIZATION_TOKEN,
# AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_WEB_IDENTITY_TOKEN_FILE, …) but for the region and profile names
# (the profiles live in ~/.aws, hidden) and the CA bundle (public certificates, which TLS may need).
AWS_KEPT: frozenset[str] = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CA_BUNDLE"})

# Names (case-insensitive) that say "secret".
SECRET_NAME = re.compile(
    r"_API_?KEY$|(^|_)APIKEY$|(^|_)API_?KEY$|(^|_)KEY$|(^|_)PAT$|_PWD$|(^|_)PASS$|(^|_)DSN$"
    r"|(?<!TIK)TOKEN(?!IZER)"  # ACCESSTOKEN, AUTHTOKEN, OIDC_TOKEN_V2, :_authToken; not TOKENIZERS_*, TIKTOKEN_*
    r"|JWT|CONNECTION_?STRING|_HEADERS?$|^OP_SESSION_"  # CI_JOB_JWT_V2, Azure, OTEL_EXPORTER_OTLP_HEADERS, 1Password
    r"|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|(^|_)AUTH$|_AUTH_|COOKIE|PRIVATE_KEY|WEBHOOK|SIGNING"
    r"|^LANGSMITH_|^LANGCHAIN_|DATABASE_URL$|^FREE_AGENT_"
    r"|^GIT_CONFIG_(PARAMETERS|COUNT|KEY_\d+|VALUE_\d+)$"  # `git -c` settings, e.g. an http.extraHeader
    r"|^(HTTPS?|ALL|FTP|NO)_PROXY$",  # the sandbox sets its own proxies
    re.IGNORECASE,
)
# Values: credentials in a URL (scheme://user:password@host; for http(s) a bare scheme://token@host too).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*)://([^/\s:@]*):([^/\s@]+)@")
_URL_TOKEN = re.compile(r"(?i)\bhttps?://([^/\s:@]+)@")
# Values that are tokens by their well-known shape, whatever the variable is called.
_TOKEN_VALUE = re.compile(
    r"\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{30,}|glpat-[\w-]{20,}|xox[abeprs]-[\w-]{10,}"
    r"|sk-(ant-|proj-)?[\w-]{20,}|AKIA[0-9A-Z]{16}|AIza[\w-]{35}|hf_[A-Za-z]{30,}|gsk_\w{30,}|npm_\w{36}"
    r"|[rs]k_(live|test)_\w{10,}|whsec_\w{20,}"  # Stripe
    r"|eyJ[\w-]+\.eyJ)"  # a JWT: base64url of '{"' twice (header, payload)
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)
# Values: a key, signature or password in a connection string or URL query (Azure's AccountKey= and SAS sig=,
# ODBC's Pwd=, JDBC's ?password=).
_KEYED_VALUE = re.compile(
    r"(?i)(^|[?&;])\s*(AccountKey|SharedAccessKey|SharedAccessSignature|sig|password|passwd|pwd)\s*=\s*[^\s&;]")


def why_secret(name: str, value: str, key_vars: Iterable[str] = ()) -> str | None:
    """Why the variable ``name=value`` must not reach generated code, or None if it may."""
    upper = name.upper()
    if name in set(key_vars):
        return "a configured key variable"
    if upper in DOOR_VARS:
        return "a door to an agent, a desktop or a daemon"
    if upper in CREDENTIAL_FILE_VARS:
        return "names a credential file"
    if upper.startswith("AWS_") and upper not in AWS_KEPT:
        return "AWS_* (all but AWS_KEPT)"
    if SECRET_NAME.search(name):
        return "a secret-like name"
    if _URL_USERINFO.search(value) or _URL_TOKEN.search(value):
        return "credentials in a URL"
    if _TOKEN_VALUE.search(value):
        return "a token by its shape"
    if _KEYED_VALUE.search(value):
        return "a key or password in a connection string"
    return None


def scrubbed_env(environ: Mapping[str, str], key_vars: Iterable[str] = ()) -> tuple[dict[str, str], dict[str, str]]:
    """(environment without secrets, the removed variables); see :func:`why_secret`."""
    named = frozenset(key_vars)
    kept: dict[str, str] = {}
    removed: dict[str, str] = {}
    for key, value in environ.items():
        (removed if why_secret(key, value, named) else kept)[key] = value
    return kept, removed


def _url_secrets(value: str) -> list[str]:
    """The passwords and http(s) tokens of the URLs in ``value``."""
    return [m.group(3) for m in _URL_USERINFO.finditer(value)] + [m.group(1) for m in _URL_TOKEN.finditer(value)]


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """Replace every secret value (8+ chars) in ``text`` by ``[redacted NAME]``, longest first; and the
    password (or http token) of a URL in a secret value, also a short one where it stands in a URL."""
    whole: list[tuple[str, str]] = []
    short: list[tuple[str, str]] = []
    for name, value in secrets.items():
        whole.append((name, value))
        for part in _url_secrets(value):
            (whole if len(part) >= 8 else short).append((name, part))
    for name, value in sorted(whole, key=lambda kv: -len(kv[1])):
        if len(value) >= 8 and value in text:
            text = text.replace(value, f"[redacted {name}]")
    for name, part in sorted(short, key=lambda kv: -len(kv[1])):
        mark = r"\g<1>" + f"[redacted {name}]@".replace("\\", "\\\\")  # a template: escape backslashes
        text = re.sub(rf"(://[^/\s:@]*:){re.escape(part)}@", mark, text)
        text = re.sub(rf"(?i)(https?://){re.escape(part)}@", mark, text)
    return text


def _expand(path: str, home: str) -> str:
    if path == "~" or path.startswith("~/"):
        path = home + path[1:]
    return os.path.abspath(path)


def _var_targets(name: str, value: str) -> list[str]:
    if name.startswith("KRB5"):  # a credential cache or keytab: TYPE:residual
        prefix = next((p for p in _KRB5_PREFIXES if value.startswith(p)), "")
        if not prefix and ":" in value.split("/", 1)[0]:
            return []  # KEYRING:…, KCM:, MEMORY:…
        return [value[len(prefix):].lstrip(":")]  # DIR::/path names one cache of a collection
    return value.split(os.pathsep) if name == "KUBECONFIG" else [value]


def credential_paths(environ: Mapping[str, str], home: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """Absolute paths to hide, deduplicated: :data:`CREDENTIAL_PATHS` under ``home`` (default: ``$HOME``),
    their copies under ``$XDG_CONFIG_HOME``/``$XDG_DATA_HOME``/``$XDG_CACHE_HOME`` when those are set,
    what the :data:`CREDENTIAL_FILE_VARS` in ``environ`` name, the credentials inside the tool homes of
    :data:`CREDENTIAL_HOME_VARS`. Existing or not (a path created later is caught by the sandbox's
    fingerprint). Variable names are matched case-insensitively."""
    user_home = os.fspath(home) if home is not None else environ.get("HOME") or os.path.expanduser("~")
    out = [_expand(p, user_home) for p in CREDENTIAL_PATHS]
    for var, prefix in _XDG_HOMES:
        base = environ.get(var)
        if base:
            out += [os.path.join(_expand(base, user_home), p[len(prefix):]) for p in CREDENTIAL_PATHS
                    if p.startswith(prefix)]
    for key, value in environ.items():
        var = key.upper()
        if value and var in CREDENTIAL_FILE_VARS:
            out += [_expand(p, user_home) for p in _var_targets(var, value) if p]
        if value and var in CREDENTIAL_HOME_VARS:
            out += [os.path.normpath(os.path.join(_expand(value, user_home), n)) for n in CREDENTIAL_HOME_VARS[var]]
    return tuple(dict.fromkeys(out))


def hide_args(path: str) -> list[str]:
    """bubblewrap arguments that hide ``path``: an empty tmpfs over a folder, /dev/null over anything else."""
    return ["--tmpfs", path] if os.path.isdir(path) else ["--ro-bind", "/dev/null", path]
