"""Deny-list for code that must never run, whatever the model asks for.

``check_code(language, code, workspace)`` returns a human-readable reason, or ``None`` when the code
may run.  Shell code is tokenised with ``shlex`` (quotes respected, so ``echo "sudo"`` is fine) and
every simple command is inspected; Python is inspected with ``ast`` (only strings that reach a
shell, a file-writing call or a deleting call matter, so ``print("sudo")`` is fine).  Writes and
deletions are allowed inside the workspace and below /tmp only.  This is a guard-rail against
accidents, not a sandbox: obfuscated code can get past it.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import tempfile
from pathlib import Path

_PUNCT = "();<>|&`\n"
_SEP_CHARS = set(";|&()`\n")
_SKIP_WORDS = {"if", "then", "else", "elif", "do", "while", "until", "time", "!", "{", "}", "exec",
               "nohup", "env", "command", "builtin", "nice", "timeout", "xargs", "stdbuf", "ionice"}
_PRIV = {"sudo", "su", "doas", "pkexec", "runuser"}
_POWER = {"shutdown", "reboot", "halt", "poweroff"}
_WRITE_ALL = {"rm", "rmdir", "unlink", "shred", "truncate", "touch", "mkdir", "mv", "tee"}
_WRITE_LAST = {"cp", "install", "ln", "rsync", "scp"}
_PERMS = {"chmod", "chown", "chgrp", "chattr"}
_SHELLS = {"sh", "bash", "zsh", "dash", "ksh"}
_SAFE_DEV = re.compile(r"^/dev/(null|zero|stdout|stderr|stdin|tty|fd/\d+)$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1([^\n]*)\n.*?(?:\n[ \t]*\2[ \t]*(?=\n|$)|\Z)", re.S)
_FORK_BOMB = re.compile(r"(\S+)\s*\(\s*\)\s*\{[^}]*\1\s*\|\s*\1\s*&")
_PIPE_TO_SHELL = [
    re.compile(r"\b(curl|wget|fetch)\b[^\n;]*\|\s*(sudo\s+)?(env\s+)?(ba|z|da|k)?sh\b"),
    re.compile(r"\b(ba|z|da|k)?sh\s+<\(\s*(curl|wget)\b"),
    re.compile(r"\b(ba|z|da|k)?sh\s+-c\s+[\"']?\$\(\s*(curl|wget)\b"),
]
_SHELL_CALLS = {"os.system", "os.popen", "subprocess.run", "subprocess.call", "subprocess.Popen",
                "subprocess.check_call", "subprocess.check_output", "subprocess.getoutput",
                "subprocess.getstatusoutput", "pty.spawn", "asyncio.create_subprocess_shell",
                "asyncio.create_subprocess_exec"}
# call -> indexes of path arguments that get written / deleted (None: all positional args)
_PATH_CALLS: dict[str, tuple[int, ...] | None] = {
    "shutil.rmtree": (0,), "shutil.move": (0, 1), "shutil.copy": (1,), "shutil.copy2": (1,),
    "shutil.copyfile": (1,), "shutil.copytree": (1,), "shutil.chown": (0,),
    "os.remove": (0,), "os.unlink": (0,), "os.rmdir": (0,), "os.removedirs": (0,),
    "os.rename": (0, 1), "os.replace": (0, 1), "os.renames": (0, 1), "os.chmod": (0,),
    "os.chown": (0,), "os.truncate": (0,), "os.mkdir": (0,), "os.makedirs": (0,),
    "os.symlink": (1,), "os.link": (1,),
}
_PATH_METHODS = {"write_text", "write_bytes", "touch", "mkdir", "unlink", "rmdir", "rename",
                 "replace", "symlink_to", "chmod", "hardlink_to"}


def check_code(language: str, code: str, workspace: Path) -> str | None:
    """Return why ``code`` must not run, or ``None`` if it looks acceptable."""
    ws = os.path.normpath(os.path.abspath(os.path.expanduser(str(workspace))))
    lang = language.strip().lower()
    if lang in ("python", "py", "python3"):
        return _check_python(code, ws)
    return _check_shell(code, ws, ws)


# ---------------------------------------------------------------------------- paths
def _expand(path: str) -> str:
    home = str(Path.home())
    for prefix in ("${HOME}", "$HOME", "~"):
        if path == prefix or path.startswith(prefix + "/"):
            return home + path[len(prefix):]
    return path


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _outside(path: str, cwd: str, ws: str) -> str | None:
    """Return the normalised path if writing/deleting it would leave the workspace and /tmp."""
    if not path or (path.startswith("$") and not path.startswith(("$HOME", "${HOME}"))):
        return None  # unknown variable: cannot judge statically
    full = os.path.normpath(os.path.join(cwd, _expand(path)))
    if _under(full, ws) or _under(full, os.path.realpath(ws)):
        return None
    for tmp in {"/tmp", tempfile.gettempdir()}:
        rest = full[len(tmp) + 1:] if full.startswith(tmp + "/") else ""
        if rest and not re.match(r"^[*?\[]", rest):
            return None
    return full


# ---------------------------------------------------------------------------- shell
def _tokens(code: str) -> list[str]:
    code = _HEREDOC.sub(lambda m: "<<" + m.group(2) + m.group(3) + "\n", code)
    lexer = shlex.shlex(code, posix=True, punctuation_chars=_PUNCT)
    lexer.whitespace = " \t\r"
    lexer.wordchars += "$:{}@%+,^!#=~"
    try:
        return list(lexer)
    except ValueError:  # unbalanced quotes: fall back to a crude split
        return re.findall(r"[;&|()`\n<>]+|[^\s;&|()`\n<>]+", code.replace("\\\n", " "))


def _commands(code: str) -> list[tuple[list[str], list[str]]]:
    """Split into simple commands: (words, redirect-targets)."""
    result: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    targets: list[str] = []
    toks = _tokens(code)
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok and set(tok) <= set(_PUNCT):
            if ">" in tok and i + 1 < len(toks):
                nxt = toks[i + 1]
                if not (tok.endswith("&") and nxt.isdigit()) and not set(nxt) <= set(_PUNCT):
                    targets.append(nxt)
                i += 1
            elif tok.startswith("<") and i + 1 < len(toks):
                i += 1  # input redirection / heredoc delimiter
            if set(tok) & _SEP_CHARS and not tok.startswith((">", "&>")):
                result.append((words, targets))
                words, targets = [], []
        else:
            words.append(tok)
        i += 1
    result.append((words, targets))
    return [(w, t) for w, t in result if w or t]


def _strip_prefix(words: list[str]) -> list[str]:
    i = 0
    while i < len(words):
        word = words[i]
        if word in _SKIP_WORDS or re.match(r"^[A-Za-z_]\w*=", word):
            i += 1
            while words[i:] and (words[i].startswith("-") or re.match(r"^\d+[smhd]?$", words[i])):
                i += 1
            continue
        break
    return words[i:]


def _check_shell(code: str, ws: str, cwd: str) -> str | None:
    if _FORK_BOMB.search(code):
        return "fork bomb"
    for pattern in _PIPE_TO_SHELL:
        if pattern.search(code):
            return "piping a download straight into a shell (curl … | sh)"
    for words, targets in _commands(code):
        for target in targets:
            reason = _check_write_target(target, cwd, ws, "redirect to")
            if reason:
                return reason
        words = _strip_prefix(words)
        if not words:
            continue
        name = os.path.basename(words[0])
        args = words[1:]
        if name == "cd":
            cwd = os.path.normpath(os.path.join(cwd, _expand(args[0]) if args else str(Path.home())))
            continue
        reason = _check_command(name, args, cwd, ws)
        if reason:
            return reason
    return None


def _check_write_target(target: str, cwd: str, ws: str, what: str) -> str | None:
    full = os.path.normpath(os.path.join(cwd, _expand(target)))
    if full.startswith("/dev/"):
        return None if _SAFE_DEV.match(full) else f"{what} device {full} (raw device write)"
    bad = _outside(target, cwd, ws)
    return f"{what} {bad!r}, outside the workspace" if bad else None


def _check_command(name: str, args: list[str], cwd: str, ws: str) -> str | None:
    operands = [a for a in args if not a.startswith("-") or a == "-"]
    if name in _PRIV:
        return f"privilege escalation ({name}) is not allowed"
    if name in _POWER or (name in ("init", "telinit") and operands[:1] in (["0"], ["6"])):
        return f"system power command ({name})"
    if name == "systemctl" and set(operands) & {"poweroff", "reboot", "halt", "kexec"}:
        return "system power command (systemctl)"
    if name.startswith("mkfs") or name in ("mkswap", "wipefs", "fdisk", "parted"):
        return f"disk formatting/partitioning ({name})"
    if name == "kill" and "-1" in args[1:]:
        return "kill -1 would kill every process"
    if name == "dd":
        for arg in args:
            if arg.startswith("of="):
                reason = _check_write_target(arg[3:], cwd, ws, "dd writing to")
                if reason:
                    return reason
        return None
    if name in _SHELLS or name == "eval":
        script = args[args.index("-c") + 1] if "-c" in args[:-1] else None
        script = " ".join(args) if name == "eval" else script
        return _check_shell(script, ws, cwd) if script else None
    if name.startswith("python") and "-c" in args[:-1]:
        return _check_python(args[args.index("-c") + 1], ws)
    if name == "find" and ("-delete" in args or "rm" in args):
        starts = [a for a in args if not a.startswith(("-", "(", "!"))][:1] or ["."]
        bad = _outside(starts[0], cwd, ws)
        return f"find -delete/-exec rm on {bad!r}, outside the workspace" if bad else None
    if name in _WRITE_ALL or name in _PERMS or name in _WRITE_LAST:
        paths = operands[-1:] if name in _WRITE_LAST else operands
        if name in _PERMS:
            paths = operands[1:]  # first operand is the mode / owner
        for path in paths:
            bad = _outside(path, cwd, ws)
            if bad:
                return f"{name} on {bad!r}, outside the workspace"
    return None


# ---------------------------------------------------------------------------- python
def _shell_parts(code: str) -> tuple[str, list[str]]:
    """Replace IPython shell escapes (!cmd, %%bash, %sx, x = !cmd) by `pass`; return them."""
    lines = code.split("\n")
    if lines and re.match(r"^\s*%%(bash|sh|script|system)\b", lines[0]):
        return "pass", ["\n".join(lines[1:])]
    shell: list[str] = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(?:\w+\s*=\s*)?(?:!|%(?:sx|system|sc)\b)(.*)$", line)
        if match:
            shell.append(match.group(2))
            lines[i] = match.group(1) + "pass"
        elif re.match(r"^\s*%", line):
            lines[i] = re.match(r"^(\s*)", line).group(1) + "pass"  # type: ignore[union-attr]
    return "\n".join(lines), shell


class _PyChecker(ast.NodeVisitor):
    def __init__(self, ws: str) -> None:
        self.ws = ws
        self.aliases: dict[str, str] = {}
        self.consts: dict[str, str] = {}
        self.reason: str | None = None

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            self.aliases[alias.asname or top] = alias.name if alias.asname else top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def visit_Assign(self, node: ast.Assign) -> None:
        value = self._str(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name) and value is not None:
                self.consts[target.id] = value
        self.generic_visit(node)

    def _name(self, func: ast.expr) -> str:
        parts: list[str] = []
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        if isinstance(func, ast.Name):
            parts.append(self.aliases.get(func.id, func.id))
        elif isinstance(func, ast.Call):
            parts.append(self._name(func.func) + "()")
        return ".".join(reversed(parts))

    def _str(self, node: ast.expr | None) -> str | None:
        """Best-effort static value of a string/path expression (unknown parts -> 'X')."""
        if node is None:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.consts.get(node.id)
        if isinstance(node, ast.JoinedStr):
            parts = [str(v.value) if isinstance(v, ast.Constant) else (self._str(v) or "X")
                     for v in node.values]
            return "".join(parts)
        if isinstance(node, ast.FormattedValue):
            return self._str(node.value)
        if isinstance(node, ast.List | ast.Tuple):
            items = [self._str(e) for e in node.elts]
            return shlex.join(i if i is not None else "X" for i in items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Div):
            left, right = self._str(node.left), self._str(node.right)
            if left is None:
                return None
            sep = "/" if isinstance(node.op, ast.Div) else ""
            return left + sep + (right if right is not None else "X")
        if isinstance(node, ast.Call):
            name = self._name(node.func)
            args = [self._str(a) for a in node.args]
            if name.split(".")[-1] in ("Path", "PurePath", "expanduser", "abspath") and args:
                return args[0]
            if name in ("os.path.join", "posixpath.join") and args and args[0] is not None:
                return os.path.join(*(a if a is not None else "X" for a in args))
        return None

    def visit_Call(self, node: ast.Call) -> None:
        if self.reason is None:
            self.reason = self._check_call(node)
        self.generic_visit(node)

    def _check_call(self, node: ast.Call) -> str | None:
        name = self._name(node.func)
        short = name.split(".")[-1]
        if name in _SHELL_CALLS or name.startswith(("os.exec", "os.spawn")) or short == "system":
            cmd = self._str(node.args[0]) if node.args else None
            if name.startswith(("os.exec", "os.spawn")):  # program, then argv list or strings
                words = [self._str(e) for a in node.args
                         for e in (a.elts if isinstance(a, ast.List | ast.Tuple) else [a])]
                cmd = shlex.join(w for w in words if w is not None)
            return _check_shell(cmd, self.ws, self.ws) if cmd else None
        if name in ("eval", "exec") and node.args:
            src = self._str(node.args[0])
            return _check_python(src, self.ws) if src else None
        if name in ("open", "io.open", "os.open") or (short == "open" and name.endswith(").open")):
            return self._check_open(node, name)
        if name in _PATH_CALLS:
            idxs = _PATH_CALLS[name] or tuple(range(len(node.args)))
            for i in idxs:
                bad = _outside(self._str(node.args[i]) or "", self.ws, self.ws) \
                    if i < len(node.args) else None
                if bad:
                    return f"{name}() on {bad!r}, outside the workspace"
        if short in _PATH_METHODS and isinstance(node.func, ast.Attribute):
            bad = _outside(self._str(node.func.value) or "", self.ws, self.ws)
            if bad:
                return f".{short}() on {bad!r}, outside the workspace"
        return None

    def _check_open(self, node: ast.Call, name: str) -> str | None:
        if name.endswith(").open") and isinstance(node.func, ast.Attribute):
            path_node: ast.expr | None = node.func.value
            mode_node = node.args[0] if node.args else None
        else:
            path_node = node.args[0] if node.args else None
            mode_node = node.args[1] if len(node.args) > 1 else None
        for kw in node.keywords:
            if kw.arg == "mode":
                mode_node = kw.value
            elif kw.arg == "file":
                path_node = kw.value
        if name == "os.open":
            flags = ast.unparse(mode_node) if mode_node is not None else ""
            writing = any(f in flags for f in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND"))
        else:
            mode = self._str(mode_node) if mode_node is not None else "r"
            writing = mode is None or bool(set(mode) & set("wax+"))
        path = self._str(path_node) or ""
        if writing and path.startswith("/dev/"):
            return None if _SAFE_DEV.match(path) else f"writing to device {path}"
        bad = _outside(path, self.ws, self.ws) if writing else None
        return f"writing {bad!r}, outside the workspace" if bad else None


def _check_python(code: str, ws: str) -> str | None:
    source, shell_parts = _shell_parts(code)
    for part in shell_parts:
        reason = _check_shell(part, ws, ws)
        if reason:
            return reason
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None  # it cannot run either
    checker = _PyChecker(ws)
    for node in ast.walk(tree):  # collect imports and constants first
        if isinstance(node, ast.Import):
            checker.visit_Import(node)
        elif isinstance(node, ast.ImportFrom):
            checker.visit_ImportFrom(node)
    checker.visit(tree)
    return checker.reason
