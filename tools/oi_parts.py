"""The parts of Open Interpreter 0.4.3 the executor uses: its Terminal and the language kernels.

``import interpreter`` runs the package's ``__init__``, which builds a whole ``OpenInterpreter``
(LLM client, telemetry, the Computer API with matplotlib, browser, vision …) and imports litellm:
≈6.5 s of CPU before the first line of code can run. The executor only needs
``interpreter.core.computer.terminal`` (the warm Jupyter kernel and the bash process), so
:func:`parts` imports that module on its own (≈0.5 s):

* the ``interpreter`` package is put in ``sys.modules`` without running its ``__init__`` (its
  ``__path__`` is all that importing a submodule needs);
* ``litellm``, which OI's Jupyter language imports for its "waiting for input" watchdog only (it asks
  an LLM after a silence; the executor pushes it out to ~30 years), is a stand-in that imports the
  real litellm on first use.

Both stand-ins leave ``sys.modules`` again once the import is done: a later ``import interpreter`` or
``import litellm`` anywhere gets the real package. :class:`Computer` stands in for OI's ``Computer``
(and, through ``.interpreter``, for ``OpenInterpreter``) with exactly what the Terminal and the
languages read.

OI's Python and Shell languages poll with fixed sleeps: 0.1 s per output message and ≈0.3 s at the end
of a Python run, ≈1 s at the end of every shell run (three 0.2 s "yank" naps after the end marker),
0.5 s when the Python kernel starts. The languages the terminal gets here are OI's own with only
those waits replaced: they block on the output queue and stop as soon as OI's own end signal is set
(the kernel's idle status, the shell's end-of-execution marker), after which nothing more of the run
is queued; the kernel start waits for the kernel's answer instead (:func:`wait_ready`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import queue
import sys
import time
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

TERMINAL_MODULE = "interpreter.core.computer.terminal.terminal"
_LANGUAGES = "interpreter.core.computer.terminal.languages."
_POLL_S = 0.02
KERNEL_READY_S = 60.0
# OI binds ``plt`` when the kernel starts; here matplotlib is imported when ``plt`` is first used (ipykernel
# makes the inline backend the default, which shows figures as OI's ``%matplotlib inline`` does).
LAZY_PYPLOT = """
import types as _types
class _LazyPyplot(_types.ModuleType):
    def __getattr__(self, name):
        import matplotlib.pyplot as real
        if get_ipython().user_ns.get("plt") is self:
            get_ipython().user_ns["plt"] = real
        return getattr(real, name)
__import__("builtins").__fla_lazy_pyplot__ = _LazyPyplot
plt = _LazyPyplot("matplotlib.pyplot")
del _types, _LazyPyplot
""".strip()


class _Deferred(types.ModuleType):
    """A module that imports the real one (and hands over to it) on the first attribute asked for."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # probes such as hasattr(m, "__file__") do not load it
            raise AttributeError(attr)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


@dataclass(frozen=True)
class Parts:
    terminal: Any  # OI's Terminal class
    python: Any  # OI's Python (Jupyter) language, without the fixed sleeps
    shell: Any  # OI's Shell language, without the fixed sleeps


@functools.cache
def parts() -> Parts:
    """OI's terminal and languages, imported without the rest of Open Interpreter (see the module docstring)."""
    placed: dict[str, types.ModuleType] = {}
    if "interpreter" not in sys.modules:
        spec = importlib.util.find_spec("interpreter")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("open-interpreter is not installed")
        placed["interpreter"] = importlib.util.module_from_spec(spec)  # __path__ set, __init__ not run
    if "litellm" not in sys.modules:
        placed["litellm"] = _Deferred("litellm")
    sys.modules.update(placed)
    try:
        terminal = importlib.import_module(TERMINAL_MODULE).Terminal  # imports every language module
        python = importlib.import_module(_LANGUAGES + "python").Python
        shell = importlib.import_module(_LANGUAGES + "shell").Shell
    finally:
        for name, module in placed.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return Parts(terminal, _quick_python(python), _quick_shell(shell))


def offline_env() -> None:
    """The env vars that keep OI offline (set before its import, and before a kernel inherits the env)."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ["INTERPRETER_TERMINAL_INPUT_PATIENCE"] = "1000000000"
    os.environ["DISABLE_TELEMETRY"] = "true"


def start_kernel() -> Any:
    """A Jupyter kernel, started (not yet ready): its jupyter_client ``KernelManager``.

    Needs only jupyter_client, so the executor's worker starts the kernel first and imports the rest of
    OI's terminal (:func:`parts`) while the kernel boots. The kernel is ipykernel's without its debugger
    (:mod:`tools.ipykernel_launcher`) when the ``python3`` kernel is this Python's own ipykernel."""
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    spec = km.kernel_spec
    if spec is not None and list(spec.argv[1:3]) == ["-m", "ipykernel_launcher"]:
        # -P: the kernel starts in the working directory; nothing a task wrote there is imported at start-up
        spec.argv = [spec.argv[0], "-P", "-m", "free_llm_agent.tools.ipykernel_launcher", *spec.argv[3:]]
    km.start_kernel()
    return km


