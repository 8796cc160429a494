"""The agent as a LangGraph StateGraph. ``graph`` is what langgraph.json serves."""

from graph.builder import build_graph, builder
from graph.context import Context
from graph.state import State, Task

graph = build_graph()

__all__ = ["Context", "State", "Task", "build_graph", "builder", "graph"]
