"""A small client of the Prometheus HTTP API (``/api/v1``): the operator's Prometheus,
asked per incident for the series RCA needs instead of ingesting them all beforehand.

Three calls, each bounded: :meth:`PrometheusClient.series` (``/api/v1/series``: which
series match), :meth:`PrometheusClient.query_range` (``/api/v1/query_range``: their
samples) and :meth:`PrometheusClient.alerts` (``/api/v1/alerts``: what Prometheus itself
says is firing). Every call has the settings' timeout, keeps at most ``max_series`` series
(the rest is cut and the answer says so), refuses a range that would need more than
``max_points`` points per series before asking, and reads at most ``max_response_bytes``
of an answer. Queries are sent as POST forms, so long lists of selectors fit.

Errors: :class:`PrometheusUnavailable` (not reachable, timed out, 5xx: retryable),
:class:`PrometheusAuthError` (401/403: the credentials in the settings) and
:class:`PrometheusQueryError` (Prometheus refused the query, or answered something that is
not its API), all under :class:`PrometheusError` and so :class:`kg.errors.AutoCNCError`.

Build one with :meth:`PrometheusClient.from_settings` (URL, timeout and bearer token or
basic auth come from the settings, never from data); the constructor only assigns.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import numpy as np

from kg.config import Settings
from kg.errors import AutoCNCError, ConfigError
from kg.peer_http import go_time, peer_client, read_bounded

MAX_POINTS = 11_000  # Prometheus' own limit of points per series of a range query
MAX_SERIES = 10_000  # series one call keeps
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class PrometheusError(AutoCNCError):
    """Prometheus could not answer a call; ``url`` is the API endpoint asked."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"Prometheus {url}: {reason}")


class PrometheusUnavailable(PrometheusError):
    """Prometheus cannot be reached, timed out or failed (5xx); trying later may work."""

    retryable = True


class PrometheusAuthError(PrometheusError):
    """Prometheus (or the proxy in front of it) refused the credentials: check
    ``prometheus_bearer_token`` / ``prometheus_username`` and ``prometheus_password``."""


class PrometheusQueryError(PrometheusError):
    """Prometheus refused the query (``error_type`` as it says: bad_data, execution, ...), or
    a bound of this client was hit, or the answer is not Prometheus' API."""

    def __init__(self, url: str, reason: str, error_type: str | None = None) -> None:
        self.error_type = error_type
        super().__init__(url, reason)


# -- answers -----------------------------------------------------------------------------

def selector(labels: Mapping[str, str]) -> str:
    """The PromQL selector naming exactly these labels (``__name__`` first, as the metric
    name), labels sorted: ``up{instance="a:9100",job="node"}``."""
    name = labels.get("__name__", "")
    pairs = sorted((k, v) for k, v in labels.items() if k != "__name__")
    if name and not _METRIC_NAME.fullmatch(name):  # e.g. dots: only the quoted form works
        pairs.insert(0, ("__name__", name))
        name = ""
    inner = ",".join(f"{k}={quote(v)}" for k, v in pairs)
    return f"{name}{{{inner}}}" if inner or not name else name


def quote(value: str) -> str:
    """A PromQL string literal."""
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class SeriesList:
    """The answer of ``/api/v1/series``: label sets (with ``__name__``)."""

    series: list[dict[str, str]]
    truncated: bool = False  # more matched than the client keeps
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RangeSeries:
    labels: dict[str, str]  # with ``__name__`` where the query kept it
    ts_ms: np.ndarray  # int64, Unix epoch milliseconds, ascending
    values: np.ndarray  # float64 (NaN, ±Inf as Prometheus gives them)


