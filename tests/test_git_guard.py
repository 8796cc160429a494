"""tools.git_guard against real git: what a sandboxed task plants in a working directory must not run later."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from free_llm_agent.tools import git_config, git_guard
from free_llm_agent.tools.git_guard import baseline, find_git_dirs, is_dangerous, neutralize, scan
from free_llm_agent.tools.git_mask import marker_folder, release_root_mask, reserve_root_mask, sweep_stale_masks

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(autouse=True)
def git_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """git isolated from this machine's config and environment, with an identity."""
    for var in [v for v in os.environ if v.startswith("GIT_")] + ["EDITOR", "VISUAL", "PAGER"]:
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("EDITOR", "false")  # below core.editor in git's order: a removed core.editor falls back to it
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "t")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "t@example.com")


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check, timeout=60,
                          stdin=subprocess.DEVNULL)


def new_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    (path / "a.txt").write_text("one\n")
    git(path, "add", "a.txt")
    git(path, "commit", "-qm", "init")
    return path


def write_hook(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


# Each plant(repo, marker) leaves something that runs `touch marker`; trigger is the git command the user types.
def _fsmonitor(repo: Path, m: Path) -> None:
    git(repo, "config", "core.fsmonitor", f"touch {m}; true")


def _hook(repo: Path, m: Path) -> None:
    write_hook(repo / ".git/hooks/post-checkout", f"touch {m}")


def _hooks_path(repo: Path, m: Path) -> None:
    write_hook(repo / "planted/pre-commit", f"touch {m}")
    git(repo, "config", "core.hooksPath", "planted")


def _smudge(repo: Path, m: Path) -> None:
    (repo / ".gitattributes").write_text("*.txt filter=x\n")
    git(repo, "config", "filter.x.smudge", f"touch {m}; cat")
    (repo / "a.txt").unlink()


def _external(repo: Path, m: Path) -> None:
    git(repo, "config", "diff.external", f"touch {m}; true")
    (repo / "a.txt").write_text("two\n")


def _textconv(repo: Path, m: Path) -> None:
    (repo / ".gitattributes").write_text("*.txt diff=x\n")
    git(repo, "config", "diff.x.textconv", f"touch {m}; cat")
    (repo / "a.txt").write_text("two\n")


def _editor(repo: Path, m: Path) -> None:
    git(repo, "config", "core.editor", f"touch {m}; true")


def _alias(repo: Path, m: Path) -> None:
    git(repo, "config", "alias.x", f"!touch {m}")


def _alias_grep(repo: Path, m: Path) -> None:  # a plain subcommand: `grep -O<cmd>` runs <cmd> on the matches
    git(repo, "config", "alias.st", f"grep -O'touch {m}' -e one")


def _trailer(repo: Path, m: Path) -> None:
    git(repo, "config", "trailer.t.cmd", f"touch {m}; true")


def _include(repo: Path, m: Path) -> None:
    (repo / "inc.cfg").write_text(f"[core]\n\tfsmonitor = touch {m}; true\n")
    git(repo, "config", "include.path", "../inc.cfg")


PLANTS: dict[str, tuple[Callable[[Path, Path], None], list[str]]] = {
    "fsmonitor": (_fsmonitor, ["status"]),
    "post-checkout hook": (_hook, ["checkout", "-q", "-b", "x"]),
    "hooksPath": (_hooks_path, ["commit", "-q", "--allow-empty", "-m", "x"]),
    "filter smudge": (_smudge, ["checkout", "--", "a.txt"]),
    "diff.external": (_external, ["diff"]),
    "textconv": (_textconv, ["diff"]),
    "core.editor": (_editor, ["commit", "-q", "--allow-empty"]),
    "alias !": (_alias, ["x"]),
    "alias grep -O": (_alias_grep, ["st"]),
    "trailer cmd": (_trailer, ["commit", "-q", "--allow-empty", "-m", "x", "--trailer", "t=v"]),
    "include.path": (_include, ["status"]),
}


@pytest.mark.parametrize("name", list(PLANTS))
def test_planted_command_never_runs_after_neutralize(name: str, ws: Path, tmp_path: Path) -> None:
    plant, trigger = PLANTS[name]
    control, control_marker = new_repo(tmp_path / "control"), tmp_path / "control-ran"
    plant(control, control_marker)
    git(control, *trigger, check=False)
    assert control_marker.exists(), "the plant must work without the guard, or this test proves nothing"

    base = baseline(ws)
    sub, marker = new_repo(ws / "sub"), tmp_path / "ran"
    plant(sub, marker)
    lines = neutralize(ws, base)
    assert lines and all(line.startswith("git: ") and "sub/.git/" in line for line in lines), lines
    git(sub, *trigger, check=False)
    assert not marker.exists()
    assert neutralize(ws, base) == []  # idempotent


SAMPLES: list[tuple[str, str]] = [
    ("core.fsmonitor", "x"), ("core.hooksPath", "h"), ("core.sshCommand", "x"), ("core.pager", "x"),
    ("core.editor", "x"), ("core.askPass", "x"), ("core.gitProxy", "x"), ("core.alternateRefsCommand", "x"),
    ("core.worktree", "/"), ("sequence.editor", "x"), ("diff.external", "x"), ("diff.d.textconv", "x"),
    ("diff.d.command", "x"), ("merge.m.driver", "x"), ("filter.f.clean", "x"), ("filter.f.smudge", "x"),
    ("filter.f.process", "x"), ("pager.log", "x"), ("alias.bang", "!x"), ("alias.opts", "-c core.pager=x log"),
    ("include.path", "x"), ("includeIf.gitdir:/x/.path", "x"), ("credential.helper", "x"),
    ("credential.https://example.com.helper", "x"), ("gpg.program", "x"), ("gpg.ssh.program", "x"),
    ("gpg.ssh.defaultKeyCommand", "x"), ("uploadpack.packObjectsHook", "x"), ("remote.o.uploadpack", "x"),
    ("remote.o.receivepack", "x"), ("difftool.t.cmd", "x"), ("difftool.t.path", "x"), ("mergetool.t.cmd", "x"),
    ("mergetool.t.path", "x"), ("web.browser", "x"), ("browser.b.cmd", "x"), ("browser.b.path", "x"),
    ("man.v.cmd", "x"), ("man.v.path", "x"), ("interactive.diffFilter", "x"), ("submodule.s.update", "!x"),
    ("hook.h.command", "x"), ("hook.h.event", "pre-commit"), ("protocol.allow", "always"),
    ("protocol.ext.allow", "always"), ("sendemail.smtpServer", "/bin/x"), ("sendemail.toCmd", "x"),
    ("imap.tunnel", "x"), ("instaweb.httpd", "x"), ("guitool.g.cmd", "x"), ("alias.co", "checkout"),
    ("alias.st", "grep -O'touch /x' -e hello"), ("alias.dt", "difftool -x 'touch /x'"),
    ("alias.rb", "rebase --exec 'touch /x'"), ("alias.fe", "submodule foreach 'touch /x'"),
    ("trailer.t.command", "x"), ("trailer.t.cmd", "x"), ("tar.tgz.command", "x"), ("remote.o.vcs", "x"),
    ("init.templateDir", "/x"), ("help.browser", "x"), ("lfs.customtransfer.c.path", "x"),
    ("lfs.extension.e.clean", "x"), ("lfs.extension.e.smudge", "x"),
]
HARMLESS: list[tuple[str, str]] = [
    ("submodule.s.update", "checkout"), ("trailer.t.key", "Signed-off-by"), ("tar.tgz.remote", "true"),
    ("user.name", "x"), ("core.autocrlf", "input"), ("lfs.url", "https://example.com/lfs"),
    ("remote.o.url", "https://example.com/r.git"), ("protocol.file.allow", "always"), ("diff.d.xfuncname", "x"),
]


def test_every_dangerous_key_family_is_removed_and_harmless_ones_stay(ws: Path) -> None:
    base = baseline(ws)
    sub = new_repo(ws / "sub")
    for key, value in SAMPLES + HARMLESS:
        git(sub, "config", "--add", key, value)
    (sub / ".git/config.worktree").write_text("[core]\n\tfsmonitor = x\n")
    lines = neutralize(ws, base)
    listed = git(sub, "config", "--file", ".git/config", "--list").stdout.lower()
    for key, value in SAMPLES:
        assert f"{key.lower()}={value.lower()}" not in listed
    for key, value in HARMLESS:
        assert f"{key.lower()}={value.lower()}" in listed
    assert any("core.fsmonitor from sub/.git/config.worktree" in line for line in lines)
    assert not (sub / ".git/config.fla-quarantined").exists()


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("CORE.FSMonitor", "x", True), ("Diff.Foo.TextConv", "x", True), ("protocol.EXT.allow", "always", False),
    ("alias.st", "status -s", True), ("alias.st", "  !sh", True), ("alias.st", '"-c" x', True),
    ("alias.st", "grep -O'touch /x' -e hello", True), ("ALIAS.Sub.command", "status", True),
    ("trailer.sign.cmd", "x", True), ("trailer.sign.key", "x", False), ("remote.o.vcs", "hg", True),
    ("submodule.x.update", "rebase", False), ("core.fsmonitorhookversion", "2", False),
    ("diff.textconv", "x", False), ("credential.a.b.c.helper", "x", True), ("hook.x.y.z", None, True),
])
def test_is_dangerous(key: str, value: str | None, expected: bool) -> None:
    assert is_dangerous(key, value) is expected


