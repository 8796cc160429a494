"""The agent as a LangGraph StateGraph: ``workflow`` wires the nodes (``graph`` is what langgraph.json
serves), ``state`` and ``context`` are what they read and write, ``routing`` the conditional edges.

Nothing is imported here: the public names are ``from free_llm_agent import build_graph, Context``.
"""
