"""The ``demo`` command's parts: a sample folder (:mod:`demo.sample`), the scripted answers of a good model to
the agent's own requests (:mod:`demo.answers`) and the local OpenAI-compatible server that gives them
(:mod:`demo.server`). No LLM and no key: the demo shows the agent's loop, not a model."""