def test_users_own_hooks_and_config_survive(ws: Path, tmp_path: Path) -> None:
    user = new_repo(ws / "user")
    write_hook(user / ".git/hooks/pre-commit", "exit 0")
    write_hook(user / ".git/hooks/post-commit", "exit 0")
    git(user, "config", "core.editor", "vim")
    git(user, "config", "--add", "include.path", "mine.cfg")
    base = baseline(ws)
    assert ("user/.git/config", "core.editor", "vim") in base.entries
    git(user, "config", "core.fsmonitor", "touch x")
    git(user, "config", "--add", "include.path", "planted.cfg")
    write_hook(user / ".git/hooks/post-commit", "touch changed")  # a changed hook counts as new
    lines = neutralize(ws, base)
    assert "git: disabled hook user/.git/hooks/post-commit (a task may not plant commands git runs)" in lines
    assert any(line.startswith("git: removed core.fsmonitor from user/.git/config") for line in lines)
    assert git(user, "config", "core.editor").stdout.strip() == "vim"
    assert git(user, "config", "--get-all", "include.path").stdout.split() == ["mine.cfg"]
    assert (user / ".git/hooks/pre-commit").read_text() == "#!/bin/sh\nexit 0\n"
    disabled = user / ".git/hooks/post-commit.fla-disabled"
    assert stat.S_IMODE(disabled.stat().st_mode) == 0o644 and not (user / ".git/hooks/post-commit").exists()
    assert neutralize(ws, base) == []


