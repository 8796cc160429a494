"""Config files that used to hang or be misread (issue 21, case 6): an alias bomb is refused at once, naming the
file; YAML booleans are not numbers; infinities are refused with the field's allowed range. Through the CLI: exit 2,
the message, no traceback (the bomb used to spin for over a minute and end in a half-printed traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from free_llm_agent.config import ConfigError, load_config
from tests.support.cli import cli

PROVIDERS = """\
providers:
  p: {kind: groq, model: llama-fake, api_key_env: TEST_P_KEY}
"""
BOMB = """\
a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
rate_limits: {p: {requests_per_day: 3}}
"""
CASES = {
    "alias bomb": (BOMB, ["limits.yaml", "aliases", "expand to more than"]),
    "yes as a number": ("rate_limits: {p: {requests_per_day: yes}}\n",
                        ["rate_limits.p.requests_per_day", "a number is needed here, not true"]),
    "infinite timeout": ("fallback: {max_wait_seconds: .inf}\n",
                         ["fallback.max_wait_seconds", "a finite number is needed: 0 or more", "inf"]),
}


def _config(tmp_path: Path, limits: str) -> Path:
    cfg = tmp_path / "cfg"
    cfg.mkdir(parents=True)
    (cfg / "providers.yaml").write_text(PROVIDERS, encoding="utf-8")
    (cfg / "limits.yaml").write_text(limits, encoding="utf-8")
    return cfg


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_or_misleading_config_is_exit_2_naming_the_field(case: str, tmp_path: Path) -> None:
    limits, expected = CASES[case]
    proc = cli(["usage"], tmp_path / "home", _config(tmp_path, limits), timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    message = " ".join(proc.stderr.split())
    assert all(part in message for part in expected), message
    assert "Traceback" not in proc.stderr and len(proc.stderr) < 2000


def test_aliases_within_budget_still_work(tmp_path: Path) -> None:
    limits = "defaults: &d {requests_per_minute: 5, requests_per_day: 20}\nrate_limits:\n  p: *d\n"
    with pytest.raises(ConfigError, match="defaults"):  # an unknown top-level key, not a refused alias
        load_config(_config(tmp_path, limits))
    cfg = _config(tmp_path / "ok", "rate_limits: {p: &d {requests_per_day: 20}}\n")
    assert load_config(cfg).limit_for("p").requests_per_day == 20


def test_booleans_still_set_boolean_fields_and_numbers_numbers(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "optimization: {enable_caching: no, safety_margin: 1}\nfallback: {max_wait_seconds: 5}\n")
    limits = load_config(cfg).limits
    assert limits.optimization.enable_caching is False and limits.optimization.safety_margin == 1.0
    assert limits.fallback.max_wait_seconds == 5.0
