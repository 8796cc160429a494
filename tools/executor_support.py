"""Parts of the local executor: collecting streamed output within a size budget, passing it on line by
line while the task runs, rendering Open Interpreter's output chunks as text, capping the final output;
the code run in the Python kernel (the per-run helper, the reset between threads) and the quoting of
shell code."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from free_llm_agent.config.text import escaped

_log = logging.getLogger(__name__)

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


class OutputStream:
    """What a task prints, passed on to ``sink`` while it runs (see :meth:`LocalExecutor.run`'s ``on_output``).

    :meth:`add` is called by the thread that reads the kernel's output and only stores the text; the thread
    waiting for the task calls :meth:`flush` when :meth:`due` (every ``FLUSH_S``) and once at the end, so
    the sink is called at most ten times a second, never by the reader. The sink gets whole lines, each
    ending in ``"\\n"`` (``"\\r"``: a line that a progress bar redraws), without the run's status marker;
    a line is cut at ``MAX_LINE`` characters, a flush passes at most the last ``MAX_LINES`` lines (and a line
    saying how many were left out), and what waits between flushes is bounded by ``MAX_PENDING``. The
    sink's own failures are logged, never raised: watching a task never stops it.
    """

    FLUSH_S = 0.1
    MAX_LINE = 1000
    MAX_LINES = 40
    MAX_PENDING = 256 * 1024

    def __init__(self, sink: Callable[[str], None], marker: str) -> None:
        self.sink, self.marker = sink, marker
        self._pending: list[str] = []
        self._size = 0
        self._cut = False  # pending text was dropped (more than MAX_PENDING between two flushes)
        self._partial = ""  # the start of a line not finished yet
        self._skipping = False  # the rest of an over-long line is dropped, up to its end
        self._next = time.monotonic() + self.FLUSH_S
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._pending.append(text)
            self._size += len(text)
            if self._size > self.MAX_PENDING:
                kept = "".join(self._pending)[-self.MAX_PENDING // 4:]
                self._pending, self._size, self._cut = [kept], len(kept), True

    def due(self, now: float) -> bool:
        return now >= self._next

    def flush(self, *, final: bool = False) -> None:
        self._next = time.monotonic() + self.FLUSH_S
        with self._lock:
            text, cut = "".join(self._pending), self._cut
            self._pending, self._size, self._cut = [], 0, False
        if cut:  # the start of the pending text is gone: the line it began in is not whole
            self._partial, self._skipping = "", True
        if len(text) > self.MAX_LINES * 200:  # much: only its last lines are passed on, so only they are split
            text, dropped = self._last_lines(text)
            cut = cut or dropped
        lines = self._lines(text, final)
        if len(lines) > self.MAX_LINES:
            cut, lines = True, lines[-self.MAX_LINES:]
        if cut:
            lines.insert(0, "… (more output; the task's result keeps its head and tail)\n")
        if lines:
            try:
                self.sink(escaped("".join(lines)))
            except Exception:
                _log.debug("passing on a task's output failed", exc_info=True)

    def _last_lines(self, text: str) -> tuple[str, bool]:
        """``text`` from the start of its last ``MAX_LINES`` lines (and its unfinished one); whether lines
        before them were left out."""
        start = len(text)
        for _ in range(self.MAX_LINES + 1):
            start = max(text.rfind("\n", 0, start), text.rfind("\r", 0, start))
            if start < 0:
                return text, False
        self._partial, self._skipping = "", False  # ``text`` starts a line now
        return text[start + 1:], True

    def _lines(self, text: str, final: bool) -> list[str]:
        """The whole lines of ``text`` (after the unfinished line of the last flush)."""
        if self._skipping:
            end = _LINE_END.search(text)
            if end is None:
                return []
            text, self._skipping = text[end.end():], False
        parts = _LINE_END.split((self._partial + text).replace("\r\n", "\n"))
        # split() with one group: text, end, text, end, ..., text (the unfinished line)
        lines = [parts[i] + parts[i + 1] for i in range(0, len(parts) - 1, 2)]
        self._partial = parts[-1]
        if final and self._partial:
            lines.append(self._partial + "\n")
            self._partial = ""
        elif len(self._partial) > self.MAX_LINE:
            lines.append(self._partial)
            self._partial, self._skipping = "", True
        out = []
        for line in lines:
            if self.marker in line:  # the status marker starts a line, or ends one the task did not end
                line = line.split(self.marker, 1)[0]
                if not line:
                    continue
            out.append(_cut_line(line, self.MAX_LINE))
        return out


_LINE_END = re.compile(r"(\n|\r)")


def _cut_line(line: str, limit: int) -> str:
    """``line`` at most ``limit`` characters long (then "…"), ending in its own line end or ``"\\n"``."""
    end = line[-1] if line.endswith(("\n", "\r")) else "\n"
    body = line.rstrip("\r\n")
    return (body if len(body) <= limit else body[:limit] + "…") + end


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