def test_hooks_in_the_users_own_hooks_path_folder_are_guarded_too(ws: Path, tmp_path: Path) -> None:
    user = new_repo(ws / "user")
    write_hook(user / ".githooks/pre-commit", "exit 0")
    write_hook(user / ".githooks/post-commit", "exit 0")
    git(user, "config", "core.hooksPath", ".githooks")
    base = baseline(ws)
    marker = tmp_path / "ran"
    write_hook(user / ".githooks/post-commit", f"touch {marker}")
    write_hook(user / ".githooks/post-checkout", f"touch {marker}")
    lines = neutralize(ws, base)
    assert sorted(lines) == [f"git: disabled hook user/.githooks/{name} (a task may not plant commands git runs)"
                             for name in ("post-checkout", "post-commit")]
    git(user, "commit", "-q", "--allow-empty", "-m", "x")
    git(user, "checkout", "-q", "-b", "y")
    assert not marker.exists() and (user / ".githooks/pre-commit").exists()
    assert git(user, "config", "core.hooksPath").stdout.strip() == ".githooks"


def test_bare_repo_is_found_and_neutralized(ws: Path) -> None:
    base = baseline(ws)
    git(ws, "init", "-q", "--bare", "evil.git")
    git(ws / "evil.git", "config", "core.fsmonitor", "touch x")
    write_hook(ws / "evil.git/hooks/pre-receive", "touch x")
    assert ws / "evil.git" in find_git_dirs(ws)
    lines = neutralize(ws, base)
    assert any(line.startswith("git: removed core.fsmonitor from evil.git/config") for line in lines)
    assert (ws / "evil.git/hooks/pre-receive.fla-disabled").exists()


