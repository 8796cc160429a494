"""The agent graph: start → plan → write_code → (approve → run_task)* → reflect → … → finalize.

``build_graph`` returns the compiled graph; ``builder`` returns the uncompiled
StateGraph so tests and servers compile it with their own checkpointer.
"""

from __future__ import annotations

import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from free_llm_agent.graph.context import Context
from free_llm_agent.graph.routing import after_plan, after_reflect, after_write_code, in_batch
from free_llm_agent.graph.state import InputState, OutputState, State
from free_llm_agent.nodes.approval import approve
from free_llm_agent.nodes.execute import run_task, write_code
from free_llm_agent.nodes.fallback import fallback, wait_for_quota
from free_llm_agent.nodes.finalize import finalize
from free_llm_agent.nodes.plan import plan
from free_llm_agent.nodes.reflect import reflect
from free_llm_agent.nodes.start import start
from free_llm_agent.runtime.deps import Deps, ExecutorFactory
from free_llm_agent.runtime.studio import durable

# LLM nodes catch provider exhaustion themselves (-> fallback); this covers local hiccups
# such as a briefly locked SQLite file or a dropped loopback connection.
LLM_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.5, retry_on=(sqlite3.OperationalError, ConnectionError))


def builder(
    *,
    llm: BaseChatModel | None = None,
    executor_factory: ExecutorFactory | None = None,
    home: Path | None = None,
    deps: Deps | None = None,
) -> StateGraph[Any, Any, Any, Any]:
    """The uncompiled graph; ``deps`` (or ``llm``, ``executor_factory`` and ``home``) say what the nodes use."""
    deps = deps or Deps(llm=llm, executor_factory=executor_factory, home=home)
    g: StateGraph[Any, Any, Any, Any] = StateGraph(
        State, context_schema=Context, input_schema=InputState, output_schema=OutputState
    )
    g.add_node("start", partial(start, deps=deps))
    g.add_node("plan", partial(plan, deps=deps), retry_policy=LLM_RETRY)
    g.add_node("write_code", partial(write_code, deps=deps), retry_policy=LLM_RETRY)
    g.add_node("approve", partial(approve, deps=deps))
    g.add_node("run_task", partial(run_task, deps=deps))
    g.add_node("reflect", partial(reflect, deps=deps), retry_policy=LLM_RETRY)
    g.add_node(
        "fallback", partial(fallback, deps=deps),
        destinations=("plan", "write_code", "reflect", "wait_for_quota", "finalize"),
    )
    g.add_node("wait_for_quota", wait_for_quota, destinations=("plan", "write_code", "reflect"))
    g.add_node("finalize", partial(finalize, deps=deps))
    g.add_edge(START, "start")
    g.add_edge("start", "plan")
    g.add_conditional_edges("plan", after_plan)
    g.add_conditional_edges("write_code", after_write_code)
    g.add_conditional_edges("approve", in_batch)
    g.add_conditional_edges("run_task", in_batch)
    g.add_conditional_edges("reflect", after_reflect)
    g.add_edge("finalize", END)
    return g


def build_graph(
    checkpointer: Any = None,
    cache: Any = None,
    *,
    llm: BaseChatModel | None = None,
    executor_factory: ExecutorFactory | None = None,
    home: Path | None = None,
    deps: Deps | None = None,
) -> Any:
    """Compile the agent. With no ``llm``, the chat model is built from the environment on first use."""
    return builder(llm=llm, executor_factory=executor_factory, home=home, deps=deps).compile(
        checkpointer=checkpointer, cache=cache, name="agent"
    )


# What langgraph.json serves: no checkpointer here, the server brings its own; the served graph keeps a copy
# of every checkpoint in the agent's own store, so a thread survives a killed server (runtime/studio.py).
graph: Any = durable(build_graph())


def to_dot(drawable: Any) -> str:
    """The drawable graph in Graphviz dot (``graph --format png``)."""
    lines = ["digraph agent {", '  rankdir=TB; node [shape=box, style="rounded,filled", fillcolor="#f2f0ff"];']
    for node in drawable.nodes.values():
        shape = ', shape=oval, fillcolor="#bfb6fc"' if node.id in ("__start__", "__end__") else ""
        lines.append(f'  "{node.id}" [label="{node.name}"{shape}];')
    for edge in drawable.edges:
        style = " [style=dashed]" if edge.conditional else ""
        lines.append(f'  "{edge.source}" -> "{edge.target}"{style};')
    return "\n".join([*lines, "}"])
