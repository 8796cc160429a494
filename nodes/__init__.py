"""Graph nodes, one module each; prompts in prompts.py."""
