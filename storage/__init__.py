"""Storage: all of the agent's durable state behind one interface.

Base modules — the interfaces and what every backend shares, importing no implementation:
:mod:`.database` (the state database: quota, cache, usage, answer grades), :mod:`.checkpoints`,
:mod:`.guard` (run lock, task journal), :mod:`.doctor` (checks and their report), :mod:`.errors`,
:mod:`.urls`. Implementations: :mod:`.sqlite` (files in the home) and :mod:`.postgres` (a shared
database). :mod:`.registry` picks one by the database URL's scheme — the only module that imports them.
"""
