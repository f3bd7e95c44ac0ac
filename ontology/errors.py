"""One root error for AutoCNC, with specific subclasses that carry data and say what to do."""

from __future__ import annotations


class AutoCNCError(Exception):
    """Root of every error AutoCNC raises on purpose."""

    retryable: bool = False


class ConfigError(AutoCNCError):
    """A setting is missing or invalid; the message names the setting."""


class OntologyError(AutoCNCError):
    """The ontology or the shapes file cannot be read or is not what the store expects."""


class FactError(AutoCNCError):
    """A fact of a batch is invalid; nothing of the batch was written.

    ``fact`` names the offending fact (its IRI, or ``type source -> target`` for a relation),
    ``field`` the offending field where one is to blame.
    """

    def __init__(self, fact: str, reason: str, field: str | None = None) -> None:
        self.fact = fact
        self.field = field
        self.reason = reason
        where = f"{_shortened(fact)}" + (f" field {_shortened(field)!r}" if field else "")
        super().__init__(f"invalid fact {where}: {_shortened(reason, 2000)}")


def _shortened(text: str, limit: int = 300) -> str:
    """``text`` cut for a message: an oversized value must not make an oversized error."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class QueryError(AutoCNCError):
    """A query is malformed, forbidden or failed; the message is the engine's or the guard's."""


class ForbiddenQuery(QueryError):
    """A query asks for something the endpoint does not allow (writes, files, network)."""


class NotAcceptable(QueryError):
    """No result format the client accepts fits the query's results (HTTP 406); the
    message lists the formats that do."""


class QueryLimitExceeded(QueryError):
    """A query was stopped at one of its limits; the same query will hit it again, so
    narrow it (a LIMIT, a more selective pattern) or raise the setting the message names."""


class QueryTimedOut(QueryLimitExceeded):
    """A query ran past its time limit (``query_timeout_s``) and was stopped."""


class QueryOverMemory(QueryLimitExceeded):
    """A query needed more memory than its limit (``query_max_memory_mb``) and was stopped."""


class StoreUnavailable(AutoCNCError):
    """The store cannot be reached or opened right now; trying again later may work."""

    retryable = True


class QueryWorkersBusy(StoreUnavailable):
    """Every query worker is busy with another query (``query_workers``); retry shortly."""


class NotReady(StoreUnavailable):
    """The server is still starting (opening the stores, replaying, catching the views up)
    or rebuilding its views; retry shortly."""


class StoreLocked(StoreUnavailable):
    """Another process holds the single-writer lock on the data directory."""

    def __init__(self, data_dir: str, holder: dict[str, object]) -> None:
        self.data_dir = data_dir
        self.holder = holder
        super().__init__(
            f"data directory {data_dir} is locked by pid {holder.get('pid')}"
            + (f" (server at {holder['url']})" if holder.get("url") else "")
            + "; write through that process or stop it first"
        )