def test_working_directory_itself_made_a_bare_repo(ws: Path) -> None:
    base = baseline(ws)
    tmp = ws.parent / "bare-src"
    git(ws.parent, "init", "-q", "--bare", str(tmp))
    for name in ("HEAD", "config", "objects", "refs"):
        shutil.move(tmp / name, ws / name)
    git(ws, "config", "--file", "config", "core.fsmonitor", "touch x")
    assert ws in find_git_dirs(ws)
    assert any(line.startswith("git: removed core.fsmonitor from config") for line in neutralize(ws, base))


def test_gitdir_file_target_inside_ws(ws: Path, tmp_path: Path) -> None:
    base = baseline(ws)
    repo = new_repo(ws / "hidden-src")
    shutil.move(repo / ".git", ws / "hidden")
    (ws / "sub").mkdir()
    (ws / "sub/.git").write_text("gitdir: ../hidden\n")
    marker = tmp_path / "ran"
    git(ws / "sub", "config", "core.fsmonitor", f"touch {marker}; true")
    assert (ws / "hidden").resolve() in [p.resolve() for p in find_git_dirs(ws)]
    lines = neutralize(ws, base)
    assert any(line.startswith("git: removed core.fsmonitor from hidden/config") for line in lines)
    git(ws / "sub", "status", check=False)
    assert not marker.exists()


def test_gitlink_outside_ws_is_disabled_unless_the_user_had_it(ws: Path, tmp_path: Path) -> None:
    outside = new_repo(tmp_path / "outside")
    (ws / "mine").mkdir()
    (ws / "mine/.git").write_text(f"gitdir: {outside}/.git\n")
    base = baseline(ws)
    (ws / "planted").mkdir()
    (ws / "planted/.git").write_text(f"gitdir: {outside}/.git\n")
    os.symlink(outside / ".git", ws / "linked")
    (ws / "linked2").mkdir()
    os.symlink(outside / ".git", ws / "linked2/.git")
    lines = neutralize(ws, base)
    assert sorted(lines) == [
        f"git: disabled {name} (it pointed git outside the working directory; a task may not plant commands git runs)"
        for name in ("linked2/.git", "planted/.git")]
    assert (ws / "mine/.git").is_file() and (ws / "planted/.git.fla-disabled").is_file()
    assert (ws / "linked2/.git.fla-disabled").is_symlink()


def test_symlinked_hook_is_renamed_and_its_target_untouched(ws: Path, tmp_path: Path) -> None:
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    target.chmod(0o755)
    base = baseline(ws)
    sub = new_repo(ws / "sub")
    os.symlink(target, sub / ".git/hooks/pre-commit")
    os.symlink(tmp_path / "missing", sub / ".git/hooks/post-commit")  # broken symlink
    os.mkfifo(sub / ".git/hooks/pre-push")  # reading a FIFO must not hang
    lines = neutralize(ws, base)
    assert len(lines) == 3
    assert (sub / ".git/hooks/pre-commit.fla-disabled").is_symlink()
    assert (sub / ".git/hooks/post-commit.fla-disabled").is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o755 and target.read_text() == "root:x:0:0\n"


def test_symlinked_hooks_folder_and_config_are_moved_not_followed(ws: Path, tmp_path: Path) -> None:
    global_cfg = tmp_path / "gitconfig"
    global_cfg.write_text("[core]\n\teditor = vim\n")
    hooks = tmp_path / "hooks"
    write_hook(hooks / "pre-commit", "exit 0")
    base = baseline(ws)
    sub = new_repo(ws / "sub")
    (sub / ".git/config").unlink()
    os.symlink(global_cfg, sub / ".git/config")
    shutil.rmtree(sub / ".git/hooks")
    os.symlink(hooks, sub / ".git/hooks")
    lines = neutralize(ws, base)
    assert (sub / ".git/config.fla-quarantined").is_symlink() and (sub / ".git/hooks.fla-disabled").is_symlink()
    assert global_cfg.read_text() == "[core]\n\teditor = vim\n" and (hooks / "pre-commit").exists()
    assert len(lines) == 2, lines


