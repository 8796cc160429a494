"""The copies of the packaged YAML files that ``init`` writes into the user's config folder: each packaged
file as it is (its own comments included), under a header that explains every field and how to switch
on a local model."""

from __future__ import annotations

from free_llm_agent.config.loader import REPO_CONFIG_DIR

USER_FILES = ("providers.yaml", "limits.yaml")

_PROVIDERS_HEADER = """\
# free-llm-agent: the providers it may use. Written by `free-llm-agent init`; edit it freely.
#
# The configuration is read from the first of: --config-dir DIR, $FREE_AGENT_CONFIG_DIR, this folder
# (your config folder, once it holds providers.yaml), the packaged defaults. `free-llm-agent check`
# prints which one it used. `free-llm-agent init --force` writes this file again from the packaged
# defaults (the old one is kept as providers.yaml.bak).
#
# Each entry under `providers:` is one model of one provider; its name (e.g. groq_llama) is what
# `routing:` below and limits.yaml refer to. Fields:
#   kind         gemini | groq | together | openai_compatible (any OpenAI-style endpoint: OpenRouter,
#                Cerebras, the Hugging Face router, Ollama, llama.cpp, vLLM …)
#   model        the model's name, as the provider spells it
#   api_key_env  the environment variable that holds the key (never the key itself). Set it with
#                `free-llm-agent keys set GROQ_API_KEY`: it goes into .env in the agent's home
#                (~/.free-llm-agent/.env unless --home or $FREE_AGENT_HOME), readable by you only.
#                `free-llm-agent keys list` shows which keys are set and where each was found.
#   signup_url   where to get a key (shown when it is missing)
#   base_url     the endpoint; leave it out (or null) for the provider's own
#   max_tokens   the longest answer asked for (default 2048)
#   temperature  0 to 2 (default 0.7); lower is more predictable
#   timeout_s    seconds to wait for one answer (default 60)
#   enabled      false: never used (default true)
#   local        true: a model on this machine: no key, no quota, tried after the others;
#                `run --offline` uses only these
#
# A local model with Ollama (https://ollama.com), no key needed:
#   1. ollama serve                (it listens on http://localhost:11434)
#   2. ollama pull llama3.2        (or another model: then write its name in `model:` below)
#   3. under `ollama:` below, set  enabled: true
#   4. free-llm-agent check        (ollama should say ok); then: free-llm-agent run --offline "GOAL"
# llama.cpp's server works the same way: copy the ollama entry under a new name and set its
# base_url to http://localhost:8080/v1.
#
# routing:
#   priority       the order providers are tried in; those not listed come after, in this file's order
#   task_types     code_generation / complex_reasoning / simple_task / general: the provider tried first
#   learn          true: after those, prefer the provider whose answers were usable at once most often
#   min_samples    graded answers before a provider's rate counts (default 5)
#   explore_every  every n-th ask of a purpose tries the provider graded least recently (default 25)

"""

_LIMITS_HEADER = """\
# free-llm-agent: quotas, retries, the sandbox and snapshots. Written by `free-llm-agent init`; edit
# it freely. A field left out (or this whole file) keeps its default.
#
# The agent never sends a request a provider would refuse for its quota: write each provider's
# free-tier limits under `rate_limits:` (they change: check the provider's console). Per provider
# name of providers.yaml, any of:
#   requests_per_minute   a sliding 60 s window
#   requests_per_day      a calendar day in `timezone` (an IANA name, default UTC)
#   requests_per_month    a calendar month in `timezone`
#   tokens_per_minute, tokens_per_day
# A provider without an entry has no limits. `free-llm-agent usage` shows what is used and left.
# The other sections, each field explained beside it below:
#   optimization   the response cache, tasks per LLM call, how close to a limit to go
#   fallback       retries, how long to wait for quota, the emergency provider, cool-downs
#   execution      the sandbox, network and resource limits of the code the agent runs
#   snapshots      what `undo` can put back

"""

_HEADERS = {"providers.yaml": _PROVIDERS_HEADER, "limits.yaml": _LIMITS_HEADER}


def commented_copy(name: str) -> str:
    """The text ``init`` writes for ``name`` (one of :data:`USER_FILES`): header, then the packaged file."""
    return _HEADERS[name] + (REPO_CONFIG_DIR / name).read_text(encoding="utf-8")
