"""Typed loader for ``providers.yaml`` and ``limits.yaml``.

Every problem becomes a :class:`ConfigError` whose message names the file, the
field and the fix, so the CLI can print it and exit 2 without a traceback.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from free_llm_agent.config.errors import ConfigError

REPO_CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_HOME = Path("~/.free-llm-agent")
APP_NAME = "free-llm-agent"
# Where the configuration was found, in the order it is looked for (``check`` shows which one).
CONFIG_SOURCES = ("--config-dir", "FREE_AGENT_CONFIG_DIR", "user config folder", "packaged defaults")
PROVIDER_KINDS = ("gemini", "groq", "together", "openai_compatible")
TASK_TYPES = ("code_generation", "complex_reasoning", "simple_task", "general")  # what routing.task_types maps


class _Strict(BaseModel):
    """Unknown keys are errors, infinities and NaN are not numbers, and neither are YAML's booleans
    (``requests_per_day: yes`` would otherwise be read as 1)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            annotation = str(cls.model_fields[info.field_name].annotation)
            if "bool" not in annotation.lower() and ("int" in annotation or "float" in annotation):
                raise ValueError(f"a number is needed here, not {str(value).lower()} (yes/no/true/false)")
        return value


class ProviderConfig(_Strict):
    kind: Literal["gemini", "groq", "together", "openai_compatible"]
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    signup_url: str | None = None
    base_url: str | None = None
    max_tokens: int = Field(default=2048, gt=0)
    temperature: float = Field(default=0.7, ge=0, le=2)
    timeout_s: float = Field(default=60.0, gt=0)
    enabled: bool = True
    local: bool = False  # a local endpoint (Ollama, llama.cpp): no key, last tier


class RoutingConfig(_Strict):
    priority: list[str] = Field(default_factory=list)
    task_types: dict[str, str] = Field(default_factory=dict)
    # Prefer the provider whose answers were usable at once most often for the purpose (providers/answers.py).
    learn: StrictBool = True
    min_samples: int = Field(default=5, ge=1)  # grades before a provider's rate counts
    explore_every: int = Field(default=25, ge=2)  # every n-th ask of a purpose tries the least recently graded


class ProvidersFile(_Strict):
    providers: dict[str, ProviderConfig]
    routing: RoutingConfig = Field(default_factory=RoutingConfig)


class RateLimit(_Strict):
    requests_per_minute: int | None = Field(default=None, ge=0)
    requests_per_day: int | None = Field(default=None, ge=0)
    requests_per_month: int | None = Field(default=None, ge=0)
    tokens_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_day: int | None = Field(default=None, ge=0)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r} (use an IANA name like UTC or America/Los_Angeles)") from exc
        return value


class Optimization(_Strict):
    enable_caching: bool = True
    cache_ttl_hours: float = Field(default=24, ge=0)
    max_batch_size: int = Field(default=3, ge=1, le=10)
    safety_margin: float = Field(default=0.9, gt=0, le=1)
    window_margin_seconds: float = Field(default=1.0, ge=0, le=30)
    """Added to the sliding minute window: a request holds its place 60 s + this after it was sent,
    so the provider (which counts it when it arrives) has let it go too. Covers the network round trip."""
    usage_log_retention_days: int = Field(default=14, ge=2)
    """Usage-log rows older than this are rolled up into one row per UTC day, provider, model,
    task type and outcome (``usage_daily``), then deleted."""
    usage_summary_retention_days: int = Field(default=400, ge=1)
    """Daily usage summaries older than this are deleted."""


class Fallback(_Strict):
    max_retries: int = Field(default=3, ge=0)
    retry_delay_seconds: float = Field(default=5, ge=0)
    max_wait_seconds: float = Field(default=60, ge=0)
    emergency_provider: str | None = None
    failure_threshold: int = Field(default=3, ge=1)
    failure_cooldown_seconds: float = Field(default=30, ge=0)


