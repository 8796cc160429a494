"""Keys in the wrong place: a Google key in ``GROQ_API_KEY``, a key with its quotes pasted in. Warned, never
refused (a vendor may change its format; a warning costs nothing, a refusal would lock a user out).

What each vendor's keys start with is a table (:data:`KEY_SHAPES`): a provider's vendor is found from its
``base_url`` host, else from its ``kind``. A key is flagged when it starts with another vendor's prefix;
a key that starts with no known prefix is not (a provider whose prefix is unknown, a proxy, a test key).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from free_llm_agent.config import AppConfig, ProviderConfig


@dataclass(frozen=True)
class KeyShape:
    """One vendor's keys: what they start with, and how a provider entry is recognised as that vendor's."""

    vendor: str
    prefix: str
    kinds: tuple[str, ...] = ()  # providers.yaml kinds that are this vendor
    hosts: tuple[str, ...] = ()  # base_url hosts (and their subdomains) that are this vendor


KEY_SHAPES: tuple[KeyShape, ...] = (
    KeyShape("Google", "AIza", kinds=("gemini",), hosts=("googleapis.com",)),
    KeyShape("Groq", "gsk_", kinds=("groq",), hosts=("groq.com",)),
    KeyShape("Hugging Face", "hf_", hosts=("huggingface.co",)),
    KeyShape("OpenRouter", "sk-or-", hosts=("openrouter.ai",)),
    KeyShape("Cerebras", "csk-", hosts=("cerebras.ai",)),
)
_QUOTES = "'\"\u2018\u2019\u201c\u201d`"


def expected_shape(cfg: ProviderConfig) -> KeyShape | None:
    """The vendor whose key ``cfg`` needs: by its base_url's host, else by its kind; None when unknown."""
    host = (urlsplit(cfg.base_url).hostname or "") if cfg.base_url else ""
    for shape in KEY_SHAPES:
        if any(host == h or host.endswith("." + h) for h in shape.hosts):
            return shape
    return next((s for s in KEY_SHAPES if cfg.kind in s.kinds), None)


def shape_of(value: str) -> KeyShape | None:
    """The vendor ``value`` looks like a key of (by its prefix), or None."""
    bare = value.strip().strip(_QUOTES)
    return max((s for s in KEY_SHAPES if bare.startswith(s.prefix)), key=lambda s: len(s.prefix), default=None)


def key_problems(var: str, value: str, readers: Iterable[tuple[str, ProviderConfig]],
                 config: AppConfig | None = None) -> list[str]:
    """What looks wrong with ``value`` as the key in ``var`` for the providers ``readers`` (name, entry)
    that read it; ``config`` names the variable a misplaced key belongs in. Never the value itself."""
    problems = []
    bare = value.strip()
    if bare and (bare[0] in _QUOTES or bare[-1] in _QUOTES):
        problems.append(f"{var} starts or ends with a quote, which would be sent as part of the key: "
                        "set it again without the quotes")
    elif any(c.isspace() for c in bare):
        problems.append(f"{var} has a space or line break inside, which no key has: set it again, "
                        "copying the key alone")
    got = shape_of(bare)
    for name, cfg in readers:
        want = expected_shape(cfg)
        if got is None or want is None or got == want:
            continue
        home = _var_of(config, got) if config is not None else None
        problems.append(f"{var} holds what looks like {_a(got.vendor)} key (it starts with {got.prefix}), but "
                        f"{name} is {_a(want.vendor)} provider, whose keys start with {want.prefix}"
                        + (f"; {_a(got.vendor)} key belongs in {home}" if home and home != var else ""))
        break
    return problems


def _a(word: str) -> str:
    return ("an " if word[:1] in "AEIOU" else "a ") + word


def _var_of(config: AppConfig, shape: KeyShape) -> str | None:
    """The key variable of the first configured provider of ``shape``'s vendor."""
    return next((cfg.api_key_env for cfg in config.providers.values()
                 if cfg.api_key_env and expected_shape(cfg) == shape), None)
