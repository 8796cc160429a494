"""What the tests share (and nothing a test asserts): paths, the CLI runner, builders and fakes' helpers.

Test modules import from here (or from ``tests.fakes``), never from another test module; fixtures
shared across folders live in ``tests/conftest.py``.
"""