def test_unparsable_and_non_file_configs_are_quarantined(ws: Path) -> None:
    base = baseline(ws)
    sub = new_repo(ws / "sub")
    (sub / ".git/config").write_text("[core\n\tfsmonitor = touch x\n")
    other = new_repo(ws / "other")
    (other / ".git/config").unlink()
    os.mkfifo(other / ".git/config")
    lines = neutralize(ws, base)
    assert any(line.startswith("git: quarantined sub/.git/config as config.fla-quarantined") for line in lines)
    assert any(line.startswith("git: quarantined other/.git/config") for line in lines)
    assert not (sub / ".git/config").exists() and (sub / ".git/config.fla-quarantined").exists()
    assert git(sub, "status", check=False).returncode == 0
    assert neutralize(ws, base) == []


def test_users_broken_config_is_left_alone(ws: Path) -> None:
    sub = new_repo(ws / "sub")
    (sub / ".git/config").write_text("[core\n")
    base = baseline(ws)
    assert neutralize(ws, base) == []


def test_non_utf8_folder_names(ws: Path) -> None:
    base = baseline(ws)
    name = os.fsdecode(b"caf\xe9")
    sub = new_repo(ws / name)
    git(sub, "config", "core.fsmonitor", "touch x")
    write_hook(sub / ".git/hooks" / os.fsdecode(b"pre-\xff"), "touch x")
    lines = neutralize(ws, base)
    assert len(lines) == 2
    for line in lines:
        line.encode("utf-8")  # printable
    assert git(sub, "config", "core.fsmonitor", check=False).returncode == 1


def test_odd_trees_do_not_raise(ws: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "missing", ws / "broken")
    os.symlink(ws, ws / "loop")
    (ws / ".git").write_text("garbage")
    (ws / "locked").mkdir()
    (ws / "locked/.git").mkdir()
    (ws / "locked").chmod(0)
    try:
        base = baseline(ws)
        assert neutralize(ws, base) == []
    finally:
        (ws / "locked").chmod(0o755)


def test_config_lock_planted_falls_back_to_quarantine(ws: Path) -> None:
    base = baseline(ws)
    sub = new_repo(ws / "sub")
    git(sub, "config", "core.fsmonitor", "touch x")
    (sub / ".git/config.lock").write_text("")
    lines = neutralize(ws, base)
    assert any(line.startswith("git: quarantined sub/.git/config") for line in lines)


def test_commondir_of_a_linked_worktree_inside_ws(ws: Path, tmp_path: Path) -> None:
    base = baseline(ws)
    main = new_repo(ws / "main")
    git(main, "worktree", "add", "-q", "../wt")
    git(main, "config", "core.fsmonitor", "touch x")
    dirs = {p.resolve() for p in find_git_dirs(ws)}
    assert (main / ".git/worktrees/wt").resolve() in dirs and (main / ".git").resolve() in dirs
    assert len(neutralize(ws, base)) == 1


def test_walk_is_bounded_and_handles_many_files(ws: Path) -> None:
    for i in range(1000):
        folder = ws / f"d{i // 100}" / f"e{i}"
        folder.mkdir(parents=True)
        for j in range(10):
            (folder / f"f{j}").write_bytes(b"")
    new_repo(ws / "d3/e300/repo")
    assert find_git_dirs(ws) == [ws / "d3/e300/repo/.git"]
    assert not scan(ws).truncated
    assert scan(ws, limit=500).truncated and scan(ws, limit=500).checked == 500
    base = baseline(ws)
    assert neutralize(ws, base, limit=500)[-1].startswith(
        "git: WARNING: the working directory was too large to check fully for planted git settings (only 500 "
        "directories were checked)")


def test_many_files_do_not_end_the_walk(ws: Path) -> None:
    """Files cost nothing: 1000 of them in aaa/ must not hide a repository planted in zzz/."""
    base = baseline(ws)
    (ws / "aaa").mkdir()
    for i in range(1000):
        (ws / f"aaa/f{i}").write_bytes(b"")
    planted = new_repo(ws / "zzz")
    _fsmonitor(planted, ws.parent / "ran")
    found = scan(ws, limit=100)
    assert found.git_dirs == [str(planted / ".git")] and not found.truncated
    lines = neutralize(ws, base, limit=100)
    assert lines == [f"git: removed core.fsmonitor from zzz/.git/config ({git_guard.WHY})"]
    git(planted, "status")
    assert not (ws.parent / "ran").exists()


