#!/usr/bin/env python
"""The CLI from a checkout: ``python run_graph.py …`` is ``free-llm-agent …`` (free_llm_agent/cli/main.py)."""

from free_llm_agent.cli.main import entry

if __name__ == "__main__":
    entry()
