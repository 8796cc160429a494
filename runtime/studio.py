"""The graph ``langgraph dev`` serves (``langgraph.json``), with its threads kept where the CLI finds them.

The dev server brings its own checkpointer — in memory, written to ``.langgraph_api/`` only on a clean
stop; the installed langgraph-api lets ``langgraph.json`` configure no other — so ``kill -9`` of the server
lost every thread on it. The served graph therefore wraps whatever checkpointer the server gives it
(:meth:`DurableGraph.copy`, which the server calls for each run) in :class:`MirroredSaver`: the server's
saver answers every read as before, and every checkpoint and pending write is also written to the agent's
own store (``checkpoints.db`` in the home, or the shared PostgreSQL database). A thread of a crashed server
is then resumed with ``free-llm-agent resume THREAD`` (with the server's home and database); the task
journal (in the same home) keeps a task that was running at the crash from running twice unasked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.graph.state import CompiledStateGraph

from free_llm_agent.config import resolve_home
from free_llm_agent.storage.checkpoints import Checkpoints
from free_llm_agent.storage.registry import open_checkpointer, resolve_database_url

_log = logging.getLogger(__name__)
_store: list[Checkpoints] = []  # the agent's own store, once opened in this process


def open_agent_store() -> Checkpoints:
    """The agent's own checkpoint store for this process's home and database (``$FREE_AGENT_HOME``,
    ``$FREE_AGENT_DATABASE_URL``), opened once. Opened when the server loads the graph, not in its event
    loop, where a file opened is a blocking call."""
    if not _store:
        _store.append(open_checkpointer(resolve_database_url(), Path(resolve_home(os.environ.get("FREE_AGENT_HOME")))))
    return _store[0]


class MirroredSaver(BaseCheckpointSaver[Any]):
    """``primary`` for everything; its checkpoints and writes also go to ``mirror`` (a failure there is
    logged, never the run's)."""

    def __init__(self, primary: BaseCheckpointSaver[Any], mirror: BaseCheckpointSaver[Any]) -> None:
        super().__init__(serde=primary.serde)
        self.primary, self.mirror = primary, mirror

    def _copy(self, what: str, *args: Any) -> None:
        try:
            getattr(self.mirror, what)(*args)
        except Exception:  # the server's own run goes on; only the crash copy is missing
            _log.exception("could not keep a copy of a checkpoint in the agent's store")

    @property
    def config_specs(self) -> list[Any]:
        return list(self.primary.config_specs)

    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.primary.get_next_version(current, channel)

    # -- reads: the server's own ------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.primary.get_tuple(config)

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]:
        return self.primary.list(config, filter=filter, before=before, limit=limit)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.primary.aget_tuple(config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        async for item in self.primary.alist(config, filter=filter, before=before, limit=limit):
            yield item

    # -- writes: the server's, then the copy --------------------------------------------
    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        saved = self.primary.put(config, checkpoint, metadata, new_versions)
        self._copy("put", config, checkpoint, metadata, new_versions)
        return saved

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        self.primary.put_writes(config, writes, task_id, task_path)
        self._copy("put_writes", config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self.primary.delete_thread(thread_id)
        self._copy("delete_thread", thread_id)

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        saved = await self.primary.aput(config, checkpoint, metadata, new_versions)
        await asyncio.to_thread(self._copy, "put", config, checkpoint, metadata, new_versions)
        return saved

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await self.primary.aput_writes(config, writes, task_id, task_path)
        await asyncio.to_thread(self._copy, "put_writes", config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.primary.adelete_thread(thread_id)
        await asyncio.to_thread(self._copy, "delete_thread", thread_id)

    # -- the rest of the saver's interface: the server's own (the copy is only for a crash) --------
    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.primary.delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.primary.copy_thread(source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.primary.prune(thread_ids, strategy=strategy)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self.primary.adelete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.primary.acopy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self.primary.aprune(thread_ids, strategy=strategy)


class DurableGraph(CompiledStateGraph):  # type: ignore[type-arg]
    """The compiled agent whose copies with a server's checkpointer keep a crash copy (module docstring)."""

    def copy(self, update: dict[str, Any] | None = None) -> DurableGraph:
        saver = (update or {}).get("checkpointer")
        if _store and isinstance(saver, BaseCheckpointSaver) and not isinstance(saver, MirroredSaver):
            update = {**(update or {}), "checkpointer": MirroredSaver(saver, _store[0].saver)}
        return super().copy(update)


def durable(graph: CompiledStateGraph) -> DurableGraph:  # type: ignore[type-arg]
    """``graph`` as a :class:`DurableGraph` (the same nodes, channels and settings). Loaded by a LangGraph
    server, the agent's store is opened now; elsewhere (the CLI, the Python API) nothing is opened."""
    if "langgraph_api" in sys.modules:
        try:
            open_agent_store()
        except Exception:  # the server still runs; its threads only lack the crash copy
            _log.exception("could not open the agent's checkpoint store: threads will not survive a crash")
    return DurableGraph(**{k: v for k, v in graph.__dict__.items() if k != "__orig_class__"})
