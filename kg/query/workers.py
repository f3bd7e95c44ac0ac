"""Operator queries in worker processes that can be stopped.

Oxigraph gives no way to interrupt a SPARQL query: ``COUNT(*)`` over a cross product
computes for minutes before its one row, and ``ORDER BY`` over one holds every row in memory.
So each read query of the query endpoints (SPARQL and Cypher) runs in a worker process,
and the server stops the process when the query passes its time limit
(``query_timeout_s``, answered 504) or its memory limit (``query_max_memory_mb``, the
worker's resident memory, answered 503). The engines' own limits stop most queries first,
without losing the worker: LadybugDB's query timeout and bounded buffer pool, Neo4j's
transaction timeout, the row cap and the timeout between rows of the RDF view.

Each worker opens the stores read-only: LadybugDB's read-only database handle, Oxigraph's
``Store.read_only`` and a Neo4j driver with read transactions. A read-only handle sees the
data as of its opening, so the server passes a version with every query (for LadybugDB one
that moves with each write and each checkpoint, a counter of view changes for Oxigraph) and
the worker reopens a handle whose version moved (measured on the demo graph: about 0.1 s
for Oxigraph and 0.15 s for LadybugDB; docs in README "HTTP API"). Oxigraph calls a
read-only store opened while another process writes "undefined behaviour": the writer only
appends to it and the worker reads a snapshot as of its opening, but a compaction may
remove a file under a long query, which then fails with an error (and a worker that
crashes is replaced); it never affects the writer's store.

Up to ``query_workers`` queries run at once, each in its own process; another waits up to
:data:`QUEUE_WAIT_S`, then gets :class:`~kg.errors.QueryWorkersBusy` (503). One worker is
kept warm; a stopped one is replaced in the background.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from kg import errors
from kg.config import Settings
from kg.errors import (
    AutoCNCError,
    QueryError,
    QueryOverMemory,
    QueryTimedOut,
    QueryWorkersBusy,
    StoreUnavailable,
)
from kg.query import sparql_results
from kg.query.sparql_results import Answer, Dataset
from kg.store.base import QueryResult

log = logging.getLogger("autocnc.query")

QUEUE_WAIT_S = 2.0  # a query waits this long for a free worker, then gets 503
GRACE_S = 0.5  # past the query timeout, for the engine's own timeout to answer first
POLL_S = 0.02  # how often a running query's worker is checked (memory, liveness)
STARTUP_S = 120.0  # a new worker must be ready within this


@dataclass(frozen=True)
class QueryRequest:
    kind: str  # "sparql" | "cypher"
    query: str
    params: dict[str, Any] = field(default_factory=dict)
    version: int | None = None  # the data version the answer must reflect (None: any)
    timeout_s: float = 30.0
    max_rows: int = 10_000
    # SPARQL through the protocol: the format of each kind of result (kg.query.sparql_results;
    # the worker serialises, within the query's limits) and the dataset the request names
    formats: Mapping[str, str | None] | None = None
    dataset: Dataset | None = None
    base_iri: str | None = None  # what relative IRIs in the query resolve against


@dataclass(eq=False)  # by identity: workers live in a set
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    ready: bool = False

    @classmethod
    def spawn(cls, settings: Settings) -> _Worker:
        # A fresh interpreter (never a fork of the server's threads and open handles) that
        # imports only this module: multiprocessing's spawn would also re-run the main
        # script of whatever program started the server.
        ours, theirs = socket.socketpair()
        env = {**os.environ, "AUTOCNC_LADYBUG_BUFFER_POOL_MB": str(
            max(64, settings.query_max_memory_mb // 4))}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; from kg.query.workers import main; "
                 "main(int(sys.argv[1]))", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env)
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        conn.send(settings.model_dump(mode="json"))  # not in argv: it holds credentials
        return cls(proc, conn)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss(self) -> int:
        """Resident bytes of the worker (0 once it is gone)."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as fh:
                return int(fh.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return 0

    def wait_ready(self) -> None:
        if self.ready:
            return
        if not self.conn.poll(STARTUP_S):
            raise StoreUnavailable(f"query worker {self.pid} did not start within "
                                   f"{STARTUP_S:g} s")
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            raise StoreUnavailable(f"query worker {self.pid} exited while starting "
                                   f"(exit code {self.process.poll()})") from None
        if msg[0] != "ready":
            raise StoreUnavailable(f"query worker {self.pid} failed to start: {msg[-1]}")
        self.ready = True

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("query worker %d did not exit after SIGKILL", self.pid)
        self.conn.close()


_PAGE = os.sysconf("SC_PAGE_SIZE")


class QueryWorkers:
    """A pool of query worker processes for one data directory; see the module doc."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.size = settings.query_workers
        self.max_memory = settings.query_max_memory_mb << 20
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()  # idle and busy, to stop them all on close
        self._live = 0  # workers started and not stopped (idle, busy or starting)
        self._cond = threading.Condition()
        self._closed = False

    def start(self) -> QueryWorkers:
        """Start one worker in the background, so that the first query finds it warm."""
        self._warm_one()
        return self

    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers, self._idle = list(self._all), []
            self._cond.notify_all()
        for w in workers:
            w.kill()

    @property
    def busy(self) -> int:
        """Workers running (or starting for) a query now; read without the pool's lock,
        for the server's metrics."""
        return max(0, self._live - len(self._idle))

    # -- running a query ---------------------------------------------------------------
    def run(self, request: QueryRequest) -> QueryResult:
        """The query's result; QueryTimedOut, QueryOverMemory, QueryWorkersBusy or the
        engine's QueryError otherwise."""
        result = self._call(request)
        assert isinstance(result, QueryResult)
        return result

    def answer(self, request: QueryRequest) -> Answer:
        """A SPARQL query's results serialised in the worker (``request.formats``), with
        the errors of :meth:`run` and NotAcceptable."""
        if request.formats is None:
            raise ValueError("answer() needs request.formats")
        result = self._call(request)
        assert isinstance(result, Answer)
        return result

    def _call(self, request: QueryRequest) -> Any:
        worker = self._acquire()
        healthy = False
        try:
            reply = self._ask(worker, request)
            healthy = True
        finally:
            self._release(worker, healthy)
        if reply[0] == "ok":
            return reply[1]
        raise _error(reply[1], reply[2])

    def _ask(self, worker: _Worker, request: QueryRequest) -> tuple[Any, ...]:
        worker.wait_ready()
        worker.conn.send(request)
        limit_s = request.timeout_s
        deadline = time.monotonic() + limit_s + GRACE_S
        while not worker.conn.poll(POLL_S):
            if time.monotonic() > deadline:
                worker.kill()
                raise QueryTimedOut(f"query stopped after {limit_s:g} s (setting "
                                    "query_timeout_s); narrow it or add a LIMIT")
            rss = worker.rss()
            if rss > self.max_memory:
                worker.kill()
                raise QueryOverMemory(
                    f"query stopped at {rss >> 20} MiB of memory (setting "
                    f"query_max_memory_mb = {self.max_memory >> 20}); narrow it or add a "
                    "LIMIT")
        try:
            reply: tuple[Any, ...] = worker.conn.recv()
        except (EOFError, OSError):
            worker.kill()
            code = worker.process.returncode
            if code == -9:  # the kernel's OOM killer, or someone else
                raise QueryOverMemory("the query worker was killed (out of memory?)") from None
            raise StoreUnavailable(f"the query worker exited with code {code} while "
                                   "running the query") from None
        return reply

    # -- the pool ----------------------------------------------------------------------
    def _acquire(self) -> _Worker:
        deadline = time.monotonic() + QUEUE_WAIT_S
        with self._cond:
            while True:
                if self._closed:
                    raise StoreUnavailable("the server is stopping")
                while self._idle:
                    w = self._idle.pop()
                    if w.alive():
                        return w
                    self._forget(w)
                if self._live < self.size:
                    self._live += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise QueryWorkersBusy(
                        f"all {self.size} query workers are busy (setting query_workers); "
                        "retry shortly")
                self._cond.wait(left)
        try:
            w = _Worker.spawn(self.settings)
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._all.add(w)
        return w

    def _release(self, worker: _Worker, healthy: bool) -> None:
        with self._cond:
            if healthy and not self._closed and worker.alive():
                self._idle.append(worker)
                self._cond.notify()
                return
            self._forget(worker)
            self._cond.notify()
            replace = not self._closed and not self._idle
        worker.kill()
        if replace:
            self._warm_one()

    def _forget(self, worker: _Worker) -> None:
        self._all.discard(worker)
        self._live -= 1

    def _warm_one(self) -> None:
        def start() -> None:
            with self._cond:
                if self._closed or self._live >= self.size:
                    return
                self._live += 1
            try:
                w = _Worker.spawn(self.settings)
                with self._cond:
                    self._all.add(w)
                w.wait_ready()
            except Exception as exc:
                with self._cond:
                    self._live -= 1
                    if not self._closed:  # else: stopped by close() while it started
                        log.warning("could not start a query worker: %s", exc)
                return
            self._release(w, True)

        threading.Thread(target=start, name="query-worker-start", daemon=True).start()


def _error(name: str, message: str) -> AutoCNCError:
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, AutoCNCError) and cls.__init__ is \
            AutoCNCError.__init__:
        return cls(message)
    return QueryError(message)


