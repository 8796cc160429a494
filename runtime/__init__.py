"""The composition root: what one run is made of and how it is driven.

``runner`` drives the compiled graph over a checkpointer (run, resume, threads, history); ``deps`` builds
what the nodes use (the chat model, the executors, the sandbox, the run guards); ``executor_pool`` keeps
warm executors between runs of one process.
"""
