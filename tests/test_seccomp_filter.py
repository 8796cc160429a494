"""The seccomp filter of tools/seccomp_filter.py, loaded by a real bubblewrap (``--seccomp FD``).

Every entry of BLOCKED is called once in a sandbox whose filter answers with an errno no kernel path
returns (so the answer is the filter's, not a missing capability's); then the default filter is
checked for what it must deny and, as much, for what must keep working (sockets for IP and
netlink, socketpair, asyncio, fork, threads, subprocesses, git, pip).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from free_llm_agent.tools import seccomp_filter
from free_llm_agent.tools.seccomp_filter import BLOCKED, available, bpf_fd, compile_filter, skipped

BWRAP = shutil.which("bwrap") or "/usr/bin/bwrap"
MARK = 4000  # an errno value (<= 4095) that only the test filter returns
NAMES = [name for name, _ in BLOCKED]

PRELUDE = """
import ctypes, errno, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = json.loads(sys.argv[1])
def sc(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_ulong(a) if isinstance(a, int) else a for a in args])
    return r, (ctypes.get_errno() if r == -1 else 0)
"""
# Calls every entry once: zeros as arguments (nothing a call can do with them outside the filter
# harms anything), but where the rule depends on the argument or zeros would do something.
PROBE = PRELUDE + """
pair = (ctypes.c_int * 2)()
special = {
    "ptrace": (16, os.getpid()),  # PTRACE_ATTACH to itself
    "personality": (0x0040000,),  # ADDR_NO_RANDOMIZE
    "socket": (socket.AF_UNIX, socket.SOCK_STREAM, 0),
    "socketpair": (socket.AF_INET, socket.SOCK_STREAM, 0, ctypes.addressof(pair)),
    "clone": (0x10000000 | 17, 0, 0, 0, 0),  # CLONE_NEWUSER | SIGCHLD
    "ioctl": ((1 << 64) - 1, 0x5412, 0),  # TIOCSTI on fd -1: EBADF if the filter let it through
}
out = {}
for name in NR:
    r, e = sc(name, *special.get(name, (0, 0, 0, 0, 0, 0)))
    if r == 0 and name == "clone":
        os._exit(0)  # the filter let it through: the child leaves at once
    out[name] = e
