"""Which git config entries make git run a command or load other config, and a safe reader of config files.

Used by :mod:`tools.git_guard`: config is only ever parsed (from stdin, no includes, no repository).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

# Config entries git executes, or that make it load other config or use another tree, as git's docs name them:
# "<x>" is any subsection, "[<x>]" an optional one, "*" any key. Section and key match case-insensitively, a
# subsection case-sensitively. The value says when: "always", "!" = the value starts with "!" (a shell command).
DANGEROUS: dict[str, str] = {
    # run by everyday commands (status, diff, log, commit, checkout, merge, add -p, fetch, push)
    "core.fsmonitor": "always", "core.hooksPath": "always", "core.pager": "always", "core.editor": "always",
    "sequence.editor": "always", "pager.*": "always", "diff.external": "always", "diff.<x>.textconv": "always",
    "diff.<x>.command": "always", "merge.<x>.driver": "always", "filter.<x>.clean": "always",
    "filter.<x>.smudge": "always", "filter.<x>.process": "always", "interactive.diffFilter": "always",
    "submodule.<x>.update": "!", "hook.<x>.*": "always", "core.alternateRefsCommand": "always",
    # every alias: "!cmd" runs a shell, and plain subcommands run commands through their options too
    # (grep -O<cmd>, difftool -x <cmd>, rebase --exec <cmd>, submodule foreach <cmd>, -c <key>=<cmd> ...)
    "alias[.<x>].*": "always",
    "trailer.<x>.command": "always", "trailer.<x>.cmd": "always",  # commit --trailer, interpret-trailers
    # run when talking to remotes or signing
    "core.sshCommand": "always", "core.askPass": "always", "core.gitProxy": "always",
    "credential[.<x>].helper": "always", "remote.<x>.uploadpack": "always", "remote.<x>.receivepack": "always",
    "remote.<x>.vcs": "always", "uploadpack.packObjectsHook": "always", "protocol.allow": "always",
    "protocol.ext.allow": "always", "gpg[.<x>].program": "always", "gpg.ssh.defaultKeyCommand": "always",
    # git-lfs (often enabled by the user's global config): custom transfer agents and extensions
    "lfs.<x>.path": "always", "lfs.<x>.clean": "always", "lfs.<x>.smudge": "always",
    # run by less common commands (archive, difftool, mergetool, help --web, send-email, imap-send, instaweb, gui)
    "tar.<x>.command": "always", "difftool.<x>.cmd": "always", "difftool.<x>.path": "always",
    "mergetool.<x>.cmd": "always", "mergetool.<x>.path": "always", "web.browser": "always",
    "help.browser": "always", "browser.<x>.cmd": "always", "browser.<x>.path": "always", "man.<x>.cmd": "always",
    "man.<x>.path": "always", "sendemail[.<x>].smtpServer": "always", "sendemail[.<x>].toCmd": "always",
    "sendemail[.<x>].ccCmd": "always", "sendemail[.<x>].headerCmd": "always",
    "sendemail[.<x>].sendmailCmd": "always", "imap.tunnel": "always", "instaweb.httpd": "always",
    "instaweb.browser": "always", "guitool.<x>.cmd": "always",
    # load other config, hooks to copy, or point git at another tree
    "include.path": "always", "includeIf.<x>.path": "always", "core.worktree": "always",
    "init.templateDir": "always",
}


def _rule(pattern: str, when: str) -> tuple[str, str | None, str, str]:
    """(section, subsection: None | "*" any | "?" optional | literal, key or "*", when) of a DANGEROUS pattern."""
    m = re.fullmatch(r"(\w+)(\.<x>|\[\.<x>\]|\.\w+)?\.([\w*]+)", pattern)
    assert m is not None, pattern
    sub = {None: None, ".<x>": "*", "[.<x>]": "?"}.get(m[2], (m[2] or ".")[1:])
    return m[1].lower(), sub, m[3].lower(), when


_RULES = [_rule(pattern, when) for pattern, when in DANGEROUS.items()]
Entry = tuple[str, str | None]  # (key as git lists it, value or None for a bare "key")


def is_dangerous(key: str, value: str | None) -> bool:
    """Whether config ``key`` (``section[.subsection].name``) with ``value`` makes git run or load something."""
    section, _, rest = key.partition(".")
    sub: str | None
    sub, dot, name = rest.rpartition(".")
    sub = sub if dot else None
    for sec, want_sub, want_key, when in _RULES:
        if sec != section.lower() or want_key not in ("*", name.lower()) or want_sub not in (None, "*", "?", sub):
            continue
        if want_sub != "?" and (want_sub is None) != (sub is None):
            continue
        return when == "always" or (when == "!" and (value or "").lstrip().startswith("!"))
    return False


def run_git(args: list[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes] | None:
    """Run git on a config file only: no repository, no system or global config, no inherited GIT_* settings."""
    if (exe := shutil.which("git")) is None:
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_DIR=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C")
    try:
        return subprocess.run([exe, *args], input=data, capture_output=True, cwd="/", env=env, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None


def parse_fallback(text: str) -> list[Entry] | None:
    """A tolerant reader of git config for machines without git: every ``section.key`` and its value."""
    out: list[Entry] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if m := re.match(r'\[\s*([A-Za-z0-9-]+)(?:\.([^\s\]]+)|\s+"((?:[^"\\]|\\.)*)")?\s*\]', line):
            sub = m[2].lower() if m[2] else None if m[3] is None else re.sub(r"\\(.)", r"\1", m[3])
            section, line = m[1].lower() + ("" if sub is None else "." + sub), line[m.end():].strip()
        if not line or line[0] in "#;":
            continue
        key, eq, value = line.partition("=")
        if section is None or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key.strip()):
            return None
        value = re.split(r"\s[#;]", value, maxsplit=1)[0].strip().replace('"', "")
        out.append((f"{section}.{key.strip().lower()}", value if eq else None))
    return out


def parse(data: bytes) -> list[Entry] | None:
    """The entries of a config file's bytes (git's own parser, no includes), or None if unparsable."""
    if shutil.which("git") is None:
        return parse_fallback(data.decode("utf-8", "surrogateescape"))
    res = run_git(["config", "--file", "-", "--list", "--null", "--no-includes"], data)
    if res is None or res.returncode != 0:
        return None
    recs = (rec.decode("utf-8", "surrogateescape").partition("\n") for rec in res.stdout.split(b"\0") if rec)
    return [(key, value if nl else None) for key, nl, value in recs]
