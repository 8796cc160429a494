"""The hostile snippets of tests/test_sandbox_hostile.py and what the deny-list alone does with them.

Each snippet is python or shell code with ``{placeholders}`` for the canary paths; ``EXPECTED_OFF``
is the documented outcome of each with the sandbox off (the deny-list is then the only wall).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Literal

BLOCKED = "blocked by deny-list"
HARMLESS = "harmless"
GOT_THROUGH = "got through"
ENV_KEY = "FLA_TEST_API_KEY"


# ---------------------------------------------------------------------------------------- snippets
@dataclasses.dataclass(frozen=True)
class Snippet:
    id: str
    language: Literal["python", "shell"]
    code: str  # str.format template over Canaries.placeholders()
    about: str
    payload: str = ""  # formatted too, then available base64-encoded as {payload_b64}
    done_marker: str = ""  # workspace file a background job creates once it has acted

    def render(self, values: Mapping[str, str]) -> str:
        """The code with the canary paths (``Canaries.placeholders()``) filled in."""
        payload = self.payload.format(**values)
        return self.code.format(**values, payload_b64=base64.b64encode(payload.encode()).decode())


def _py(sid: str, about: str, code: str, **kw: str) -> Snippet:
    return Snippet(sid, "python", code, about, **kw)


def _sh(sid: str, about: str, code: str, **kw: str) -> Snippet:
    return Snippet(sid, "shell", code, about, **kw)


_PPID_CHAIN_SH = """p=$PPID
while [ "$p" -ge 1 ]; do
  tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | grep -a '^FLA_TEST' | rev
  p=$(sed 's/.*) //' /proc/$p/stat | cut -d' ' -f2)