def _yaml_switch(value: Any) -> Any:
    """YAML 1.1 reads a bare ``off`` / ``on`` as a boolean: take them back as the words they were."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


class Execution(_Strict):
    sandbox: Literal["auto", "required", "off"] = "auto"
    """auto: bubblewrap where it works, else run unsandboxed with a warning; required: refuse to run
    code without it; off: never sandbox."""
    network: Literal["off", "allowlist", "open"] = "allowlist"
    """How sandboxed code reaches the network: never directly (its own empty network namespace), only
    HTTP(S) through the agent's filtering proxy. allowlist: only allowed domains; open: any public
    address (dangerous: code can send your files anywhere); off: no network at all."""
    allowed_domains: list[str] = Field(default_factory=list)
    """Domains the proxy lets through besides the package indexes and the domains written in the goal
    (``example.com`` exactly, ``*.example.com`` its subdomains)."""
    memory_mb: int = Field(default=1024, ge=0)
    """Memory of everything the task code runs, together (0: no limit). Over it, the task fails with
    'memory limit of N MB exceeded' and the run goes on."""
    max_processes: int = Field(default=256, ge=0)
    """Processes and threads in the sandbox at once (0: no limit)."""
    tmp_mb: int = Field(default=256, ge=0)
    """Size of the sandbox's private /tmp (RAM-backed; 0: no limit)."""
    task_timeout_seconds: float = Field(default=60.0, gt=0)
    """Hard time limit of one task's code; at it, the task and every process it started are killed."""
    hidden_paths: list[str] = Field(default_factory=list)
    """Extra files or folders the sandboxed code must not see (besides the home, .env files and
    the usual credential folders)."""
    wait: StrictBool = False
    """When every provider is out of quota: wait until the earliest one frees up and go on (``run --wait``),
    instead of pausing the thread for a later ``resume``."""
    idle_close_seconds: float = Field(default=300.0, ge=0)
    """A warm executor nobody used this long (back in the pool after its thread's run, or held by a
    paused thread) is closed; 0 closes it as soon as its run ends. The CLI closes every one at exit."""


    @field_validator("sandbox", "network", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        return _yaml_switch(value)


class Snapshots(_Strict):
    enabled: StrictBool = True
    """Snapshot the working directory before and after every task (the change lists, ``show --diff``, ``undo``)."""
    max_file_mb: float = Field(default=50, gt=0)
    """Files larger than this are listed by size and mtime but not stored (``undo`` cannot bring them back)."""
    max_total_mb: float = Field(default=2048, gt=0)
    """All snapshots of one home together; over it, the threads used least recently are pruned first, and
    what still does not fit is listed but not stored."""

    @model_validator(mode="after")
    def _file_fits(self) -> Snapshots:
        if self.max_file_mb > self.max_total_mb:
            raise ValueError(f"max_file_mb ({self.max_file_mb:g}) is larger than max_total_mb "
                             f"({self.max_total_mb:g}): lower max_file_mb or raise max_total_mb")
        return self


class LimitsFile(_Strict):
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    optimization: Optimization = Field(default_factory=Optimization)
    fallback: Fallback = Field(default_factory=Fallback)
    execution: Execution = Field(default_factory=Execution)
    snapshots: Snapshots = Field(default_factory=Snapshots)


class AppConfig(BaseModel):
    """Both files, validated against each other."""

    config_dir: Path
    config_source: str = "packaged defaults"  # one of CONFIG_SOURCES: why config_dir was used
    providers: dict[str, ProviderConfig]
    routing: RoutingConfig
    limits: LimitsFile

    def limit_for(self, name: str) -> RateLimit:
        return self.limits.rate_limits.get(name) or RateLimit()


def user_config_dir() -> Path:
    """The user's config folder, which ``init`` writes: ``~/.config/free-llm-agent`` on Linux (under
    ``$XDG_CONFIG_HOME`` when set), the platform's own place elsewhere (platformdirs)."""
    from platformdirs import user_config_path

    return user_config_path(APP_NAME, appauthor=False)


def locate_config_dir(config_dir: str | Path | None = None) -> tuple[Path, str]:
    """The config folder and why it was chosen (see :data:`CONFIG_SOURCES`): ``--config-dir``, else
    ``$FREE_AGENT_CONFIG_DIR``, else the user's config folder when it holds ``providers.yaml``, else the
    packaged defaults."""
    if config_dir:
        return Path(config_dir).expanduser(), "--config-dir"
    if chosen := os.environ.get("FREE_AGENT_CONFIG_DIR"):
        return Path(chosen).expanduser(), "FREE_AGENT_CONFIG_DIR"
    user = user_config_dir()
    if (user / "providers.yaml").is_file():
        return user, "user config folder"
    return REPO_CONFIG_DIR, "packaged defaults"


def resolve_config_dir(config_dir: str | Path | None = None) -> Path:
    """The config folder :func:`locate_config_dir` chooses."""
    return locate_config_dir(config_dir)[0]


def resolve_home(home: str | Path | None = None) -> Path:
    """``--home``, else ``$FREE_AGENT_HOME``, else ``~/.free-llm-agent``; created if missing."""
    path = Path(home or os.environ.get("FREE_AGENT_HOME") or DEFAULT_HOME).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"home directory {path}: cannot create it ({exc}); pass --home DIR or set FREE_AGENT_HOME"
        ) from exc
    return path


MAX_YAML_NODES = 100_000  # a config file is a few hundred; aliases that expand beyond this are a bomb


