"""Routers: pure functions from state to the next node."""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime

from free_llm_agent.graph.context import Context
from free_llm_agent.graph.state import State
from free_llm_agent.nodes.execute import next_in_batch


def after_plan(state: State) -> Literal["fallback", "write_code"]:
    return "fallback" if state.get("fallback") else "write_code"


def after_write_code(state: State) -> Literal["fallback", "approve", "finalize"]:
    if state.get("fallback"):
        return "fallback"
    return "approve" if state.get("batch") else "finalize"


def in_batch(state: State) -> Literal["approve", "run_task", "reflect"]:
    """Approve the next task of the batch, run it once approved, judge the batch when all ran."""
    task = next_in_batch(state)
    if task is None:
        return "reflect"
    return "run_task" if task.get("approved") else "approve"


def after_reflect(state: State, runtime: Runtime[Context]) -> Literal["fallback", "plan", "write_code", "finalize"]:
    if state.get("fallback"):
        return "fallback"
    ctx = runtime.context
    if state.get("decision") == "replan" and state.get("replans", 0) < ctx.max_replans:
        return "plan"
    pending = any(t.get("status") == "pending" for t in state.get("tasks", []))
    if pending and state.get("decision") != "finish" and state.get("iteration", 0) < ctx.max_iterations:
        return "write_code"
    return "finalize"