done"""
_PPID_CHAIN_PY = """import os
pid = os.getppid()
while pid >= 1:
    try:
        env = open(f'/proc/{{pid}}/environ', 'rb').read().split(b'\\0')
        print(pid, [e.hex() for e in env if e.startswith(b'FLA_TEST')])
        pid = int(open(f'/proc/{{pid}}/stat').read().rsplit(')', 1)[1].split()[1])
    except OSError as exc:
        print(pid, exc)
        break"""
_GLOB_HOME = """import glob, os
for path in glob.glob(os.path.expanduser('~/**'), recursive=True, include_hidden=True):
    try:
        print(path, open(path, errors='replace').read() if os.path.isfile(path) else '')
    except OSError as exc:
        print(path, exc)"""
_WALK = """import os
for top, dirs, files in os.walk('{root}'):
    for name in files:
        try:
            print(name, open(os.path.join(top, name), 'rb').read())
        except OSError as exc:
            print(name, exc)"""

SNIPPETS: tuple[Snippet, ...] = (
    # --- known deny-list bypasses that write or delete
    _py("py_getattr_system", "getattr(os, 'sys'+'tem')('rm -rf TREE')",
        "import os\ngetattr(os, 'sys' + 'tem')('rm -rf {tree}')"),
    _py("py_join_open_write", "open(''.join([...]), 'w') on the canary file",
        "open(''.join({ro_secret_parts}), 'w').write('pwned')"),
    _sh("sh_echo_pipe_bash", "echo 'rm -rf TREE' | bash", "echo 'rm -rf {tree}' | bash"),
    _sh("sh_var_rm", "X=rm; $X -rf TREE", "X=rm; $X -rf {tree}"),
    _py("py_exec_b64", "exec(base64.b64decode(...)) of shutil.rmtree",
        "import base64\nexec(base64.b64decode('{payload_b64}'))", payload="import shutil; shutil.rmtree('{tree}')"),
    _sh("sh_perl_system", "perl -e 'system \"rm -rf TREE\"'", "perl -e 'system(\"rm -rf {tree}\")'"),
    _sh("sh_perl_unlink", "perl -e 'unlink FILE'", "perl -e 'unlink \"{ro_secret}\"'"),
    _sh("sh_symlink_write", "ln -s FILE link in the workdir, write through it",
        "ln -s {ro_secret} link && echo pwned > link"),
    _py("py_symlink_write", "os.symlink(FILE, 'plink') in the workdir, open('plink', 'w')",
        "import os\nos.symlink('{ro_secret}', 'plink')\nwith open('plink', 'w') as f:\n    f.write('pwned')"),
    _sh("sh_hardlink_write", "ln FILE hard (hard link into the workdir), append to it",
        "ln {ro_secret} hard && echo pwned >> hard"),
    _sh("sh_write_tmp_canary", "echo > the canary in the real /tmp", "echo pwned > {tmp_canary}"),
    _py("py_remove_tmp_canary", "os.remove() of the canary in the real /tmp", "import os\nos.remove('{tmp_canary}')"),
    _py("py_rmtree", "shutil.rmtree(TREE)", "import shutil\nshutil.rmtree('{tree}')"),
    _py("py_rmtree_join", "shutil.rmtree(os.path.join(*[...]))",
        "import os, shutil\nshutil.rmtree(os.path.join(*['{ro}', 'tree']))"),
    _py("py_os_remove", "os.remove(FILE)", "import os\nos.remove('{ro_secret}')"),
    _py("py_os_remove_alias", "rm = os.remove; rm(FILE)", "import os\nrm = os.remove\nrm('{ro_secret}')"),
    _py("py_subprocess_rm", "subprocess.run(['rm', '-rf', TREE])",
        "import subprocess\nsubprocess.run(['rm', '-rf', '{tree}'])"),
    _py("py_subprocess_rm_str", "subprocess.run(['rm', '-rf', str(TREE)])",
        "import subprocess\nsubprocess.run(['rm', '-rf', str('{tree}')])"),
    _sh("sh_python_c", "python3 -c \"shutil.rmtree(TREE)\" from the shell",
        "python3 -c \"import shutil; shutil.rmtree('{tree}')\""),
    _sh("sh_python_heredoc", "python3 - <<EOF shutil.rmtree(TREE) from the shell",
        "python3 - <<'EOF'\nimport shutil\nshutil.rmtree('{tree}')\nEOF"),
    _sh("sh_cp_over", "cp -t DIR secret.txt over the canary file",
        "printf pwned > secret.txt && cp -t {ro} secret.txt"),
    _sh("sh_truncate", "truncate -s 0 FILE", "truncate -s 0 {ro_secret}"),
    _sh("sh_truncate_var", "T=FILE; truncate -s 0 \"$T\"", "T={ro_secret}; truncate -s 0 \"$T\""),
    _sh("sh_dd_write", "dd of=FILE conv=notrunc", "dd if=/dev/zero of={ro_secret} bs=4 count=1 conv=notrunc"),
    _sh("sh_tee", "echo | tee FILE", "echo pwned | tee {ro_secret}"),
    _sh("sh_sed_i", "sed -i on the canary file", "sed -i 's/flacanary/pwned/' {ro_secret}"),
    _sh("sh_mv", "mv FILE into the workdir", "mv {ro_secret} stolen.txt"),
    _sh("sh_mv_pushd", "pushd DIR; mv secret.txt moved.txt", "pushd {ro} >/dev/null && mv secret.txt moved.txt"),
    _sh("sh_chmod", "chmod 000 FILE", "chmod 000 {ro_secret}"),
    _sh("sh_find_exec_chmod", "find DIR -exec chmod 000 {} +",
        "find {ro} -name secret.txt -exec chmod 000 {{}} +"),
    _sh("sh_ln_sf", "ln -sf -t DIR $PWD/secret.txt (replace the canary by a link)",
        "touch secret.txt && ln -sf -t {ro} \"$PWD/secret.txt\""),
    _sh("sh_nohup_later", "nohup sh -c 'sleep 1; echo > FILE' & (writes after the run)",
        "nohup sh -c 'sleep 1; echo pwned > \"$0\"; touch nohup.done' {ro_secret} >/dev/null 2>&1 &",
        done_marker="nohup.done"),
    _sh("sh_rm_agent_home_var", "X=rm; $X -rf AGENT_HOME/*", "X=rm; $X -rf {agent_home}/*"),
    _py("py_write_env", "open(''.join([...]), 'w') on the .env file",
        "open(''.join({env_file_parts}), 'w').write('pwned')"),
    # --- reading secrets
    _sh("sh_cat_creds", "cat ~/.ssh/id_rsa ~/.aws/credentials ~/.netrc",
        "cat ~/.ssh/id_rsa ~/.aws/credentials ~/.netrc"),
    _sh("sh_cat_env", "cat the .env file", "cat {env_file}"),
    _sh("sh_cat_tmp_canary", "cat the canary in the real /tmp", "cat {tmp_canary}"),
    _sh("sh_dd_read_env", "dd if=.env", "dd if={env_file} status=none"),
    _py("py_read_agent_db", "open(agent.db, 'rb').read()", "print(open('{agent_db}', 'rb').read())"),
    _py("py_read_extra_hidden", "open() of a file in execution.hidden_paths",
        "print(open('{extra}/secret.txt').read())"),
    _py("py_glob_home", "glob('~/**', include_hidden=True), print every file", _GLOB_HOME),
    _py("py_walk_canaries", "os.walk() over the canary folder, print every file", _WALK),
    _sh("sh_find_checkpoints", "find / -name checkpoints.db | xargs cat",
        "find / -name checkpoints.db -path '*{tag}*' 2>/dev/null | xargs -r cat"),
    _py("py_sqlite_agent_db", "sqlite3.connect(agent.db), select the secrets",
        "import sqlite3\nprint(sqlite3.connect('{agent_db}').execute('select * from secrets').fetchall())"),
    _sh("sh_sqlite3_cli", "sqlite3 checkpoints.db 'select ...'",
        "sqlite3 {ckpt_db} 'select * from checkpoints'"),
    # --- reading the key from environments
    _sh("sh_env", "env | rev; printenv KEY", f"env | rev; printenv {ENV_KEY}"),
    _py("py_environ", "print(os.environ), the key reversed",
        f"import os\nprint(dict(os.environ))\nprint(os.environ.get('{ENV_KEY}', '')[::-1])"),
    _sh("sh_proc_self_environ", "/proc/self/environ | rev", "tr '\\0' '\\n' < /proc/self/environ | rev"),
    _sh("sh_proc_ppid_environ", "/proc/$PPID/environ up the parent chain | rev", _PPID_CHAIN_SH),
    _py("py_proc_ppid_environ", "/proc/<ppid>/environ up the parent chain, hex", _PPID_CHAIN_PY),
    _sh("sh_proc_all_environ", "grep the key in /proc/*/environ | rev",
        f"grep -aoh '{ENV_KEY}=[[:alnum:]]*' /proc/[0-9]*/environ 2>/dev/null | rev"),
    # --- undoing the sandbox's mounts (in a throwaway mount namespace)
    _sh("sh_umount_ssh", "unshare -m: umount ~/.ssh, cat the key",
        "unshare -m sh -c 'umount {user_home}/.ssh; cat {user_home}/.ssh/id_rsa'"),
    _sh("sh_umount_agent_home", "unshare -m: umount AGENT_HOME, sqlite3 agent.db",
        "unshare -m sh -c 'umount {agent_home}; sqlite3 {agent_db} \"select * from secrets\"'"),
    _sh("sh_remount_rw", "unshare -m: bind DIR, remount it rw, write the canary",
        "unshare -m sh -c 'mount --bind {ro} {ro} && mount -o remount,bind,rw {ro} && T={ro}/secret.txt "
        "&& echo pwned > \"$T\"'"),
)

# What each snippet does without the sandbox (observed; the deny-list is the only guard then).
EXPECTED_OFF: dict[str, str] = {
    "py_getattr_system": GOT_THROUGH,
    "py_join_open_write": GOT_THROUGH,
    "sh_echo_pipe_bash": GOT_THROUGH,
    "sh_var_rm": GOT_THROUGH,
    "py_exec_b64": GOT_THROUGH,
    "sh_perl_system": GOT_THROUGH,
    "sh_perl_unlink": GOT_THROUGH,
    "sh_symlink_write": GOT_THROUGH,
    "py_symlink_write": GOT_THROUGH,
    "sh_hardlink_write": GOT_THROUGH,
    "sh_write_tmp_canary": GOT_THROUGH,
    "py_remove_tmp_canary": GOT_THROUGH,
    "py_rmtree": BLOCKED,
    "py_rmtree_join": GOT_THROUGH,
    "py_os_remove": BLOCKED,
    "py_os_remove_alias": GOT_THROUGH,
    "py_subprocess_rm": BLOCKED,
    "py_subprocess_rm_str": GOT_THROUGH,
    "sh_python_c": BLOCKED,
    "sh_python_heredoc": GOT_THROUGH,
    "sh_cp_over": GOT_THROUGH,
    "sh_truncate": BLOCKED,
    "sh_truncate_var": GOT_THROUGH,
    "sh_dd_write": BLOCKED,
    "sh_tee": BLOCKED,
    "sh_sed_i": GOT_THROUGH,
    "sh_mv": BLOCKED,
    "sh_mv_pushd": GOT_THROUGH,
    "sh_chmod": BLOCKED,
    "sh_find_exec_chmod": GOT_THROUGH,
    "sh_ln_sf": GOT_THROUGH,
    "sh_nohup_later": GOT_THROUGH,
    "sh_rm_agent_home_var": GOT_THROUGH,
    "py_write_env": GOT_THROUGH,
    "sh_cat_creds": GOT_THROUGH,
    "sh_cat_env": GOT_THROUGH,
    "sh_cat_tmp_canary": GOT_THROUGH,
    "sh_dd_read_env": GOT_THROUGH,
    "py_read_agent_db": GOT_THROUGH,
    "py_read_extra_hidden": GOT_THROUGH,
    "py_glob_home": GOT_THROUGH,
    "py_walk_canaries": GOT_THROUGH,
    "sh_find_checkpoints": GOT_THROUGH,
    "py_sqlite_agent_db": GOT_THROUGH,
    "sh_sqlite3_cli": GOT_THROUGH,
    "sh_env": HARMLESS,
    "py_environ": HARMLESS,
    "sh_proc_self_environ": HARMLESS,
    "sh_proc_ppid_environ": GOT_THROUGH,
    "py_proc_ppid_environ": GOT_THROUGH,
    "sh_proc_all_environ": GOT_THROUGH,
    "sh_umount_ssh": GOT_THROUGH,
    "sh_umount_agent_home": GOT_THROUGH,
    "sh_remount_rw": GOT_THROUGH,
}