def _expanded(node: yaml.Node, seen: dict[int, int]) -> int:
    """How many nodes ``node`` stands for once its aliases are expanded (each shared node counted once per use)."""
    if id(node) in seen:
        return seen[id(node)]
    seen[id(node)] = 1  # a recursive alias counts once (it cannot grow the count)
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    total = 1
    for child in children:
        total += _expanded(child, seen)
        if total > MAX_YAML_NODES:
            break
    seen[id(node)] = total
    return total


def _load_bounded(path: Path, text: str) -> Any:
    """``yaml.safe_load``, refusing a document whose aliases expand beyond :data:`MAX_YAML_NODES` before
    anything is built from it (a "billion laughs" file would otherwise take minutes and all memory)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded(node, {}) > MAX_YAML_NODES:
            raise ConfigError(f"{path}: its YAML aliases (*name) expand to more than {MAX_YAML_NODES:,} values; "
                              "a configuration file needs a few hundred: remove the aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            f"{path}: file not found; create it (copy the one in {REPO_CONFIG_DIR}) or pass --config-dir DIR"
        )
    try:
        data = _load_bounded(path, path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: YAML syntax error: {problem}; fix the indentation/quoting there") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _range(loc: tuple[int | str, ...]) -> str:
    """The allowed range of the field at ``loc`` (": 0 or more" …), from its constraints; "" if unknown."""
    last = loc[-1] if loc else None
    bounds: dict[str, Any] = {}
    for cls in (ProviderConfig, RoutingConfig, RateLimit, Optimization, Fallback, Execution):
        if isinstance(last, str) and last in cls.model_fields:
            for meta in cls.model_fields[last].metadata:
                bounds.update({n: getattr(meta, n) for n in ("ge", "gt", "le", "lt")
                               if getattr(meta, n, None) is not None})
            break
    low = f"{bounds['ge']} or more" if "ge" in bounds else f"more than {bounds['gt']}" if "gt" in bounds else ""
    high = f"at most {bounds['le']}" if "le" in bounds else f"less than {bounds['lt']}" if "lt" in bounds else ""
    both = " and ".join(p for p in (low, high) if p)
    return f": {both}" if both else ""


def _explain(path: Path, exc: ValidationError) -> ConfigError:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            fix = "unknown field: remove it or check its spelling"
        elif kind == "missing":
            fix = "required field is missing: add it"
        elif kind == "literal_error":
            fix = f"{err['msg'].lower()}"
        elif kind == "finite_number":
            fix = f"a finite number is needed{_range(err['loc'])} (got {err.get('input')!r})"
        elif kind == "value_error":
            fix = str(err["msg"]).removeprefix("Value error, ")
        else:
            fix = f"{err['msg']} (got {err.get('input')!r})"
        lines.append(f"{path}: {field}: {fix}")
    return ConfigError("\n".join(lines))


def _check_names(path: Path, where: str, names: list[str], known: dict[str, Any]) -> None:
    for name in names:
        if name not in known:
            raise ConfigError(
                f"{path}: {where}: provider {name!r} is not defined under providers: "
                f"define it or use one of {', '.join(sorted(known))}"
            )


def load_config(config_dir: str | Path | None = None) -> AppConfig:
    """Load and cross-check both files; raise ConfigError with file, field and fix."""
    directory, source = locate_config_dir(config_dir)
    if not directory.is_dir():
        raise ConfigError(
            f"config directory {directory} (from {source}) does not exist; "
            "pass --config-dir DIR or set FREE_AGENT_CONFIG_DIR"
        )
    ppath, lpath = directory / "providers.yaml", directory / "limits.yaml"
    try:
        pfile = ProvidersFile.model_validate(_read_yaml(ppath))
    except ValidationError as exc:
        raise _explain(ppath, exc) from None
    try:
        lfile = LimitsFile.model_validate(_read_yaml(lpath)) if lpath.exists() else LimitsFile()
    except ValidationError as exc:
        raise _explain(lpath, exc) from None
    known = pfile.providers
    _check_names(ppath, "routing.priority", pfile.routing.priority, known)
    for task_type, name in pfile.routing.task_types.items():
        if task_type not in TASK_TYPES:
            close = difflib.get_close_matches(task_type, TASK_TYPES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{ppath}: routing.task_types.{task_type}: unknown task type; {hint}"
                              f"use one of {', '.join(TASK_TYPES)}")
        _check_names(ppath, f"routing.task_types.{task_type}", [name], known)
    _check_names(lpath, "rate_limits", list(lfile.rate_limits), known)
    if lfile.fallback.emergency_provider:
        _check_names(lpath, "fallback.emergency_provider", [lfile.fallback.emergency_provider], known)
    for name, cfg in known.items():
        if not cfg.local and not cfg.api_key_env:
            raise ConfigError(
                f"{ppath}: providers.{name}.api_key_env: missing; "
                "name the env var that holds its key (or set local: true)"
            )
    return AppConfig(config_dir=directory, config_source=source, providers=known, routing=pfile.routing,
                     limits=lfile)
