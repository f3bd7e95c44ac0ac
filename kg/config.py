"""Settings: typed, validated at load, from flags, environment or a config file.

Precedence: explicit arguments (CLI flags) > environment (``AUTOCNC_*``, ``NEO4J_*``) >
config file (``--config FILE`` or ``AUTOCNC_CONFIG``, or ``<data-dir>/config.yaml``) > defaults.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator

from kg.errors import ConfigError
from ontology import DEFAULT_BASE
from ontology.iri import RESOLUTION_LABELS  # the label vocabulary resolution reads

ENV = {
    "data_dir": "AUTOCNC_DATA_DIR",
    "store": "AUTOCNC_STORE",
    "neo4j_uri": "NEO4J_URI",
    "neo4j_user": "NEO4J_USER",
    "neo4j_password": "NEO4J_PASSWORD",
    "neo4j_database": "NEO4J_DATABASE",
    "api_token": "AUTOCNC_API_TOKEN",
    "default_scope": "AUTOCNC_DEFAULT_SCOPE",
    "iri_base": "AUTOCNC_IRI_BASE",
    "sparql_cors_origins": "AUTOCNC_SPARQL_CORS_ORIGINS",
    "prometheus_url": "AUTOCNC_PROMETHEUS_URL",
    "prometheus_bearer_token": "AUTOCNC_PROMETHEUS_BEARER_TOKEN",
    "prometheus_username": "AUTOCNC_PROMETHEUS_USERNAME",
    "prometheus_password": "AUTOCNC_PROMETHEUS_PASSWORD",
    "alertmanager_url": "AUTOCNC_ALERTMANAGER_URL",
    "alertmanager_scope": "AUTOCNC_ALERTMANAGER_SCOPE",
    "alertmanager_bearer_token": "AUTOCNC_ALERTMANAGER_BEARER_TOKEN",
    "alertmanager_username": "AUTOCNC_ALERTMANAGER_USERNAME",
    "alertmanager_password": "AUTOCNC_ALERTMANAGER_PASSWORD",
}
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ORIGIN = re.compile(r"https?://[^/\s?#@]+")


class Settings(BaseModel):
    """Everything AutoCNC needs to open its stores and serve."""

    model_config = {"extra": "forbid", "frozen": True}

    data_dir: Path = Field(Path(".autocnc"), description="where the embedded stores live")
    store: Literal["embedded", "neo4j"] = "embedded"
    neo4j_uri: str | None = None
    neo4j_user: str | None = None
    neo4j_password: str | None = Field(None, repr=False)
    neo4j_database: str = "neo4j"
    api_token: str | None = Field(None, repr=False)
    metrics_require_token: bool = Field(
        False, description="GET /metrics needs the bearer token of api_token too (default: "
                           "it is open like /healthz: counts and latencies, no graph "
                           "content); give Prometheus the token in its scrape job")
    iri_base: str = DEFAULT_BASE
    query_timeout_s: float = Field(30.0, gt=0, le=600)
    query_max_rows: int = Field(10_000, gt=0, le=1_000_000)
    max_request_bytes: int = Field(16 * 1024 * 1024, gt=0)
    max_ingest_bytes: int = Field(256 * 1024 * 1024, gt=0,
                                  description="body bound of POST /v1/ingest/{kind}")
    max_value_bytes: int = Field(
        64 * 1024, ge=1024, le=4 * 1024 * 1024,
        description="UTF-8 bytes of one value at most: a string property, an IRI (and so a "
                    "name or key minted into one), a metric or label name, a label value, a "
                    "log line; larger ones are rejected (400 / the record's file:line) "
                    "before anything is written. At most 4 MiB: the RDF view's parser "
                    "takes lines of up to 16 MiB (an IRI and an escaped value)")
    query_max_memory_mb: int = Field(
        2048, ge=64, le=1024 * 1024,
        description="resident memory of one query worker process at most; a query that "
                    "needs more is stopped (HTTP 503)")
    query_workers: int = Field(
        4, ge=1, le=64,
        description="read queries (SPARQL, Cypher) that run at once, each in a worker "
                    "process of its own; one more waits up to 2 s, then gets 503")
    sparql_cors_origins: tuple[str, ...] = Field(
        (), description="origins whose browser pages may query /v1/sparql (CORS), as "
                        "scheme://host[:port], e.g. https://yasgui.example, or * for any; "
                        "empty (the default): none. No other route answers them")
    default_scope: str | None = Field(
        None, min_length=1,
        description="the scope of an Alertmanager webhook call without ?scope=; None: such "
                    "a call gets 422")
    checkpoint_log_mb: int = Field(
        32, ge=1, le=4096,
        description="embedded store: `autocnc serve` checkpoints once the write-ahead log "
                    "passes this, even while writes go on (else soon after they pause); a "
                    "restart after a crash replays at most about this much")
    # -- the webhook's intake journal (docs/ingest/alerts.md, "Under a storm") --------------
    webhook_ack: Literal["graph", "journal"] = Field(
        "journal",
        description="when the Alertmanager webhook answers 2xx: `journal`: the notification "
                    "is first fsynced to the intake journal (<data_dir>/intake/), and the "
                    "answer comes once its graph commit lands or once it has been durable "
                    "in the journal for webhook_ack_wait_ms, whichever is first; `graph`: "
                    "no journal, only after the graph commit")
    webhook_ack_wait_ms: int = Field(
        250, ge=0, le=60_000,
        description="journal: how long a durable notification waits for its graph commit "
                    "before it is answered from the journal (0: at once)")
    webhook_journal_max_entries: int = Field(
        256, ge=1, le=10_000_000,
        description="journal: notifications not yet applied to the graph at most; beyond, "
                    "the webhook answers 503 with Retry-After (Alertmanager retries). It "
                    "bounds the restart after a crash too: they are applied before ready "
                    "(about 100 notifications of 10 alerts per second on 2 cores)")
    webhook_journal_max_mb: int = Field(
        64, ge=1, le=65_536,
        description="journal: MiB of notifications not yet applied to the graph at most "
                    "(then 503, as for webhook_journal_max_entries)")
    webhook_apply_paused: bool = Field(
        False,
        description="journal: keep accepted notifications in the journal only, applying "
                    "none to the graph (e.g. while the graph store is copied); they are "
                    "applied at the next start without it. Answers come from the journal")
    # -- the operator's Prometheus, asked per incident (docs/prometheus.md) ----------------
    prometheus_url: str | None = Field(
        None, description="base URL of the Prometheus HTTP API (http:// or https://, without "
                          "/api/v1); None: RCA does not pull series from Prometheus")
    prometheus_timeout_s: float = Field(10.0, gt=0, le=300,
                                        description="timeout of one Prometheus API call")
    prometheus_step_s: float = Field(15.0, gt=0, le=3600,
                                     description="query_range resolution (widened when a "
                                                 "window would need over 11,000 points)")
    prometheus_max_series: int = Field(200, gt=0, le=10_000,
                                       description="series pulled per incident, at most")
    prometheus_label_map: dict[str, str] = Field(
        default_factory=dict,
        description="Prometheus label name -> the label name AutoCNC's resolution reads "
                    "(pod, namespace, service, job, instance, node, ...), e.g. "
                    "{kubernetes_pod_name: pod, app: service}; applied to every label set "
                    "resolved (pulled series, alerts, ingested metrics)")
    prometheus_target_alerts: tuple[str, ...] = Field(
        (), description="alert names, besides the well-known ones, whose alerts are about "
                        "a scrape target (an `up == 0` rule): they resolve by job first")
    prometheus_bearer_token: str | None = Field(None, repr=False)
    prometheus_username: str | None = Field(None, description="HTTP basic auth user")
    prometheus_password: str | None = Field(None, repr=False, validate_default=True)
    # -- the operator's Alertmanager, resynced with (docs/ingest/alerts.md) ------------------
    alertmanager_url: str | None = Field(
        None, description="base URL of Alertmanager's API (http:// or https://, without "
                          "/api/v2); None: no resync, alerts come by the webhook only")
    alertmanager_scope: str | None = Field(
        None, min_length=1, validate_default=True,
        description="the scope of the alerts resynced from Alertmanager (as the webhook's "
                    "?scope=); None: default_scope")
    alertmanager_resync_s: float = Field(60.0, ge=5, le=86_400,
                                         description="seconds between two resyncs")
    alertmanager_timeout_s: float = Field(
        30.0, gt=0, le=600, description="one resync (reading Alertmanager and writing) at "
                                        "most; at start-up it waits at most 10 s of it")
    alertmanager_settle_s: float = Field(
        120.0, ge=0, le=86_400,
        description="alerts Alertmanager no longer holds are closed only once it has been up "
                    "this long (after a restart it holds nothing until Prometheus resends)")
    alertmanager_receivers: tuple[str, ...] = Field(
        (), description="Alertmanager receivers that deliver to AutoCNC's webhook; empty: "
                        "those whose webhook URL ends in /v1/alerts/alertmanager, else all")
    alertmanager_bearer_token: str | None = Field(None, repr=False)
    alertmanager_username: str | None = Field(None, description="HTTP basic auth user")
    alertmanager_password: str | None = Field(None, repr=False, validate_default=True)

    @field_validator("sparql_cors_origins", mode="before")
    @classmethod
    def _origins(cls, v: Any) -> Any:
        items = v.split(",") if isinstance(v, str) else v  # the environment: comma-separated
        if not isinstance(items, list | tuple):
            return v
        origins = tuple(str(o).strip().rstrip("/").lower() for o in items if str(o).strip())
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin: give scheme://host[:port] "
                                 "(no path), or *")
        return origins

    @field_validator("neo4j_uri")
    @classmethod
    def _bolt(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("bolt://", "bolt+s://", "bolt+ssc://",
                                               "neo4j://", "neo4j+s://", "neo4j+ssc://")):
            raise ValueError("must be a bolt:// or neo4j:// URI")
        return v

    @field_validator("prometheus_url", "alertmanager_url")
    @classmethod
    def _http(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None or not v.strip():
            return None
        server, api, port = (("Prometheus server", "/api/v1", 9090)
                             if info.field_name == "prometheus_url" else
                             ("Alertmanager", "/api/v2", 9093))
        v = v.strip().rstrip("/")
        if not v.startswith(("http://", "https://")) or len(v.split("://", 1)[1]) == 0:
            name = server.split()[0].lower()
            raise ValueError(f"must be an http:// or https:// URL (the {server}, "
                             f"e.g. http://{name}:{port})")
        if v.endswith(api):
            raise ValueError(f"give the server's base URL, without {api}")
        return v

    @field_validator("alertmanager_scope")
    @classmethod
    def _resync_scope(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None and info.data.get("alertmanager_url") and \
                not info.data.get("default_scope"):
            raise ValueError("alertmanager_url needs the scope its alerts belong to: set "
                             "alertmanager_scope (or default_scope), as the webhook's ?scope=")
        return v

    @field_validator("prometheus_label_map")
    @classmethod
    def _label_map(cls, v: dict[str, str]) -> dict[str, str]:
        for source, target in v.items():
            for name in (source, target):
                if not _LABEL_NAME.fullmatch(name):
                    raise ValueError(f"{name!r} is not a Prometheus label name")
            if target not in RESOLUTION_LABELS:
                raise ValueError(f"{source!r} maps to {target!r}, which label resolution "
                                 f"does not read; use one of {', '.join(RESOLUTION_LABELS)}")
            if source == target:
                raise ValueError(f"{source!r} maps to itself")
        return v

    @field_validator("prometheus_password", "alertmanager_password")
    @classmethod
    def _peer_auth(cls, v: str | None, info: ValidationInfo) -> str | None:
        # each peer's last field: its token and its user are validated by now
        peer = str(info.field_name).removesuffix("_password")
        if v is not None and not info.data.get(f"{peer}_username"):
            raise ValueError(f"needs {peer}_username (HTTP basic auth)")
        if info.data.get(f"{peer}_bearer_token") and (v or info.data.get(f"{peer}_username")):
            name = "Prometheus" if peer == "prometheus" else "Alertmanager"
            raise ValueError(f"basic auth and {peer}_bearer_token exclude each other: "
                             f"give one way to authenticate to {name}")
        return v

    @property
    def resync_scope(self) -> str | None:
        """The scope of the alerts resynced from Alertmanager."""
        return self.alertmanager_scope or self.default_scope

    def store_options(self) -> dict[str, Any]:
        if self.store == "neo4j":
            if not self.neo4j_uri:
                raise ConfigError("store 'neo4j' needs NEO4J_URI (or --neo4j-uri)")
            return {"uri": self.neo4j_uri, "user": self.neo4j_user,
                    "password": self.neo4j_password, "database": self.neo4j_database}
        return {"data_dir": self.data_dir}


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults < config file < environment < ``overrides`` (None = not given)."""
    values: dict[str, Any] = {}
    explicit = {k: v for k, v in overrides.items() if v is not None}
    data_dir = Path(explicit.get("data_dir") or os.environ.get(ENV["data_dir"]) or ".autocnc")
    path = config_file or (Path(os.environ["AUTOCNC_CONFIG"]) if os.environ.get("AUTOCNC_CONFIG")
                           else data_dir / "config.yaml")
    if path.exists():
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"config file {path}: must be a mapping of settings")
        values.update({k.replace("-", "_"): v for k, v in doc.items()})
    elif config_file is not None:
        raise ConfigError(f"config file {path} does not exist")
    values.update({k: os.environ[e] for k, e in ENV.items() if os.environ.get(e)})
    values.update(explicit)
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"setting {field!r}: {err['msg']}") from exc
