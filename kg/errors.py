"""The error types, kept with the rest of the engine's bottom layer (ontology/errors.py, so
every layer can raise them without importing upwards); this module re-exports them under
their usual name, ``kg.errors``."""

from ontology.errors import (  # noqa: F401
    AutoCNCError,
    ConfigError,
    FactError,
    ForbiddenQuery,
    NotAcceptable,
    NotReady,
    OntologyError,
    QueryError,
    QueryLimitExceeded,
    QueryOverMemory,
    QueryTimedOut,
    QueryWorkersBusy,
    StoreLocked,
    StoreUnavailable,
)

__all__ = [
    "AutoCNCError", "ConfigError", "OntologyError", "FactError", "QueryError",
    "ForbiddenQuery", "NotAcceptable", "QueryLimitExceeded", "QueryTimedOut", "QueryOverMemory",
    "StoreUnavailable", "QueryWorkersBusy", "NotReady", "StoreLocked",
]
