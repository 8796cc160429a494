"""quota_throughput worker: ours (``QuotaAwareChatModel`` over a home shared by every worker).

Run by ``bench/quota_throughput.py`` with the project's interpreter; the spec adds
``config_dir`` and ``home`` (see ``bench/peers/quota_protocol.py``), and ``code`` (``--code
DIR``: import ``providers``/``config`` from DIR, another version) when given.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CODE = json.loads(Path(sys.argv[1]).read_text()).get("code")
sys.path[:0] = [*([CODE] if CODE else []), str(HERE.parent), str(HERE / "peers")]

from quota_protocol import load_spec, run  # noqa: E402

from free_llm_agent.providers import build_chat_model  # noqa: E402


def main() -> None:
    spec = load_spec()
    llm = build_chat_model(Path(spec["config_dir"]), Path(spec["home"]))
    for name in llm.router.keys:  # build the clients (imports) before the start, as the peers do
        llm.router.client(name)
    run(spec, llm.invoke)


if __name__ == "__main__":
    main()
