"""Per-run settings (LangGraph ``context_schema``); Studio shows them as a form."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Context:
    """Settings for one run of the agent."""

    auto_approve: bool = False
    """Run generated code without asking (the deny-list still applies)."""
    max_batch_size: int = 3
    """Tasks whose code is written by one LLM call (and judged by one)."""
    executor_timeout_s: float = 60.0
    """Hard time limit for one task's code."""
    workdir: str | None = None
    """Folder the generated code works in (read-write); None: a fresh scratch folder per thread."""
    network: bool = True
    """Let generated code reach the network through the filtering proxy, as ``execution.network`` in
    limits.yaml says (False: no network at all, as ``--no-network``)."""
    allowed_domains: list[str] = field(default_factory=list)
    """Domains this run's code may reach besides ``execution.allowed_domains``, the package indexes and
    the domains written in the goal (``--allow-domain``)."""
    preferred_providers: list[str] = field(default_factory=list)
    """Providers to try first, before routing.task_types and routing.priority."""
    max_attempts: int = 2
    """How often a task's code may be run before it counts as failed."""
    max_iterations: int = 8
    """Batches (write code → run → reflect) before the run finishes anyway."""
    max_replans: int = 1
    """How often reflect may ask for a new plan."""