# -- the worker process ----------------------------------------------------------------------

def main(fd: int) -> None:
    """A worker's main loop (``python -c ... main(fd)``): its settings come first on the
    connection ``fd``, then query requests, answered until the connection closes."""
    import signal

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    conn = Connection(fd)
    try:
        _serve(conn)
    except (EOFError, OSError):  # the server closed the connection: it is done with us
        return


def _serve(conn: Connection) -> None:
    try:
        settings = Settings.model_validate(conn.recv())
        handles = _Handles(settings)
    except (EOFError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - reported to the server, which logs it
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        req: QueryRequest = conn.recv()
        try:
            reply: tuple[Any, ...] = ("ok", handles.run(req))
        except AutoCNCError as exc:
            reply = ("error", type(exc).__name__, str(exc))
        except MemoryError as exc:
            reply = ("error", "QueryOverMemory", f"the query ran out of memory: {exc}")
        except Exception as exc:  # noqa: BLE001 - an engine error is the query's answer
            reply = ("error", "QueryError", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, ValueError, AttributeError) as exc:
            conn.send(("error", "QueryError", f"the result cannot be sent: {exc}"))


class _Handles:
    """The worker's read-only stores, reopened when the server's version moved."""

    def __init__(self, settings: Settings) -> None:
        from ontology import load_ontology

        self.settings = settings
        self.onto = load_ontology()
        self._open: dict[str, tuple[int | None, Any]] = {}

    def run(self, req: QueryRequest) -> QueryResult | Answer:
        handle = self._handle(req.kind, req.version, time.monotonic() + req.timeout_s)
        if req.kind == "sparql" and req.formats is not None:
            return sparql_results.answer(handle, req.query, req.formats, dataset=req.dataset,
                                         base_iri=req.base_iri, timeout_s=req.timeout_s,
                                         max_rows=req.max_rows)
        if req.kind == "sparql":
            res: QueryResult = handle.query(req.query, timeout_s=req.timeout_s,
                                            max_rows=req.max_rows, terms=True)
        else:
            res = handle.query(req.query, req.params, timeout_s=req.timeout_s,
                               max_rows=req.max_rows)
        return res

    def _handle(self, kind: str, version: int | None, until: float) -> Any:
        current = self._open.get(kind)
        # a handle that reads live data (Neo4j) never needs reopening; a read-only handle
        # of a file store (LadybugDB, Oxigraph) sees the data as of its opening
        if current is not None and (version is None or current[0] == version
                                    or not getattr(current[1], "snapshot_reads", True)):
            return current[1]
        if current is not None:
            current[1].close()
            del self._open[kind]
        tries = 0
        while True:
            try:
                handle = self._connect(kind)
                break
            except (OSError, StoreUnavailable) as exc:
                # a writer's compaction may race the opening (once more), and LadybugDB
                # refuses read-only handles while the writer checkpoints (wait, within the
                # query's time, until it is done)
                tries += 1
                checkpointing = _RECOVERY in str(exc) and time.monotonic() < until
                if tries >= 2 and not checkpointing:
                    raise
                time.sleep(0.05)
        self._open[kind] = (version, handle)
        return handle

    def _connect(self, kind: str) -> Any:
        s = self.settings
        if kind == "sparql":
            from kg.rdf_view import RdfView

            return RdfView.open(s.data_dir, self.onto, s.iri_base, read_only=True)
        from kg.store import open_store

        return open_store(s.store, onto=self.onto, read_only=True, **s.store_options())


_RECOVERY = "checkpoint recovery is pending"  # LadybugDB, while the writer checkpoints


def _die_with_parent() -> None:
    """Exit when the server is gone, even in the middle of a query (the engines release
    the GIL while they evaluate). Not PR_SET_PDEATHSIG: that follows the thread that
    started the worker, and the server's threads come and go."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
