"""Output handling of the local executor: collecting streamed output within a size budget,
rendering Open Interpreter's output chunks as text, and capping the final output."""

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