def test_too_many_folders_neutralize_what_was_found_and_warn(ws: Path) -> None:
    base = baseline(ws)
    for i in range(300):
        (ws / f"aaa/d{i}").mkdir(parents=True)
    planted = new_repo(ws / "zzz")
    _fsmonitor(planted, ws.parent / "ran")
    lines = neutralize(ws, base, limit=100)
    assert lines[0] == f"git: removed core.fsmonitor from zzz/.git/config ({git_guard.WHY})"  # a .git: found listed
    assert lines[1].startswith("git: WARNING: the working directory was too large to check fully")
    assert "(only 100 directories were checked)" in lines[1] and len(lines) == 2


def test_after_a_truncated_baseline_only_what_changed_since_is_neutralized(ws: Path) -> None:
    user = new_repo(ws / "deep/user")
    git(user, "config", "core.editor", "vim")
    write_hook(user / ".git/hooks/pre-commit", "exit 0")
    base = baseline(ws, limit=1)
    assert base.truncated and not base.configs
    # As if the baseline had been taken a minute later: everything in WS predates it (ctime), so all is the user's.
    assert neutralize(ws, dataclasses.replace(base, started=time.time() + 60)) == []
    # Taken now: the repo planted after it is neutralized although the baseline never saw that folder.
    planted = new_repo(ws / "deep/planted")
    git(planted, "config", "core.fsmonitor", "touch x")
    lines = neutralize(ws, dataclasses.replace(base, started=time.time() - 30))
    assert "git: removed core.fsmonitor from deep/planted/.git/config (a task may not plant commands git runs)" in lines


def managed(rel: str, how: str) -> str:
    return f"git: {rel} was {how} by the task; hook managers run it on your next commit — review it before committing"


def test_hook_managers_files_new_or_changed_are_reported_once_and_kept(ws: Path) -> None:
    user = new_repo(ws / "user")
    (user / ".pre-commit-config.yaml").write_text("repos: []\n")
    (user / "lefthook.yml").write_text("pre-commit: {}\n")
    write_hook(user / ".husky/pre-commit", "npm test")
    write_hook(user / ".husky/_/pre-commit", '. "$(dirname "$0")/h"')  # husky 9: stubs run .husky/<hook>
    write_hook(user / ".husky/_/h", "exit 0")
    git(user, "config", "core.hooksPath", ".husky/_")
    base = baseline(ws)
    planted = "repos:\n- repo: local\n  hooks:\n  - {id: x, name: x, entry: touch /x, language: system}\n"
    (user / ".pre-commit-config.yaml").write_text(planted)
    write_hook(user / ".husky/pre-push", "touch /x")
    (user / ".lefthook-local.yml").write_text("pre-commit:\n  commands:\n    x:\n      run: touch /x\n")
    write_hook(user / ".lefthook/pre-commit/x.sh", "touch /x")
    write_hook(user / ".husky/_/h", "touch /x")  # a guarded hook: disabled, not reported twice
    (new_repo(ws / "sub") / ".config").mkdir()
    (ws / "sub/.config/lefthook.toml").write_text("")
    (ws / ".pre-commit-config.yaml").write_text(planted)  # WS's root, not a repository
    (ws / "other").mkdir()
    (ws / "other/lefthook.yml").write_text("")  # no .git beside it: no hook manager reads it
    lines = neutralize(ws, base)
    assert sorted(lines) == sorted([
        managed("user/.pre-commit-config.yaml", "changed"), managed("user/.husky/pre-push", "created"),
        managed("user/.lefthook-local.yml", "created"), managed("user/.lefthook/pre-commit/x.sh", "created"),
        managed("sub/.config/lefthook.toml", "created"), managed(".pre-commit-config.yaml", "created"),
        f"git: disabled hook user/.husky/_/h ({git_guard.WHY})"])
    assert (user / ".pre-commit-config.yaml").read_text() == planted and (user / ".husky/pre-push").exists()
    assert neutralize(ws, base) == []  # reported once
    (user / ".pre-commit-config.yaml").write_text("repos: []\n")  # back to the user's: nothing to say
    (user / ".husky/pre-push").write_text("touch /y\n")  # changed again: said again
    assert neutralize(ws, base) == [managed("user/.husky/pre-push", "created")]


