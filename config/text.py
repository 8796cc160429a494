"""Text that came from bytes (file names, command-line arguments, program output): Python keeps bytes that are
not UTF-8 as lone surrogates (``caf\\udce9.txt`` for ``caf\\xe9.txt``), which cannot be encoded — hashed,
sent to a provider, checkpointed, printed. These helpers find them and write them as ``\\xNN`` escapes, a form
that stays readable and says which bytes they were (``os.fsencode`` of the original gives them back)."""

from __future__ import annotations

import re

_LONE = re.compile("[\ud800-\udfff]")


def undecodable(text: str) -> int | None:
    """The position of the first byte in ``text`` that was not UTF-8 (a lone surrogate), or None."""
    found = _LONE.search(text)
    return found.start() if found else None


def escaped(text: str) -> str:
    """``text`` with its undecodable bytes written as ``\\xNN`` (other lone surrogates as ``\\udcNN``)."""
    if undecodable(text) is None:
        return text
    out = []
    for part in re.split("([\ud800-\udfff]+)", text):
        if part and _LONE.match(part):
            try:
                out.append(part.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace"))
            except UnicodeEncodeError:
                out.append(part.encode("utf-8", "backslashreplace").decode("ascii"))
        else:
            out.append(part)
    return "".join(out)
