"""Response cache shared by every process: same request -> same answer, within a TTL.

The key is provider-independent: normalised messages, bound tools / output
schema and temperature. Only successful answers are stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, message_to_dict, messages_from_dict

from free_llm_agent.storage.database import StateDatabase

# Message fields that differ between identical requests and must not split the cache.
_VOLATILE = {"id", "response_metadata", "usage_metadata", "additional_kwargs"}


def _normalise(message: BaseMessage) -> dict[str, Any]:
    data = message_to_dict(message)["data"]
    out = {k: v for k, v in data.items() if k not in _VOLATILE and v not in (None, [], {}, "")}
    out["type"] = message.type
    return out


def cache_key(messages: Sequence[BaseMessage], params: Mapping[str, Any]) -> str:
    """Hash of the request; ``params`` holds tools, tool_choice, schema and temperature."""
    payload = {"messages": [_normalise(m) for m in messages], "params": params}
    blob = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    def __init__(self, db: StateDatabase, ttl_s: float, enabled: bool = True) -> None:
        self.db, self.ttl_s, self.enabled = db, ttl_s, enabled

    def get(self, key: str, now: float) -> AIMessage | None:
        if not self.enabled:
            return None
        rows = self.db.query("SELECT message FROM response_cache WHERE key=? AND created>?", (key, now - self.ttl_s))
        if not rows:
            return None
        (message,) = messages_from_dict([json.loads(str(rows[0][0]))])
        return message if isinstance(message, AIMessage) else AIMessage(**message.model_dump())

    def evict(self, key: str) -> None:
        """Forget the answer for ``key`` (its caller rejected it)."""
        if self.enabled:
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM response_cache WHERE key=?", (key,))

    def put(self, key: str, message: AIMessage, now: float) -> None:
        if not self.enabled:
            return
        message = message.model_copy(update={"response_metadata": {
            k: v for k, v in message.response_metadata.items() if k != "cache_key"}})
        blob = json.dumps(message_to_dict(message), default=str)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO response_cache(key, created, message) VALUES (?,?,?) ON CONFLICT(key) DO UPDATE"
                " SET created=excluded.created, message=excluded.message", (key, now, blob)
            )
            conn.execute("DELETE FROM response_cache WHERE created<?", (now - self.ttl_s,))