def test_loose_object_folders_are_not_walked(ws: Path) -> None:
    repo = new_repo(ws / "r")
    fanouts = [p for p in (repo / ".git/objects").iterdir() if len(p.name) == 2]
    assert fanouts
    git(fanouts[0], "init", "-q", "inside")
    assert find_git_dirs(ws) == [repo / ".git"]


def test_without_git_the_fallback_parser_reads_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    text = '[core]\n\tFSMonitor = "touch x" ; c\n[alias]\n\tst = status\n[diff "My Drv"]\n\ttextconv = y\n[a.B]\nk\n'
    assert git_config.parse_fallback(text) == [
        ("core.fsmonitor", "touch x"), ("alias.st", "status"), ("diff.My Drv.textconv", "y"), ("a.b.k", None)]
    assert git_config.parse_fallback("[core\n") is None
    monkeypatch.setattr(git_config.shutil, "which", lambda _name: None)
    assert git_config.parse(b"[core]\n\tpager = x\n") == [("core.pager", "x")]


# --- the root .git placeholder -------------------------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_two_reservations_share_the_placeholder(ws: Path, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    first = reserve_root_mask(ws, markers)
    assert first is not None and first.path == ws / ".git" and os.fspath(first) == str(ws / ".git")
    assert (ws / ".git").is_dir() and stat.S_IMODE((ws / ".git").stat().st_mode) == 0o755
    second = reserve_root_mask(ws, markers)
    assert second is not None and second.marker != first.marker
    release_root_mask(first)
    assert (ws / ".git").is_dir()
    release_root_mask(second)
    assert not (ws / ".git").exists()


def test_existing_git_is_not_masked_and_never_removed(ws: Path, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    new_repo(ws)
    assert reserve_root_mask(ws, markers) is None
    other = tmp_path / "other"
    other.mkdir()
    mask = reserve_root_mask(other, markers)
    assert mask is not None
    (other / ".git/HEAD").write_text("ref: refs/heads/main\n")  # someone filled it in meanwhile
    release_root_mask(mask)
    assert (other / ".git/HEAD").exists()


def test_an_empty_git_the_user_made_is_left_alone(ws: Path, tmp_path: Path) -> None:
    (ws / ".git").mkdir()
    assert reserve_root_mask(ws, tmp_path / "markers") is None
    assert not sweep_stale_masks(ws, tmp_path / "markers") and (ws / ".git").is_dir()


def test_stale_marker_of_a_dead_process_is_swept(ws: Path, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    folder = marker_folder(ws, markers)
    folder.mkdir(parents=True)
    (folder / f"{dead_pid()}-crashed").write_text("")
    (ws / ".git").mkdir()
    assert sweep_stale_masks(ws, markers)
    assert not (ws / ".git").exists() and list(folder.iterdir()) == [folder / ".lock"]

    (folder / f"{dead_pid()}-crashed").write_text("")
    (ws / ".git").mkdir()
    mask = reserve_root_mask(ws, markers)  # sweeps, then reserves afresh
    assert mask is not None and [p.name for p in folder.iterdir() if p.name != ".lock"] == [mask.marker.name]
    release_root_mask(mask)
    assert not (ws / ".git").exists()


def test_live_marker_of_another_process_keeps_the_placeholder(ws: Path, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    mask = reserve_root_mask(ws, markers)
    assert mask is not None
    (mask.marker.parent / f"{os.getppid()}-other").write_text("")
    release_root_mask(mask)
    assert (ws / ".git").is_dir()
    assert not sweep_stale_masks(ws, markers) and (ws / ".git").is_dir()


def test_empty_git_placeholder_is_skipped_by_git(tmp_path: Path) -> None:
    parent = new_repo(tmp_path / "parent")
    (parent / "sub").mkdir()
    mask = reserve_root_mask(parent / "sub", tmp_path / "markers")
    assert mask is not None and (parent / "sub/.git").is_dir()
    out = git(parent / "sub", "rev-parse", "--show-toplevel").stdout.strip()
    assert Path(out) == parent.resolve()
    assert git(parent / "sub", "status", "--porcelain").returncode == 0
    # a lone working directory with an empty .git is simply not a repository
    lone = tmp_path / "lone"
    (lone / ".git").mkdir(parents=True)
    assert git(lone, "status", check=False).returncode == 128
    release_root_mask(mask)
    assert not (parent / "sub/.git").exists()