@dataclass(frozen=True)
class RangeResult:
    series: list[RangeSeries]
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PrometheusAlert:
    """One alert of ``/api/v1/alerts`` (pending or firing in Prometheus itself)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    state: str  # pending | firing
    active_at: datetime | None
    value: str


# -- the client ----------------------------------------------------------------------------

class PrometheusClient:
    """Typed, bounded calls to one Prometheus server's HTTP API."""

    def __init__(self, base_url: str, http: httpx.Client, *, max_series: int = MAX_SERIES,
                 max_points: int = MAX_POINTS,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.max_series = max_series
        self.max_points = max_points
        self.max_response_bytes = max_response_bytes

    @classmethod
    def from_settings(cls, settings: Settings, **bounds: int) -> PrometheusClient:
        """The client of ``settings.prometheus_url`` with its timeout and credentials;
        ConfigError when no URL is configured."""
        if not settings.prometheus_url:
            raise ConfigError("setting 'prometheus_url' is not set (AUTOCNC_PROMETHEUS_URL)")
        http = peer_client(bearer_token=settings.prometheus_bearer_token,
                           username=settings.prometheus_username,
                           password=settings.prometheus_password,
                           timeout_s=settings.prometheus_timeout_s)
        return cls(settings.prometheus_url, http, **bounds)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------------------------
    def series(self, match: Sequence[str], start: datetime, end: datetime) -> SeriesList:
        """The label sets of the series matching any of the ``match`` selectors with samples
        in ``[start, end]``, sorted; at most ``max_series`` (``truncated`` says more
        matched)."""
        if not match:
            return SeriesList([])
        data, warnings = self._call("series", [("match[]", m) for m in match]
                                    + [("start", _ts(start)), ("end", _ts(end))])
        if not isinstance(data, list):
            raise self._bad("series", "data is not a list of label sets")
        found = sorted((_labels(x, "series") for x in data), key=selector)
        return SeriesList(found[:self.max_series], len(found) > self.max_series, warnings)

    def query_range(self, promql: str, start: datetime, end: datetime, step: float
                    ) -> RangeResult:
        """``promql`` evaluated every ``step`` seconds over ``[start, end]``. A range that
        needs more than ``max_points`` points per series is refused before asking (widen
        the step or narrow the window); at most ``max_series`` series are kept."""
        if step <= 0 or not math.isfinite(step):
            raise ValueError("step must be a positive number of seconds")
        if end < start:
            raise ValueError("end is before start")
        points = int((end - start).total_seconds() // step) + 1
        url = f"{self.base_url}/api/v1/query_range"
        if points > self.max_points:
            raise PrometheusQueryError(url, f"{points} points per series over the limit of "
                                            f"{self.max_points}: widen the step or narrow "
                                            f"the window", "too_many_points")
        data, warnings = self._call("query_range", [
            ("query", promql), ("start", _ts(start)), ("end", _ts(end)),
            ("step", f"{step:g}")])
        if not isinstance(data, dict) or data.get("resultType") != "matrix" or \
                not isinstance(data.get("result"), list):
            raise self._bad("query_range", "data is not a matrix")
        result = data["result"]
        out = [_range_series(x) for x in result[:self.max_series]]
        return RangeResult(out, len(result) > self.max_series, warnings)

    def alerts(self) -> list[PrometheusAlert]:
        """The alerts Prometheus' rules have pending or firing now."""
        data, _ = self._call("alerts", None)
        if not isinstance(data, dict) or not isinstance(data.get("alerts"), list):
            raise self._bad("alerts", "data has no list of alerts")
        out = []
        for a in data["alerts"][:self.max_series]:
            if not isinstance(a, dict):
                raise self._bad("alerts", "an alert is not an object")
            out.append(PrometheusAlert(
                _labels(a.get("labels", {}), "alerts"),
                _labels(a.get("annotations", {}), "alerts"), str(a.get("state", "")),
                go_time(a.get("activeAt")), str(a.get("value", ""))))
        return out

    # -- transport ---------------------------------------------------------------------------
    def _call(self, endpoint: str, form: list[tuple[str, str]] | None
              ) -> tuple[Any, list[str]]:
        """``data`` and ``warnings`` of one API call (POST with ``form``, GET without)."""
        url = f"{self.base_url}/api/v1/{endpoint}"
        if form is None:
            request = self.http.build_request("GET", url)
        else:
            request = self.http.build_request("POST", url, data=_form(form))
        status, body = read_bounded(self.http, request, url, self.max_response_bytes,
                                    unavailable=PrometheusUnavailable,
                                    too_large=self._too_large)
        if status in (401, 403):
            raise PrometheusAuthError(url, f"HTTP {status}: credentials refused (settings "
                                           f"prometheus_bearer_token / prometheus_username)")
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or doc.get("status") not in ("success", "error"):
            if status in (502, 503, 504):  # a proxy or a restarting server: transient
                raise PrometheusUnavailable(url, f"HTTP {status}")
            raise PrometheusQueryError(url, f"HTTP {status}, not a Prometheus API answer "
                                            f"(is prometheus_url the server's base URL?)")
        if doc["status"] == "error":
            kind = str(doc.get("errorType") or "")
            reason = f"{kind}: {doc.get('error')}" if kind else str(doc.get("error"))
            if status >= 500 or kind in ("timeout", "canceled", "unavailable"):
                raise PrometheusUnavailable(url, reason)
            raise PrometheusQueryError(url, reason, kind or None)
        warnings = doc.get("warnings") or []
        return doc.get("data"), [str(w) for w in warnings]

    def _too_large(self, url: str) -> PrometheusQueryError:
        return PrometheusQueryError(url, f"answer over {self.max_response_bytes} bytes: ask "
                                         "for fewer series", "too_large")

    def _bad(self, endpoint: str, reason: str) -> PrometheusQueryError:
        return PrometheusQueryError(f"{self.base_url}/api/v1/{endpoint}",
                                    f"unexpected answer: {reason}")


def _form(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out


def _ts(t: datetime) -> str:
    if t.tzinfo is None:
        raise ValueError("times given to Prometheus must carry a time zone")
    return f"{t.timestamp():.3f}"


def _labels(obj: Any, endpoint: str) -> dict[str, str]:
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise PrometheusQueryError(f"/api/v1/{endpoint}", "unexpected answer: labels are not "
                                                          "a map of strings")
    return obj


def _range_series(obj: Any) -> RangeSeries:
    if not isinstance(obj, dict) or not isinstance(obj.get("values"), list):
        raise PrometheusQueryError("/api/v1/query_range", "unexpected answer: a series has no "
                                                          "values")
    values = obj["values"]
    try:
        ts = np.fromiter((round(float(t) * 1000) for t, _ in values), np.int64, len(values))
        vs = np.fromiter((float(v) for _, v in values), np.float64, len(values))
    except (TypeError, ValueError) as exc:
        raise PrometheusQueryError("/api/v1/query_range",
                                   f"unexpected answer: a sample is not [time, value]: {exc}"
                                   ) from exc
    return RangeSeries(_labels(obj.get("metric", {}), "query_range"), ts, vs)
