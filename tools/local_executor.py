"""Run python / shell code locally through Open Interpreter 0.4.3, with a hard timeout.

Open Interpreter (OI) is imported lazily the first time code runs, and only its terminal and
language kernels (:mod:`tools.oi_parts`: ≈0.5 s instead of ≈6.5 s for the whole package with
litellm). It never talks to an LLM or the network: no OpenInterpreter (LLM client, telemetry) is
built, the litellm cost map is local should litellm ever load, and the "program is waiting for
input" watchdog (which would call gpt-4o after 15 s of silence) is pushed out to ~30 years.

Python runs in a warm Jupyter kernel (state persists between runs); each run is executed through
``get_ipython().run_cell`` inside a helper that chdirs to the workspace and prints a status marker.
Shell code runs as ``bash -c`` in a subshell of a warm bash process, so ``exit N`` only ends the
subshell and its status is reported by a marker.  On timeout (or if the kernel dies) the
language's kernel is terminated (never ``stop()``-ed: that shifts later outputs by one run), its
process tree is killed, and a fresh kernel is started on the next run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from free_llm_agent.config.text import escaped
from free_llm_agent.tools.executor_support import (
    ANSI,
    PY_INIT,
    PY_RESET,
    Collector,
    OutputStream,
    ansi_c_quote,
    cap_output,
    render_chunk,
)
from free_llm_agent.tools.oi_parts import offline_env, start_kernel
from free_llm_agent.tools.processes import kill_all, process_tree, running
from free_llm_agent.tools.safety import check_code

_log = logging.getLogger(__name__)
_OI_LOCK = threading.Lock()
_OI_CLASS: Any = None
KERNEL_START_TIMEOUT_S = 60.0
_ALIASES = {"python": "python", "py": "python", "python3": "python",
            "shell": "shell", "bash": "shell", "sh": "shell"}


@dataclass
class ExecutionResult:
    ok: bool  # False on exception / non-zero shell status / timeout / blocked
    output: str  # capped: head + "\n… [N chars omitted] …\n" + tail
    timed_out: bool
    duration_s: float
    error: str | None  # short reason, e.g. "timeout after 60s", "exit status 2"


def _load_oi() -> Any:
    """Import OI's terminal once (:class:`tools.oi_parts.Computer`), after setting the env vars that
    keep it offline."""
    global _OI_CLASS
    with _OI_LOCK:
        if _OI_CLASS is None:
            offline_env()
            with warnings.catch_warnings():  # OI imports the deprecated pkg_resources
                warnings.filterwarnings("ignore", message=".*pkg_resources", category=UserWarning)
                from free_llm_agent.tools.oi_parts import Computer, parts

                parts()
            _OI_CLASS = Computer
        return _OI_CLASS


class LocalExecutor:
    """Executes code in ``workspace`` with Open Interpreter; see module docstring."""

    def __init__(self, workspace: Path, *, timeout_s: float = 60.0, max_output_chars: int = 20_000,
                 languages: tuple[str, ...] = ("python", "shell")) -> None:
        unknown = [lang for lang in languages if lang not in ("python", "shell")]
        if unknown:
            raise ValueError(f"unsupported languages {unknown}; choose from python, shell")
        self.workspace = Path(workspace).expanduser().resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self.max_output_chars = max_output_chars
        self.languages = tuple(languages)
        self._computer: Any = None
        self._early_kernel: Any = None  # started by prestart(), taken by the first Python kernel start
        self._lock = threading.RLock()
        self._mark = f"__FLA_{secrets.token_hex(6)}__"

    # ------------------------------------------------------------------ public API
    def run(self, language: str, code: str, on_output: Callable[[str], None] | None = None) -> ExecutionResult:
        """Run ``code``; ``on_output`` is given what it prints while it runs, as whole lines, at most ten times a
        second (:class:`tools.executor_support.OutputStream`), from the calling thread."""
        start = time.monotonic()
        lang = _ALIASES.get(language.strip().lower(), "")
        if lang not in self.languages:
            supported = ", ".join(self.languages)
            return self._fail(start, f"unsupported language {language!r} (supported: {supported})")
        reason = check_code(lang, code, self.workspace)
        if reason:
            return self._fail(start, f"blocked: {reason}")
        with self._lock:
            self.workspace.mkdir(parents=True, exist_ok=True)
            try:
                inst = self._ensure(lang)
            except Exception as exc:  # kernel failed to start
                self._terminate(lang)
                return self._fail(start, f"could not start {lang} kernel: {exc}")
            stream = OutputStream(on_output, self._mark) if on_output is not None else None
            return self._execute(lang, inst, self._wrap(lang, code), start, stream)

    def prestart(self, kernel: Any = None) -> None:
        """Start the Python kernel now, before OI is imported: it boots while OI's terminal is imported
        (the executor's worker starts it first thing, and gives it here as ``kernel``). Nothing fails
        here: a kernel that does not come up is reported by the first task (or :meth:`warm`) that needs it."""
        with self._lock:
            if "python" not in self.languages or self._early_kernel is not None or self._computer is not None:
                return
            offline_env()
            try:
                self._early_kernel = kernel if kernel is not None else start_kernel()
            except Exception:
                _log.debug("starting the kernel early failed", exc_info=True)

    def warm(self, languages: tuple[str, ...] = ("python", "shell")) -> str | None:
        """Start the kernels now (and the Python helper), so that the first task finds them warm; the error, if any."""
        start = time.monotonic()
        with self._lock:
            for lang in (lang for lang in languages if lang in self.languages):
                try:
                    inst = self._ensure(lang)
                except Exception as exc:
                    self._terminate(lang)
                    return f"could not start {lang} kernel: {exc}"
                if lang == "python":
                    error = self._execute(lang, inst, self._wrap(lang, "pass"), start).error
                    if error:
                        return error
        return None

    def reset(self) -> str | None:
        """Forget what earlier tasks defined before another thread's tasks run here: the Python namespace and
        environment become a fresh kernel's (modules stay imported). Shell tasks each run in their own
        subshell already. The error, if any."""
        with self._lock:
            inst = self._computer.terminal._active_languages.get("python") if self._computer else None
            if inst is None:
                return None
            return self._execute("python", inst, self._wrap("python", PY_RESET), time.monotonic()).error

    def close(self) -> None:
        with self._lock:
            early, self._early_kernel = self._early_kernel, None
            if early is not None:  # started, never used
                kill_all(process_tree(getattr(early.provisioner, "pid", None)))
                with contextlib.suppress(Exception):
                    early.cleanup_resources()  # its connection file
            if self._computer is None:
                return
            for lang in list(self._computer.terminal._active_languages):
                self._terminate(lang)
            self._computer.terminate()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _fail(self, start: float, error: str) -> ExecutionResult:
        return ExecutionResult(ok=False, output="", timed_out=False,
                               duration_s=time.monotonic() - start, error=error)

    def _wrap(self, lang: str, code: str) -> str:
        if lang == "python":  # one line: OI re-renders multi-line python through ast.unparse
            boot = f"exec({PY_INIT!r}) if not hasattr(__import__('builtins'), '__fla_exec__')"
            return f"{boot} else None; __fla_exec__({code!r}, {str(self.workspace)!r}, " \
                f"{self._mark!r})"
        workspace = ansi_c_quote(str(self.workspace))
        return (f"cd {workspace} && bash -c {ansi_c_quote(code)} </dev/null 2>&1; "
                f'echo "{self._mark}$?"')

    def _ensure(self, lang: str) -> Any:
        """Return the warm OI language instance, starting it (and OI) if needed."""
        if self._computer is None:
            self._computer = _load_oi()()
        terminal = self._computer.terminal
        inst = terminal._active_languages.get(lang)
        if inst is not None:
            return inst
        lang_class = terminal.get_language(lang)
        if lang == "python":
            inst = self._start_kernel(lang_class)
            terminal._active_languages[lang] = inst
        else:
            bash = shutil.which("bash")
            if bash is None:
                raise RuntimeError("bash not found on PATH")
            inst = lang_class()
            inst.start_cmd = [bash]
            inst.start_process()
            terminal._active_languages[lang] = inst
        return inst

    def _start_kernel(self, lang_class: Any) -> Any:
        """Start OI's Jupyter kernel in a thread, bounded by KERNEL_START_TIMEOUT_S.

        OI's constructor waits for the kernel forever (e.g. if it crashes on start-up), so the
        instance is allocated first and initialised in a worker we can abandon and kill.
        """
        inst = lang_class.__new__(lang_class)
        errors: list[BaseException] = []
        early, self._early_kernel = self._early_kernel, None
        if early is not None:
            inst.km = early  # killed with the instance should it not come up

        def boot() -> None:
            try:
                # starts the kernel (or takes the one prestart() started), defines the lazy ``plt``
                inst.__init__(self._computer, *([early] if early is not None else []))
            except Exception as exc:
                errors.append(exc)

        worker = threading.Thread(target=boot, name="fla-kernel-start", daemon=True)
        worker.start()
        worker.join(KERNEL_START_TIMEOUT_S)
        if worker.is_alive() or errors:
            self._kill_instance("python", inst)
            why = f"{type(errors[0]).__name__}: {errors[0]}" if errors else \
                f"no answer within {KERNEL_START_TIMEOUT_S:g}s"
            raise RuntimeError(why)
        return inst

    @staticmethod
    def _pid(lang: str, inst: Any) -> int | None:
        try:
            if lang == "python":
                return int(inst.km.provisioner.pid)
            return int(inst.process.pid)
        except (AttributeError, TypeError, ValueError):
            return None

    def _alive(self, lang: str, inst: Any) -> bool:
        import psutil

        pid = self._pid(lang, inst)
        try:
            return pid is not None and running(psutil.Process(pid))
        except psutil.Error:
            return False

    def _execute(self, lang: str, inst: Any, wrapped: str, start: float,
                 stream: OutputStream | None = None) -> ExecutionResult:
        collector = Collector(self.max_output_chars + 1024)
        errors: list[str] = []

        def pump() -> None:
            try:
                for chunk in self._computer.run(lang, wrapped, stream=True):
                    text = render_chunk(chunk)
                    collector.add(text)
                    if stream is not None:
                        stream.add(text)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

        worker = threading.Thread(target=pump, name=f"fla-exec-{lang}", daemon=True)
        deadline = time.monotonic() + self.timeout_s
        worker.start()
        timed_out = died = False
        next_check = time.monotonic() + 0.25
        while worker.is_alive() and not (timed_out or died):
            worker.join(0.02)
            now = time.monotonic()
            if stream is not None and stream.due(now):
                stream.flush()
            if worker.is_alive():
                timed_out = now >= deadline
                if not timed_out and now >= next_check:  # did the kernel itself die?
                    next_check = now + 0.25
                    died = not self._alive(lang, inst)
        if timed_out or died:
            self._terminate(lang)
            worker.join(5)
        if stream is not None:
            stream.flush(final=True)
        head, tail, dropped = collector.snapshot()
        return self._result(lang, head, tail, dropped, timed_out, died, errors, start)

    def _result(self, lang: str, head: str, tail: str, dropped: int, timed_out: bool,
                died: bool, errors: list[str], start: float) -> ExecutionResult:
        if not dropped:
            head, tail = head + tail, ""
        if lang == "shell":  # OI's active-line echo leaves one leading newline
            head = head[1:] if head.startswith("\n") else head
            marker_re = re.compile(re.escape(self._mark) + r"(\d+)(?:\r?\n|$)")
        else:  # the python helper prints "\n" + marker
            marker_re = re.compile(r"\n?" + re.escape(self._mark) + r"(.*)(?:\r?\n|$)")
        found = list(marker_re.finditer(tail or head))
        status = found[-1].group(1).strip() if found else None
        if dropped:
            tail = ANSI.sub("", marker_re.sub("", tail))
        head = ANSI.sub("", marker_re.sub("", head))
        output = cap_output(head, self.max_output_chars, tail=tail, omitted=dropped)
        error: str | None
        if timed_out:
            error = f"timeout after {self.timeout_s:g}s"
        elif died:
            error = f"{lang} kernel died; it will be restarted on the next run"
        elif errors:
            error = f"executor error: {errors[0]}"
        elif status is None:
            error = "no exit status reported (output lost or kernel restarted)"
        else:
            error = self._status_error(lang, status)
        return ExecutionResult(ok=error is None, output=escaped(output), timed_out=timed_out,  # bytes not UTF-8
                               duration_s=time.monotonic() - start, error=escaped(error) if error else error)

    @staticmethod
    def _status_error(lang: str, status: str) -> str | None:
        if lang == "shell":
            return None if status == "0" else f"exit status {status}"
        try:
            info = json.loads(status)
        except ValueError:
            return "unreadable status marker"
        if info is None:
            return None
        name, message = str(info[0]), str(info[1])
        if name == "SystemExit" and message in ("", "0", "None"):
            return None
        return f"{name}: {message}" if message else name

    def _terminate(self, lang: str) -> None:
        """Terminate one language's kernel and kill its whole process tree."""
        if self._computer is None:
            return
        inst = self._computer.terminal._active_languages.pop(lang, None)
        if inst is not None:
            self._kill_instance(lang, inst)

    def _kill_instance(self, lang: str, inst: Any) -> None:
        """Stop OI's waiting threads, terminate the kernel, kill what is left of its tree."""
        procs = process_tree(self._pid(lang, inst))
        if lang == "python":
            inst.finish_flag = True  # OI's listener thread interrupts the kernel and exits
            listener = getattr(inst, "listener_thread", None)
            if listener is not None:
                listener.join(2)
        else:
            inst.done.set()  # releases OI's wait for the end-of-execution marker
        kill_all(procs)
        try:
            inst.terminate()  # what computer.terminate() does for each language
            if lang == "shell" and inst.process is not None:
                inst.process.wait(timeout=3)
        except Exception:
            _log.debug("terminating the %s kernel failed", lang, exc_info=True)
        kill_all(procs)
