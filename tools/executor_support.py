"""Parts of the local executor: collecting streamed output within a size budget, rendering Open
Interpreter's output chunks as text, capping the final output; the code run in the Python kernel
(the per-run helper, the reset between threads) and the quoting of shell code."""

from __future__ import annotations

import re
import threading
from typing import Any

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_TAG = re.compile(r"<[^>]+>")


def cap_output(text: str, max_chars: int, *, tail: str = "", omitted: int = 0) -> str:
    """Keep the head and the tail of ``text + [omitted chars] + tail`` within ~max_chars."""
    if omitted == 0:
        text, tail = text + tail, ""
        if len(text) <= max_chars:
            return text
    budget = max(0, max_chars - 40)  # room for the marker line
    keep_head = budget // 2
    keep_tail = budget - keep_head
    head_part = text[:keep_head]
    source = tail if omitted else text
    tail_part = source[len(source) - keep_tail:] if keep_tail else ""
    total = len(text) + omitted + len(tail)
    dropped = total - len(head_part) - len(tail_part)
    return f"{head_part}\n… [{dropped} chars omitted] …\n{tail_part}"


class Collector:
    """Thread-safe output sink keeping the first and (a rolling window of) the last chars."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.head = ""
        self.tail = ""
        self.dropped = 0
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        with self._lock:
            if len(self.head) < self.keep:
                room = self.keep - len(self.head)
                self.head += text[:room]
                text = text[room:]
            if text:
                self.tail += text
                if len(self.tail) > 2 * self.keep:
                    cut = len(self.tail) - self.keep
                    self.dropped += cut
                    self.tail = self.tail[cut:]

    def snapshot(self) -> tuple[str, str, int]:
        with self._lock:
            return self.head, self.tail, self.dropped


def render_chunk(chunk: dict[str, Any]) -> str:
    kind, fmt, content = chunk.get("type"), chunk.get("format"), chunk.get("content")
    if fmt == "active_line" or content is None:
        return ""
    if kind == "console":
        return str(content)
    if kind == "image":
        return f"[image output: {fmt}]\n"
    if fmt == "html":
        return _TAG.sub("", str(content)) + "\n"
    return f"[{kind} output: {fmt}]\n"


_BASH_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t"}

# Defined (by the first run) once per kernel, in builtins: survives %reset, stays out of user vars.
PY_INIT = r'''
def __fla_exec__(code, cwd, mark):
    import builtins, getpass, json, os, sys
    os.makedirs(cwd, exist_ok=True)
    os.chdir(cwd)
    def _no_stdin(*args, **kwargs):
        raise EOFError("stdin is not available in this executor")
    builtins.input = _no_stdin
    getpass.getpass = _no_stdin
    res = get_ipython().run_cell(code, store_history=False)
    err = None if res.success else (res.error_in_exec or res.error_before_exec)
    sys.stderr.flush()
    info = None if err is None else [type(err).__name__, str(err)[:500]]
    print("\n" + mark + json.dumps(info))
__import__("builtins").__fla_exec__ = __fla_exec__
__import__("builtins").__fla_environ__ = dict(__import__("os").environ)  # for reset(): the kernel's own
del __fla_exec__
get_ipython().display_formatter.formatters["text/html"].enabled = False  # plain-text reprs
'''

# Run by reset(): the namespace and environment of a fresh kernel (with its ``plt``: tools.oi_parts); modules
# stay loaded.
PY_RESET = """get_ipython().reset(new_session=False)
import builtins as _b, os as _o, sys as _s
_o.environ.clear(); _o.environ.update(_b.__fla_environ__)
_s.modules["matplotlib.pyplot"].close("all") if "matplotlib.pyplot" in _s.modules else None
plt = _s.modules.get("matplotlib.pyplot") or _b.__fla_lazy_pyplot__("matplotlib.pyplot")
del _b, _o, _s
"""


def ansi_c_quote(code: str) -> str:
    """Quote ``code`` as a one-line bash $'...' string (OI mangles multi-line shell code)."""
    out = [_BASH_ESCAPES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x20 or ord(ch) == 0x7F
                                     else ch) for ch in code]
    return "$'" + "".join(out) + "'"