def wait_ready(km: Any, kc: Any, timeout: float) -> None:
    """Return once the kernel answers and its IOPub reaches ``kc``, with nothing of the check left queued.

    What jupyter_client's ``wait_for_ready`` checks, without its fixed waits (≈0.3 s of a kernel start): it
    asks again only after 1 s without an answer, and then gives IOPub 0.2 s for a message, which the kernel
    often published before IOPub was connected. Here: wait for the kernel's first ``kernel_info`` reply, then
    ask again every :data:`_POLL_S` until the ``idle`` status of the latest request arrives on IOPub (every
    message of the earlier ones is before it, and read: no stale ``idle`` ends the first task's output)."""
    deadline = time.monotonic() + timeout

    def check() -> None:
        if not km.is_alive():
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

    kc.kernel_info()
    while True:  # the kernel is up once it answers on the shell channel
        try:
            kc.shell_channel.get_msg(timeout=_POLL_S * 5)
            break
        except queue.Empty:
            check()
    while True:
        msg_id = kc.kernel_info()
        end = time.monotonic() + _POLL_S * 2
        while (left := end - time.monotonic()) > 0:
            try:
                msg = kc.iopub_channel.get_msg(timeout=left)
            except queue.Empty:
                break
            if (msg.get("msg_type") == "status" and msg["content"].get("execution_state") == "idle"
                    and msg.get("parent_header", {}).get("msg_id") == msg_id):
                return
        check()


def _quick_python(base: Any) -> Any:
    class Python(base):  # type: ignore[misc,valid-type]
        def __init__(self, computer: Any, km: Any = None) -> None:
            """OI's start-up with its fixed 0.5 s nap replaced by a readiness check (:func:`wait_ready`: a
            kernel_info reply, and IOPub delivering: no output of the first run is lost), and its
            ``%matplotlib inline; import matplotlib.pyplot as plt`` (≈0.5 s) by :data:`LAZY_PYPLOT`.
            ``km``: a kernel already started (:func:`start_kernel`); else one is started now."""
            self.computer = computer
            self.km = km if km is not None else start_kernel()
            self.kc = self.km.client()
            self.kc.start_channels()
            wait_ready(self.km, self.kc, KERNEL_READY_S)
            self.listener_thread = None
            self.finish_flag = False
            for _ in self.run(LAZY_PYPLOT):
                pass

        def _capture_output(self, message_queue: queue.Queue[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            """OI's loop, waiting on the queue: the listener thread queues every message of the run
            before it sets ``finish_flag`` (on the kernel's idle status, or when told to stop)."""
            while True:
                interpreter = self.computer.interpreter
                if hasattr(interpreter, "stop_event") and interpreter.stop_event.is_set():
                    self.finish_flag = True
                    break
                try:
                    yield message_queue.get(timeout=_POLL_S)
                except queue.Empty:
                    listener = self.listener_thread
                    if self.finish_flag or listener is None or not listener.is_alive():
                        yield from _drain(message_queue)
                        break

    return Python


def _quick_shell(base: Any) -> Any:
    class Shell(base):  # type: ignore[misc,valid-type]
        def run(self, code: str) -> Iterator[dict[str, Any]]:
            """OI's ``SubprocessLanguage.run``, waiting on the queue: the stdout reader queues every line
            before the end-of-execution marker and only then sets ``done`` (as does a kill)."""
            try:
                code = self.preprocess_code(code)
                if not self.process:
                    self.start_process()
            except Exception:
                yield {"type": "console", "format": "output", "content": traceback.format_exc()}
                return
            for attempt in range(4):
                self.done.clear()
                try:
                    self.process.stdin.write(code + "\n")
                    self.process.stdin.flush()
                    break
                except Exception:
                    if attempt == 3:
                        yield {"type": "console", "format": "output",
                               "content": "Maximum retries reached. Could not execute code."}
                        return
                    self.start_process()
            while True:
                try:
                    yield self.output_queue.get(timeout=_POLL_S)
                except queue.Empty:
                    if self.done.is_set():
                        yield from _drain(self.output_queue)
                        break

    return Shell


def _drain(messages: queue.Queue[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    while True:
        try:
            yield messages.get_nowait()
        except queue.Empty:
            return


class _Llm:
    model = "offline"  # only the disabled watchdog reads these
    api_key = None


class _Interpreter:
    """What OI's languages read of ``computer.interpreter``: no stop event, no messages, an LLM never used."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.llm = _Llm()


class Computer:
    """OI's ``Computer`` for the terminal alone: ``run``/``terminate`` are its shortcuts to the Terminal."""

    def __init__(self) -> None:
        self.interpreter = _Interpreter()
        self.offline = True
        self.verbose = False
        self.debug = False
        self.import_computer_api = False  # never inject OI's Computer API into the kernel
        self._has_imported_computer_api = False
        self.import_skills = False
        self._has_imported_skills = False
        oi = parts()
        self.terminal = oi.terminal(self)
        quick = {"Python": oi.python, "Shell": oi.shell}
        self.terminal.languages = [quick.get(lang.name, lang) for lang in self.terminal.languages]

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.terminal.run(*args, **kwargs)

    def terminate(self) -> None:
        self.terminal.terminate()
