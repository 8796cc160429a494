"""The seccomp filter bubblewrap loads (``bwrap --seccomp FD``) before it starts generated code.

Default ALLOW; the calls in :data:`BLOCKED` fail with EPERM (``clone3`` with ENOSYS, see below).
It is the second wall, not the first: bubblewrap already drops every capability and sets
no_new_privs, so most admin calls would fail anyway. The filter closes what stays open to an
unprivileged process and is a known way out of a namespace sandbox or into other processes:
kernel attack surface (io_uring, bpf, perf, userfaultfd, keyrings), the mount and namespace calls
(a new user namespace gives back every capability inside it), and sockets that reach daemons
outside (AF_UNIX, AF_VSOCK, AF_PACKET, …).

Compared with the others:

* OpenAI Codex's linux-sandbox (``codex-rs/linux-sandbox/src/seccomp.rs``) denies ptrace,
  process_vm_readv/writev and io_uring_* ("io_uring can create AF_VSOCK sockets without a
  socket() syscall"), and in its proxy mode every socket family but AF_INET/AF_INET6, socketpair
  only for AF_UNIX. That is the core here, plus AF_NETLINK (getaddrinfo and ``ip`` need it; it
  reaches the kernel, not a daemon).
* Docker's default profile (an allow-list) leaves out the admin calls listed here and, without
  CAP_SYS_ADMIN, ``clone`` with namespace flags and ``unshare``; it returns ENOSYS for ``clone3``
  so that glibc falls back to ``clone``, whose flags a filter can read. Flatpak does the same, and
  also denies ``personality`` changes, the TIOCSTI/TIOCLINUX ioctls and socket families beyond
  unix/inet/netlink (sandboxed apps keep AF_UNIX there; here it goes, like in Codex's proxy mode).

Only x86_64 and aarch64 are supported (clone's flags are its first argument there, and neither
multiplexes sockets through ``socketcall``). Calls of any other ABI (i386 ``int 0x80``, x32) kill
the process. A name libseccomp does not know on this architecture is skipped (:func:`skipped`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import socket
import tempfile
from collections.abc import Iterable
from typing import Any

__all__ = ["BLOCKED", "SeccompUnavailable", "available", "bpf_fd", "compile_filter", "skipped"]

# Each entry: (system call, why it is denied). Conditional rules are described in their line.
BLOCKED: tuple[tuple[str, str], ...] = (
    # Reading or steering other processes: the agent's own and the kernels outside the PID namespace
    # are out of reach, but sibling processes in the sandbox are not (Codex; Docker w/o CAP_SYS_PTRACE).
    ("ptrace", "reads and rewrites the memory and registers of another process"),
    ("process_vm_readv", "reads another process's memory"),
    ("process_vm_writev", "writes another process's memory"),
    ("kcmp", "compares kernel objects of two processes (ptrace family; Docker w/o CAP_SYS_PTRACE)"),
    ("pidfd_getfd", "takes a copy of another process's open file descriptor (ptrace family)"),
    # Kernel attack surface, a frequent source of privilege escalations; nothing a task needs.
    ("io_uring_setup", "io_uring: its own path into sockets and files that seccomp cannot see (Codex)"),
    ("io_uring_enter", "io_uring (see io_uring_setup)"),
    ("io_uring_register", "io_uring (see io_uring_setup)"),
    ("bpf", "loads eBPF programs into the kernel"),
    ("perf_event_open", "kernel performance counters: side channels and a long record of exploits"),
    ("userfaultfd", "user-space page faults: the classic way to win kernel races"),
    ("keyctl", "the kernel keyrings may hold credentials (Kerberos, fscrypt, …) and are not namespaced"),
    ("add_key", "kernel keyrings (see keyctl)"),
    ("request_key", "kernel keyrings (see keyctl)"),
    ("fanotify_init", "watches every file access of a whole mount"),
    ("lookup_dcookie", "kernel profiling interface (Docker)"),
    # File handles bypass the mount namespace: a handle opens a file by inode, hidden or not.
    ("open_by_handle_at", "opens a file by handle, around the mounts that hide it (the 'shocker' escape)"),
    ("name_to_handle_at", "makes the handles open_by_handle_at takes"),
    # Mounts and namespaces: the sandbox's own layout must stay as bubblewrap made it.
    ("mount", "could uncover what the sandbox hides or remount it writable"),
    ("umount2", "could remove a mount that hides a credential"),
    ("umount", "old name of umount2 (where the architecture has it)"),
    ("pivot_root", "changes the root of the mount namespace"),
    ("move_mount", "new mount API (see mount)"),
    ("open_tree", "new mount API: copies a mount tree"),
    ("fsopen", "new mount API"),
    ("fsmount", "new mount API"),
    ("fsconfig", "new mount API"),
    ("fspick", "new mount API: reconfigures an existing mount"),
    ("mount_setattr", "new mount API: changes a mount's flags, e.g. read-only"),
    ("setns", "joins another namespace"),
    ("unshare", "a new user namespace gives back every capability inside it (Docker w/o CAP_SYS_ADMIN)"),
    ("clone", "only with a CLONE_NEW* flag (new namespaces, as unshare); fork and threads are fine"),
    ("clone3", "returns ENOSYS: its flags sit behind a pointer a filter cannot read, and glibc then "
               "falls back to clone (what Docker and Flatpak do)"),
    # Administration: needs capabilities the sandbox drops; denied outright as in Docker's profile.
    ("swapon", "system administration"),
    ("swapoff", "system administration"),
    ("reboot", "system administration"),
    ("init_module", "loads a kernel module"),
    ("finit_module", "loads a kernel module"),
    ("delete_module", "unloads a kernel module"),
    ("kexec_load", "replaces the running kernel"),
    ("kexec_file_load", "replaces the running kernel"),
    ("acct", "process accounting (system administration)"),
    ("settimeofday", "sets the system clock"),
    ("clock_settime", "sets the system clock"),
    ("clock_adjtime", "tunes the system clock"),
    ("adjtimex", "tunes the system clock (also its read-only use: rare outside NTP tools)"),
    ("syslog", "reads the kernel log (kernel addresses) or changes its level (dmesg)"),
    ("quotactl", "disk quota administration"),
    ("uselib", "obsolete a.out loader"),
    ("nfsservctl", "obsolete NFS server control"),
    ("vhangup", "hangs up the terminal"),
    ("ioctl", "only TIOCSTI and TIOCLINUX: they push keystrokes into a terminal, which its shell runs once the "
              "sandbox is gone (Flatpak; bubblewrap's --new-session also stops TIOCSTI)"),
    ("iopl", "raw I/O port access"),
    ("ioperm", "raw I/O port access"),
    ("personality", "only values that weaken memory protection: ADDR_NO_RANDOMIZE (0x0040000) and every flag "
                    "above it (READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, …); PER_LINUX, PER_LINUX32, UNAME26 and the "
                    "0xffffffff query stay allowed (Docker allows these four values only, Flatpak PER_LINUX "
                    "and the query)"),
    # Sockets: the network namespace decides about IP; other families reach daemons outside it.
    ("socket", "every address family but AF_INET, AF_INET6 and AF_NETLINK: no AF_UNIX (a Unix socket daemon "
               "such as docker.sock, an SSH or GPG agent, D-Bus, X11, even where it shows in the filesystem or "
               "as an abstract name), no AF_VSOCK (the host of a VM; WSL's interop), no AF_PACKET (raw "
               "frames), … (Codex's proxy mode)"),
    ("socketpair", "every family but AF_UNIX (socketpair(AF_UNIX) makes a connected pair, reaching nobody: "
                   "asyncio and subprocess plumbing need it)"),
)

_ALLOWED_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK)
_PERSONALITY_QUERY = 0xFFFF_FFFF
_ADDR_NO_RANDOMIZE = 0x0040000  # the lowest personality flag that weakens memory protection
_TTY_INJECT = (0x5412, 0x541C)  # TIOCSTI, TIOCLINUX
_CLONE_NEW_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_U64 = (1 << 64) - 1
_SUPPORTED = {"X86_64": "x86_64", "AARCH64": "aarch64"}  # pyseccomp.Arch attribute -> name


class SeccompUnavailable(RuntimeError):
    """libseccomp cannot be loaded here, or this architecture is not supported; the message says which."""


def _blocks(lo: int, hi: int) -> list[tuple[int, int]]:
    """``[lo, hi]`` as aligned blocks ``(mask, value)``: x is in a block when ``x & mask == value``."""
    out: list[tuple[int, int]] = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 64
        while size > hi - lo + 1:
            size >>= 1
        out.append((~(size - 1) & _U64, lo))
        lo += size
    return out


def _outside(allowed: Iterable[tuple[int, int]]) -> list[tuple[str, int, int]]:
    """Comparisons on one argument that together match every value outside the ``allowed`` inclusive ranges.

    libseccomp takes one comparison per argument in a rule, so "neither A nor B" is written as
    the union of what lies below, between and above them: (op, a, b) with op in LT, GT, MASKED_EQ."""
    ranges = sorted(allowed)
    out: list[tuple[str, int, int]] = []
    if ranges[0][0] > 0:
        out.append(("LT", ranges[0][0], 0))
    for (_, end), (start, _) in itertools.pairwise(ranges):
        out += [("MASKED_EQ", mask, value) for mask, value in _blocks(end + 1, start - 1)]
    if ranges[-1][1] < _U64:
        out.append(("GT", ranges[-1][1], 0))
    return out


Rule = tuple[int, int, tuple[str, int, int] | None]  # (errno, argument, comparison on it or None: always)


def _rules(deny: int) -> dict[str, list[Rule]]:
    """name -> its rules, one comparison each (libseccomp takes one per argument in a rule)."""
    conditional: dict[str, tuple[int, list[tuple[str, int, int]]]] = {
        "clone": (0, [("MASKED_EQ", flag, flag) for flag in _CLONE_NEW_FLAGS]),
        # the request is an unsigned int: compare its low 32 bits only, whatever is above them
        "ioctl": (1, [("MASKED_EQ", 0xFFFF_FFFF, request) for request in _TTY_INJECT]),
        "personality": (0, _outside([(0, _ADDR_NO_RANDOMIZE - 1), (_PERSONALITY_QUERY, _PERSONALITY_QUERY)])),
        "socket": (0, _outside((family, family) for family in _ALLOWED_FAMILIES)),
        "socketpair": (0, _outside([(socket.AF_UNIX, socket.AF_UNIX)])),
    }
    rules: dict[str, list[Rule]] = {}
    for name, _why in BLOCKED:
        action = errno.ENOSYS if name == "clone3" else deny
        if name in conditional:
            arg, comparisons = conditional[name]
            rules[name] = [(action, arg, cmp) for cmp in comparisons]
        else:
            rules[name] = [(action, 0, None)]
    return rules


def _seccomp() -> Any:
    try:
        import pyseccomp
    except (ImportError, OSError, RuntimeError) as exc:  # RuntimeError: "Unable to find libseccomp"
        raise SeccompUnavailable(f"libseccomp cannot be loaded ({exc})") from exc
    return pyseccomp


def _arch_name(sc: Any) -> str:
    native = sc.system_arch()
    for attr, name in _SUPPORTED.items():
        if native == getattr(sc.Arch, attr):
            return name
    raise SeccompUnavailable(f"no seccomp filter for this architecture (audit arch {native:#x}); "
                             "supported: x86_64, aarch64")


def compile_filter(deny_errno: int = errno.EPERM) -> tuple[bytes, tuple[str, ...]]:
    """(the BPF program, the names skipped as unknown here) of the filter; denied calls fail with
    ``deny_errno`` (the tests use an errno no kernel path returns, to tell the filter's answers apart)."""
    sc = _seccomp()
    _arch_name(sc)
    try:
        flt = sc.SyscallFilter(sc.ALLOW)
        with contextlib.suppress(OSError):  # kernel < 4.14 (no KILL_PROCESS): libseccomp's KILL_THREAD
            flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
        skipped: list[str] = []
        for name, rules in _rules(deny_errno).items():
            number = sc.resolve_syscall(sc.Arch.NATIVE, name)
            if number < 0:  # -1: unknown name; below: a pseudo number for a call this architecture lacks
                skipped.append(name)
                continue
            for action, arg, cmp in rules:
                args = [sc.Arg(arg, getattr(sc, cmp[0]), cmp[1], cmp[2])] if cmp else []
                flt.add_rule(sc.ERRNO(action), number, *args)
        with tempfile.TemporaryFile() as out:
            flt.export_bpf(out)
            out.seek(0)
            program = out.read()
    except OSError as exc:
        raise SeccompUnavailable(f"libseccomp cannot build the filter ({exc})") from exc
    return program, tuple(skipped)


@functools.lru_cache(maxsize=1)
def _default() -> tuple[bytes, tuple[str, ...]]:
    return compile_filter()


@functools.lru_cache(maxsize=1)
def available() -> tuple[bool, str]:
    """(whether the filter can be built here, why not); checked once per process."""
    try:
        _default()
    except SeccompUnavailable as exc:
        return False, str(exc)
    return True, ""


def skipped() -> tuple[str, ...]:
    """Names in :data:`BLOCKED` this architecture has no system call for (nothing to deny)."""
    return _default()[1] if available()[0] else ()


def bpf_fd(program: bytes | None = None) -> int:
    """A new inheritable file descriptor at position 0 holding ``program`` (default: the filter,
    compiled once per process), for ``bwrap --seccomp FD``: pass it with Popen ``pass_fds``, then
    close it. One per bwrap: bwrap reads it to the end. Raise SeccompUnavailable if it cannot be built."""
    if program is None:
        works, reason = available()
        if not works:
            raise SeccompUnavailable(reason)
        program = _default()[0]
    try:  # a sealed memfd: nobody can change the program once written
        fd = os.memfd_create("fla-seccomp", getattr(os, "MFD_ALLOW_SEALING", 0))
    except (AttributeError, OSError):
        fd, path = tempfile.mkstemp(prefix="fla-seccomp-")
        os.unlink(path)
    try:
        view = memoryview(program)
        while view:
            view = view[os.write(fd, view):]
        with contextlib.suppress(AttributeError, OSError):
            import fcntl

            seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
