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
        where = f"{fact}" + (f" field {field!r}" if field else "")
        super().__init__(f"invalid fact {where}: {reason}")


class QueryError(AutoCNCError):
    """A query is malformed, forbidden or failed; the message is the engine's or the guard's."""


class ForbiddenQuery(QueryError):
    """A query asks for something the endpoint does not allow (writes, files, network)."""


class StoreUnavailable(AutoCNCError):
    """The store cannot be reached or opened right now; trying again later may work."""

    retryable = True


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