print(json.dumps(out))
"""


def _numbers(names: list[str]) -> str:
    import pyseccomp

    return json.dumps({n: pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, n) for n in names})


def run_boxed(argv: list[str], *, program: bytes | None = None, seccomp: bool = True,
              net_ns: bool = True) -> subprocess.CompletedProcess[str]:
    """``argv`` under bubblewrap (read-only root, own PID/user namespace, no capabilities, no new
    user namespaces) with the filter (default: the module's), in its own network namespace or not."""
    args = [BWRAP, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--unshare-user",
            "--disable-userns", "--die-with-parent", "--cap-drop", "ALL"]
    if net_ns:
        args.append("--unshare-net")
    fds: tuple[int, ...] = ()
    if seccomp:
        fds = (bpf_fd(program),)
        args += ["--seccomp", str(fds[0])]
    try:
        return subprocess.run([*args, "--", *argv], pass_fds=fds, capture_output=True, text=True, timeout=120)
    finally:
        for fd in fds:
            os.close(fd)


def run_py(code: str, names: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_boxed([sys.executable, "-c", PRELUDE + code, _numbers(names or [])])


@pytest.fixture(scope="module", autouse=True)
def _bwrap_with_seccomp() -> None:
    works, reason = available()
    if not works:
        pytest.skip(f"no seccomp filter here: {reason}")
    try:
        probe = run_boxed(["true"])
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"bubblewrap does not start here: {exc}")
    if probe.returncode != 0:
        pytest.skip(f"bubblewrap cannot run here: {probe.stderr.strip()}")


# --- the table and the file descriptor -------------------------------------------------------------


def test_the_table_names_each_call_once_with_a_reason() -> None:
    assert len(NAMES) == len(set(NAMES))
    assert all(why.strip() for _, why in BLOCKED)
    assert set(skipped()) <= set(NAMES)


def test_bpf_fd_gives_a_fresh_inheritable_fd_at_the_start_each_time() -> None:
    program, _ = compile_filter()
    assert program and len(program) % 8 == 0  # struct sock_filter: 8 bytes an instruction
    first, second = bpf_fd(), bpf_fd()
    try:
        assert first != second
        for fd in (first, second):
            assert os.get_inheritable(fd) and os.lseek(fd, 0, os.SEEK_CUR) == 0
            assert os.read(fd, len(program) + 1) == program
    finally:
        os.close(first)
        os.close(second)


@pytest.mark.parametrize(("allowed", "inside", "outside"), [
    ([(2, 2), (10, 10), (16, 16)], [2, 10, 16], [0, 1, 3, 9, 11, 15, 17, 40, 1 << 32 | 2, (1 << 64) - 1]),
    ([(0, 0x3FFFF), (0xFFFFFFFF, 0xFFFFFFFF)], [0, 8, 0x20000, 0x20008, 0x3FFFF, 0xFFFFFFFF],
     [0x40000, 0x400000, 0x0040008, 0x80000000, 0xFFFFFFFE, 1 << 32, 1 << 32 | 0x40000]),
    ([(1, 1)], [1], [0, 2, 1 << 32 | 1]),
])
def test_outside_matches_exactly_the_values_not_allowed(allowed: list[tuple[int, int]], inside: list[int],
                                                        outside: list[int]) -> None:
    comparisons = seccomp_filter._outside(allowed)

    def denied(x: int) -> bool:
        return any((op == "LT" and x < a) or (op == "GT" and x > a) or (op == "MASKED_EQ" and x & a == b)
                   for op, a, b in comparisons)

    assert [x for x in inside if denied(x)] == []
    assert [x for x in outside if not denied(x)] == []


# --- every entry, answered by the filter itself ----------------------------------------------------


@pytest.fixture(scope="module")
def probed() -> dict[str, int]:
    names = [n for n in NAMES if n not in skipped()]
    program, _ = compile_filter(MARK)
    done = run_boxed([sys.executable, "-c", PROBE, _numbers(names)], program=program)
    assert done.returncode == 0, done.stderr
    result: dict[str, int] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("name", NAMES)
def test_each_blocked_call_is_answered_by_the_filter(name: str, probed: dict[str, int]) -> None:
    if name in skipped():
        pytest.skip(f"{name} is not a system call on this architecture")
    assert probed[name] == (errno.ENOSYS if name == "clone3" else MARK)


# --- what the default filter denies ----------------------------------------------------------------


def test_ptrace_bpf_perf_keyctl_and_io_uring_fail_with_eperm() -> None:
    code = """
params = ctypes.create_string_buffer(120)  # struct io_uring_params
attr = ctypes.create_string_buffer(128)  # struct perf_event_attr
print(json.dumps({
    "ptrace": sc("ptrace", 0, 0, 0, 0),  # PTRACE_TRACEME: allowed to anyone without the filter
    "io_uring_setup": sc("io_uring_setup", 1, ctypes.addressof(params)),
    "bpf": sc("bpf", 0, ctypes.addressof(attr), 128),
    "perf_event_open": sc("perf_event_open", ctypes.addressof(attr), 0, -1 & 0xFFFFFFFF, -1 & 0xFFFFFFFF, 0),
    "keyctl": sc("keyctl", 0, -3 & 0xFFFFFFFF, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring
    "process_vm_readv": sc("process_vm_readv", os.getpid(), 0, 0, 0, 0, 0),
}))
"""
    names = ["ptrace", "io_uring_setup", "bpf", "perf_event_open", "keyctl", "process_vm_readv"]
    done = run_py(code, names)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {n: [-1, errno.EPERM] for n in names}


def test_no_new_namespaces_unshare_and_clone_are_denied() -> None:
    code = """
CLONE_NEWUSER = 0x10000000
r, e = sc("clone", CLONE_NEWUSER | 17, 0, 0, 0, 0)
if r == 0:
    os._exit(0)
print(json.dumps({"unshare": sc("unshare", CLONE_NEWUSER), "clone": [r, e], "unshare_net": sc("unshare", 0x40000000)}))
"""
    done = run_py(code, ["clone", "unshare"])
    assert done.returncode == 0, done.stderr
    # EPERM, not --disable-userns's ENOSPC: the filter answered first
    assert json.loads(done.stdout) == {k: [-1, errno.EPERM] for k in ("unshare", "clone", "unshare_net")}
    tool = run_boxed(["unshare", "-Ur", "true"])
    assert tool.returncode != 0 and "Operation not permitted" in tool.stderr


def test_clone3_says_enosys_so_fork_threads_and_subprocesses_fall_back_to_clone() -> None:
    code = """
import subprocess, threading
r3 = sc("clone3", 0, 0)
pid = os.fork()
if pid == 0:
    os._exit(7)
_, status = os.waitpid(pid, 0)
seen = []
t = threading.Thread(target=seen.append, args=("thread",))
t.start(); t.join()
out = subprocess.run(["bash", "-c", "echo ok"], capture_output=True, text=True).stdout.strip()
print(json.dumps({"clone3": r3, "fork": os.waitstatus_to_exitcode(status), "thread": seen, "bash": out}))
"""
    done = run_py(code, ["clone3"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"clone3": [-1, errno.ENOSYS], "fork": 7, "thread": ["thread"], "bash": "ok"}


def test_personality_changes_that_weaken_memory_protection_are_denied() -> None:
    code = """
print(json.dumps({hex(v): sc("personality", v) for v in (0xFFFFFFFF, 0, 0x0008, 0x0040000, 0x0400000)}))
"""
    done = run_py(code, ["personality"])
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["0xffffffff"][1] == 0 and got["0x0"] == [0, 0]  # the query, PER_LINUX
    assert got["0x8"][1] == 0  # PER_LINUX32 (setarch linux32)
    assert got["0x40000"] == [-1, errno.EPERM] and got["0x400000"] == [-1, errno.EPERM]


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the x32 ABI exists on x86_64 only")
def test_a_call_through_another_abi_kills_the_process() -> None:
    """x32 numbers (bit 30 set) would otherwise be a second table of system calls the rules never name."""
    code = PRELUDE + "NR['x32_getpid'] = 0x40000000 | 39\nsc('x32_getpid')\nprint('survived')"
    done = run_boxed([sys.executable, "-c", code, "{}"])
    assert "survived" not in done.stdout and done.returncode == 128 + 31, done.stderr  # SIGSYS


def test_only_the_terminal_injecting_ioctls_are_denied() -> None:
    code = """
import array, fcntl, termios
r, w = os.pipe(); os.write(w, b"abc")
buf = array.array("i", [0]); fcntl.ioctl(r, termios.FIONREAD, buf)
print(json.dumps({"fionread": buf[0], "tiocsti": sc("ioctl", (1 << 64) - 1, 0x5412, 0),
                  "tiocsti_high_bits": sc("ioctl", (1 << 64) - 1, 1 << 32 | 0x5412, 0),
                  "tioclinux": sc("ioctl", (1 << 64) - 1, 0x541C, 0), "tcgets": sc("ioctl", r, 0x5401, 0)}))
"""
    done = run_py(code, ["ioctl"])
    assert done.returncode == 0, done.stderr
    denied = [-1, errno.EPERM]
    assert json.loads(done.stdout) == {"fionread": 3, "tiocsti": denied, "tiocsti_high_bits": denied,
                                       "tioclinux": denied, "tcgets": [-1, errno.ENOTTY]}


def test_sockets_only_ip_and_netlink_socketpair_only_unix_and_asyncio_still_works() -> None:
    code = """
import asyncio
def make(family, kind=socket.SOCK_STREAM, proto=0):
    try:
        socket.socket(family, kind, proto).close()
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]
srv = socket.create_server(("127.0.0.1", 0))
cli = socket.create_connection(srv.getsockname())
conn, _ = srv.accept(); cli.sendall(b"hi")
a, b = socket.socketpair(); a.send(b"x")
try:
    socket.socketpair(socket.AF_INET)
    inet_pair = "ok"
except OSError as exc:
    inet_pair = errno.errorcode[exc.errno]
asyncio.run(asyncio.sleep(0))
print(json.dumps({
    "unix": make(socket.AF_UNIX), "unix_dgram": make(socket.AF_UNIX, socket.SOCK_DGRAM),
    "vsock": make(getattr(socket, "AF_VSOCK", 40)), "packet": make(socket.AF_PACKET, socket.SOCK_RAW),
    "inet": make(socket.AF_INET), "inet6": make(socket.AF_INET6, socket.SOCK_DGRAM),
    "netlink": make(socket.AF_NETLINK, socket.SOCK_RAW, 0), "tcp_loopback": conn.recv(2).decode(),
    "socketpair": b.recv(1).decode(), "inet_pair": inet_pair, "asyncio": "ok",
    "unix_high_bits": errno.errorcode[sc("socket", 1 << 32 | socket.AF_UNIX, socket.SOCK_STREAM, 0)[1]],
}))
"""
    done = run_py(code, ["socket"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "unix": "EPERM", "unix_dgram": "EPERM", "vsock": "EPERM", "packet": "EPERM", "inet": "ok", "inet6": "ok",
        "netlink": "ok", "tcp_loopback": "hi", "socketpair": "x", "inet_pair": "EPERM", "asyncio": "ok",
        "unix_high_bits": "EPERM"}  # the kernel reads an int: AF_UNIX with garbage above it


# --- ordinary tools still run ----------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    pytest.param(["git", "--version"], id="git"),
    pytest.param(["pip", "--version"], id="pip"),
    pytest.param([sys.executable, "-c", "import json, sqlite3, ssl, hashlib; print('ok')"], id="python-stdlib"),
])
def test_ordinary_tools_still_run(argv: list[str]) -> None:
    found = shutil.which(argv[0])
    if found is None:
        pytest.skip(f"{argv[0]} is not installed here")
    done = run_boxed([found, *argv[1:]])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


# --- a Unix socket daemon outside stays out of reach ------------------------------------------------


@pytest.fixture
def abstract_listener() -> Iterator[tuple[socket.socket, str]]:
    name = f"fla-test-{secrets.token_hex(8)}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(4)
    listener.setblocking(False)
    yield listener, name
    listener.close()


CONNECT = """
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\\0" + sys.argv[2])
s.sendall(b"hello from inside")
print("connected")
"""


def _connect(name: str, *, seccomp: bool = True, net_ns: bool = True) -> subprocess.CompletedProcess[str]:
    return run_boxed([sys.executable, "-c", PRELUDE + CONNECT, "{}", name], seccomp=seccomp, net_ns=net_ns)


@pytest.mark.parametrize("net_ns", [True, False], ids=["own-netns", "shared-netns"])
def test_an_abstract_unix_socket_outside_cannot_be_reached(abstract_listener: tuple[socket.socket, str],
                                                           net_ns: bool) -> None:
    listener, name = abstract_listener
    done = _connect(name, net_ns=net_ns)
    assert done.returncode != 0 and "connected" not in done.stdout
    assert "PermissionError" in done.stderr  # socket(AF_UNIX) itself, before any namespace matters
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever arrived (the sandboxed process has exited)


def test_control_without_the_filter_the_abstract_socket_is_reachable(
        abstract_listener: tuple[socket.socket, str]) -> None:
    listener, name = abstract_listener
    done = _connect(name, seccomp=False, net_ns=False)
    assert done.returncode == 0 and "connected" in done.stdout, done.stderr
    conn, _ = listener.accept()
    conn.setblocking(True)
    assert conn.recv(64) == b"hello from inside"
    conn.close()
