"""A newcomer's first hour, replayed as commands and timed, in a fresh fake home.

Run: ``uv run python bench/newcomer_path.py [--rounds 2] [--keep]``

Each round gets a new home (``HOME``, ``XDG_CONFIG_HOME``, ``XDG_DATA_HOME``, ``XDG_CACHE_HOME``, and uv's
``UV_TOOL_DIR`` / ``UV_TOOL_BIN_DIR`` under it; ``~/.local/bin`` first on ``PATH``) and follows the README's
quick start and docs/install.md literally:

1. ``git clone`` this checkout (its committed ``HEAD``) to ``~/free-llm-agent``, then
   ``uv tool install --overrides free-llm-agent/overrides.txt ./free-llm-agent`` into the empty tool folder
   (cold for the tool environment; uv's package cache stays the machine's, ``UV_CACHE_DIR``, so packages
   come from the cache or the registry mirror: the outcome tells how many uv had to prepare);
2. ``free-llm-agent --version`` and ``free-llm-agent demo --yes``;
3. ``free-llm-agent init``, ``keys set GROQ_API_KEY`` with the key on stdin, ``keys list``;
4. with no internet, the test suite's loopback fake (``tests/fakes``: ``FakeProvider`` speaking Groq's wire
   format, answering like a good model with ``agent_responder.make_responder``) stands in for Groq: the one
   edit is a ``base_url:`` line under ``groq_llama`` in the ``providers.yaml`` that ``init`` wrote. Then
   ``check``, the quick start's first goal in ``~/fla-sample`` (``run "…" --yes``) and ``threads``.

No provider key is in the environment (every ``*_API_KEY``, ``HF_TOKEN`` and ``FREE_AGENT_*`` is removed),
nor ``VIRTUAL_ENV``. ``PYTHONDONTWRITEBYTECODE`` is removed too, as on most desktops (``--no-bytecode``
keeps it, as in many containers). ``NO_PROXY`` names the loopback, for the stand-in.
Wall seconds per command; the machine's load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import REPO, markdown_table

from tests.fakes.agent_responder import make_responder
from tests.fakes.provider_server import FakeProvider

GOAL = "count the words in words.txt and write the counts to counts.csv"
WORDS = "alpha beta gamma\nbeta gamma\ngamma\n"
PLAN = (("count the words in words.txt and write them to counts.csv",
         "from collections import Counter\n"
         "counts = Counter(open('words.txt').read().split())\n"
         "open('counts.csv', 'w').write('word,count\\n' + ''.join(f'{w},{n}\\n' for w, n in counts.most_common()))\n"
         "print(dict(counts))"),)
FAKE_KEY = "gsk_newcomer_bench_not_a_real_key"
_DROP = re.compile(r"^(VIRTUAL_ENV|FREE_AGENT_.*|.*_API_KEY|HF_TOKEN|UV_TOOL_.*|XDG_.*)$")


@dataclass
class Step:
    name: str
    command: str
    seconds: float
    outcome: str


def uv_dir(what: str) -> str:
    return subprocess.run(["uv", what, "dir"] if what == "cache" else ["uv", "python", "dir"],
                          capture_output=True, text=True, check=True).stdout.strip()


def fake_home_env(home: Path, *, keep_no_bytecode: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _DROP.match(k)}
    if not keep_no_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    env |= {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "UV_TOOL_DIR": str(home / ".local/share/uv/tools"),
        "UV_TOOL_BIN_DIR": str(home / ".local/bin"),
        "UV_CACHE_DIR": uv_dir("cache"),  # the machine's: packages from the cache / registry mirror
        "UV_PYTHON_INSTALL_DIR": uv_dir("python"),  # the machine's Pythons, none downloaded
        "PATH": f"{home / '.local/bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    }
    return env


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def cell(text: str, limit: int = 90) -> str:
    text = text.replace("|", "\\|").replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Round:
    def __init__(self, home: Path, *, keep_no_bytecode: bool) -> None:
        self.home = home
        self.env = fake_home_env(home, keep_no_bytecode=keep_no_bytecode)
        self.steps: list[Step] = []

    def run(self, name: str, shown: str, argv: list[str], cwd: Path, *, stdin: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        try:
            proc = subprocess.run(argv, cwd=cwd, env=self.env, input=stdin, capture_output=True, text=True,
                                  timeout=timeout, stdin=None if stdin is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            self.steps.append(Step(name, shown, time.monotonic() - start, f"timed out after {timeout:.0f} s"))
            return subprocess.CompletedProcess(argv, -1, "", "")
        seconds = time.monotonic() - start
        self.steps.append(Step(name, shown, seconds, f"exit {proc.returncode}"))
        return proc

    def note(self, outcome: str) -> None:
        self.steps[-1].outcome += "; " + outcome.replace(str(self.home), "~")

    def replay(self) -> None:
        home = self.home
        fla = "free-llm-agent"
        self.run("0 clone", f"git clone <repo> {fla}", ["git", "clone", "--quiet", str(REPO), fla], home)
        proc = self.run("1 install", f"uv tool install --overrides {fla}/overrides.txt ./{fla}",
                        ["uv", "tool", "install", "--overrides", f"{fla}/overrides.txt", f"./{fla}"], home,
                        timeout=900)
        counts = dict(re.findall(r"(Resolved|Prepared|Installed) (\d+) packages?", proc.stderr))
        if "Installed" in counts:  # uv prepares (downloads, builds) only what its cache lacks
            self.note(f"{counts['Installed']} packages installed, {counts.get('Prepared', 0)} of them prepared "
                      "(the rest from uv's cache)")
        if proc.returncode != 0:
            self.note(cell(last_line(proc.stderr)))
            return
        self.note(f"on PATH: {shutil.which(fla, path=self.env['PATH']) is not None}")
        proc = self.run("2 version", f"{fla} --version", [fla, "--version"], home)
        self.note(cell(last_line(proc.stdout + proc.stderr)))
        proc = self.run("2 demo", f"{fla} demo --yes", [fla, "demo", "--yes"], home)
        self.note(cell(last_line(proc.stdout)))
        proc = self.run("3 init", f"{fla} init", [fla, "init"], home)
        providers = home / ".config" / fla / "providers.yaml"
        self.note(f"wrote ~/{providers.relative_to(home)}" if providers.is_file() else "no providers.yaml")
        proc = self.run("3 keys set", f"{fla} keys set GROQ_API_KEY", [fla, "keys", "set", "GROQ_API_KEY"], home,
                        stdin=FAKE_KEY + "\n")
        self.note("key piped on stdin; " + cell(last_line(proc.stdout + proc.stderr)))
        proc = self.run("3 keys list", f"{fla} keys list", [fla, "keys", "list"], home)
        groq = [[c.strip() for c in ln.split("│")] for ln in proc.stdout.splitlines() if "GROQ_API_KEY" in ln]
        self.note(f"GROQ_API_KEY {groq[0][3]} from {groq[0][4]}" if groq and len(groq[0]) > 4
                  else cell(last_line(proc.stdout + proc.stderr)))
        if not providers.is_file():
            return
        with FakeProvider("openai", responder=make_responder(PLAN)) as fake:
            text = providers.read_text(encoding="utf-8")
            edited = re.sub(r"(\n  groq_llama:\n    kind: groq\n)",
                            rf"\1    base_url: {fake.base_url}   # the stand-in for Groq (no internet here)\n",
                            text, count=1)
            providers.write_text(edited, encoding="utf-8")
            self.steps.append(Step("4 stand-in", "providers.yaml: groq_llama base_url → loopback fake", 0.0,
                                   "edited" if edited != text else "groq_llama entry not found"))
            proc = self.run("4 check", f"{fla} check", [fla, "check"], home, timeout=180)
            rows = [" ".join(ln.split()) for ln in proc.stdout.splitlines() if "groq" in ln]
            self.note(cell("; ".join(rows) or last_line(proc.stdout + proc.stderr), 160))
            sample = home / "fla-sample"
            sample.mkdir()
            (sample / "words.txt").write_text(WORDS, encoding="utf-8")
            proc = self.run("4 first goal", f'cd ~/fla-sample && {fla} run "{GOAL}" --yes',
                            [fla, "run", GOAL, "--yes"], sample)
            csv = sample / "counts.csv"
            self.note(f"counts.csv: {csv.read_text().splitlines()[1:]}" if csv.is_file() else "no counts.csv")
            self.note(cell(last_line(proc.stdout)))
            proc = self.run("4 threads", f"{fla} threads", [fla, "threads"], sample)
            rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("│")]
            self.note(f"{len(rows)} thread(s): " + ", ".join(" ".join(r.split("│")[2].split()) for r in rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each in a new fake home (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the fake homes (their paths are printed)")
    parser.add_argument("--no-bytecode", action="store_true", help="keep PYTHONDONTWRITEBYTECODE if it is set")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rounds: list[Round] = []
    for i in range(args.rounds):
        home = Path(tempfile.mkdtemp(prefix="fla-newcomer-", dir="/var/tmp")) / "home"
        home.mkdir()
        rnd = Round(home, keep_no_bytecode=args.no_bytecode)
        print(f"round {i + 1}: HOME={home}", file=sys.stderr)
        try:
            rnd.replay()
        finally:
            if not args.keep:
                shutil.rmtree(home.parent, ignore_errors=True)
        rounds.append(rnd)
    load_after = os.getloadavg()
    headers = ["step", "command", *(f"s (round {i + 1})" for i in range(len(rounds))), "outcome (last round)"]
    rows = []
    for j, step in enumerate(rounds[-1].steps):
        secs = [f"{r.steps[j].seconds:.1f}" if j < len(r.steps) else "-" for r in rounds]
        rows.append([step.name, f"`{step.command}`", *secs, cell(step.outcome, 200)])
    totals = [f"{sum(s.seconds for s in r.steps):.1f}" for r in rounds]
    rows.append(["total", "", *totals, "every step" if all(ok(r) for r in rounds) else "NOT every step exited 0"])
    print(markdown_table(headers, rows))
    print(f"\n{os.cpu_count()} cores; load average (1, 5, 15 min) "
          f"{' '.join(f'{x:.2f}' for x in load_before)} before, {' '.join(f'{x:.2f}' for x in load_after)} after "
          f"(other work shares the machine); PYTHONDONTWRITEBYTECODE "
          f"{'kept' if args.no_bytecode else 'unset'}; uv {uv_version()}")
    return 0


def ok(rnd: Round) -> bool:
    return all(s.outcome.startswith(("exit 0", "edited")) for s in rnd.steps) and len(rnd.steps) == 11


def uv_version() -> str:
    return subprocess.run(["uv", "--version"], capture_output=True, text=True).stdout.split()[1]


if __name__ == "__main__":
    raise SystemExit(main())
