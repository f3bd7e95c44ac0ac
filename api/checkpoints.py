"""Checkpoints of the embedded store while the server runs.

LadybugDB logs every commit ahead (the ``.wal`` file beside the database) and folds the log
into the database file on a checkpoint; a process killed before one replays the whole log
when the store is opened next, and answers nothing meanwhile (measured: about 0.04 s per MiB
of log, and a storm of alerts writes ~5.5 KiB of log per alert, incidents included). Left
to itself the engine checkpoints only when a commit finds the log past its threshold
(256 MiB, set for bulk loads), in that commit. So the server checkpoints on its own
schedule, on a thread of its own: soon after writes pause (cheap for everyone: nobody
waits), and when the log passes ``checkpoint_log_mb`` even while writes go on (that
checkpoint holds the writers; it is what bounds the replay after a crash: the default
32 MiB replays in ~1.3 s, and a checkpoint at that size took 0.3-0.4 s with 20k alerts in
the store, 0.45 s at 64 MiB, within the webhook's latency target). A checkpoint also drops
the change-log payloads that every view has applied
(:meth:`kg.graph.KnowledgeGraph.checkpoint`): the engine rewrites the string data of a
table it checkpoints, and those payloads made each checkpoint cost seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from api.periodic import Periodic
from kg.graph import KnowledgeGraph

log = logging.getLogger("autocnc.checkpoints")
MiB = 1 << 20


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to checkpoint: ``log_bytes`` of log at most, writing or not; and once writes
    have paused for ``idle_s`` with at least ``idle_bytes`` of log."""

    log_bytes: int = 64 * MiB
    idle_s: float = 1.0
    idle_bytes: int = 1 * MiB


def checkpoint_reason(log_bytes: int, idle_s: float, policy: CheckpointPolicy) -> str | None:
    """Why to checkpoint now (``"log"``: the log reached its bound; ``"idle"``: writes
    paused with some log to fold), or None: a pure function of the log's size and of how
    long writes have paused."""
    if log_bytes >= policy.log_bytes:
        return "log"
    if idle_s >= policy.idle_s and log_bytes >= policy.idle_bytes:
        return "idle"
    return None


class Checkpointer:
    """Asks :func:`checkpoint_reason` every ``interval`` seconds and checkpoints the
    knowledge graph's store when it says so (a store that checkpoints itself, Neo4j, has
    no log here). In between, it flushes the RDF view at most every ``flush_s`` seconds
    while the view changes (it catches up in the background, often long after the writes):
    Oxigraph replays what it held in memory on the next open, seconds for a storm's view."""

    def __init__(self, kg: KnowledgeGraph, policy: CheckpointPolicy, *,
                 interval: float = 0.25, flush_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kg, self.policy, self.clock, self.flush_s = kg, policy, clock, flush_s
        self._flushed = (kg.view_version, clock())  # the view's version then, and when
        self._ticker = Periodic("checkpoints", interval, self.tick, "autocnc.checkpoints")

    def start(self) -> Checkpointer:
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop(timeout=60)

    def tick(self) -> str | None:
        """Checkpoint if due, else flush the view if due; the reason (``"log"``,
        ``"idle"``, ``"view"``), or None when nothing was."""
        version, now = self.kg.view_version, self.clock()
        size = self.kg.log_bytes()
        reason = None if size is None else checkpoint_reason(
            size, now - self.kg.last_write, self.policy)
        if reason is not None:
            t = time.perf_counter()
            self.kg.checkpoint()  # flushes the view too
            log.info("checkpoint (%s): %.1f MiB of log folded in %.2f s", reason,
                     (size or 0) / MiB, time.perf_counter() - t)
        elif version != self._flushed[0] and now - self._flushed[1] >= self.flush_s:
            self.kg.view.flush()
            reason = "view"
        if reason is not None:
            self._flushed = (version, now)
        return reason
