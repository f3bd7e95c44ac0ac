"""A small client of Alertmanager's API v2 (``/api/v2``): what the operator's Alertmanager
holds now, read by the resync (:mod:`api.alert_resync`) to reconcile the graph with it.

Two calls, each bounded by the settings' timeout and ``max_response_bytes``:
:meth:`AlertmanagerClient.alerts` (``GET /api/v2/alerts``: the alerts it holds, with the
``active`` / ``silenced`` / ``inhibited`` / ``unprocessed`` filters, label matchers and a
receiver regex) and :meth:`AlertmanagerClient.status` (``GET /api/v2/status``: its version,
start time and configuration, whose routing tree gives each alert its group key).

Alertmanager's API does not list an alert once its ``endsAt`` has passed (resolved alerts
are left out whatever the filters say; seen with 0.25 and in the sources of later versions):
what it returns is what fires now, in the states ``active``, ``suppressed`` (silenced or
inhibited) and ``unprocessed``.

Errors: :class:`AlertmanagerUnavailable` (not reachable, timed out, 5xx: retryable),
:class:`AlertmanagerAuthError` (401/403: the credentials in the settings) and
:class:`AlertmanagerAnswerError` (it refused the request, or answered something that is not
its API), all under :class:`AlertmanagerError` and so :class:`kg.errors.AutoCNCError`.
Build one with :meth:`AlertmanagerClient.from_settings`; the constructor only assigns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from kg.config import Settings
from kg.errors import AutoCNCError, ConfigError
from kg.peer_http import go_time, peer_client, read_bounded

MAX_ALERTS = 100_000  # alerts one call keeps
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
STATES = ("active", "suppressed", "unprocessed")


class AlertmanagerError(AutoCNCError):
    """Alertmanager could not answer a call; ``url`` is the API endpoint asked."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"Alertmanager {url}: {reason}")


class AlertmanagerUnavailable(AlertmanagerError):
    """Alertmanager cannot be reached, timed out or failed (5xx); trying later may work."""

    retryable = True


class AlertmanagerAuthError(AlertmanagerError):
    """Alertmanager (or the proxy in front of it) refused the credentials: check
    ``alertmanager_bearer_token`` / ``alertmanager_username`` and ``alertmanager_password``."""


class AlertmanagerAnswerError(AlertmanagerError):
    """Alertmanager refused the request (4xx with its message), a bound of this client was
    hit, or the answer is not its API v2 (is ``alertmanager_url`` its base URL?)."""


@dataclass(frozen=True)
class AlertmanagerAlert:
    """One alert of ``GET /api/v2/alerts`` (a ``gettableAlert``)."""

    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None  # for a firing alert: when it resolves unless renewed
    updated_at: datetime | None
    state: str  # active | suppressed | unprocessed
    receivers: tuple[str, ...]
    generator_url: str = ""
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertmanagerStatus:
    """What ``GET /api/v2/status`` says: version, start (``uptime``) and the configuration
    (YAML text, secrets masked)."""

    version: str
    started_at: datetime | None
    config: str


class AlertmanagerClient:
    """Typed, bounded calls to one Alertmanager's API v2."""

    def __init__(self, base_url: str, http: httpx.Client, *, max_alerts: int = MAX_ALERTS,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.max_alerts = max_alerts
        self.max_response_bytes = max_response_bytes

    @classmethod
    def from_settings(cls, settings: Settings, **bounds: int) -> AlertmanagerClient:
        """The client of ``settings.alertmanager_url`` with its timeout and credentials;
        ConfigError when no URL is configured."""
        if not settings.alertmanager_url:
            raise ConfigError("setting 'alertmanager_url' is not set "
                              "(AUTOCNC_ALERTMANAGER_URL)")
        http = peer_client(bearer_token=settings.alertmanager_bearer_token,
                           username=settings.alertmanager_username,
                           password=settings.alertmanager_password,
                           timeout_s=settings.alertmanager_timeout_s)
        return cls(settings.alertmanager_url, http, **bounds)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AlertmanagerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------------------------
    def alerts(self, *, active: bool = True, silenced: bool = True, inhibited: bool = True,
               unprocessed: bool = True, matchers: Sequence[str] = (),
               receiver: str | None = None, timeout_s: float | None = None
               ) -> list[AlertmanagerAlert]:
        """The alerts Alertmanager holds, sorted by fingerprint (as it sorts them). The
        filters are Alertmanager's own: ``matchers`` like ``severity="critical"``,
        ``receiver`` a regex of receiver names. Only filters that differ from the API's
        defaults (all true) are sent, so versions without one of them still answer."""
        params: list[tuple[str, str | int | float | bool | None]] = [
            (name, "false") for name, on in (("active", active), ("silenced", silenced),
                                             ("inhibited", inhibited),
                                             ("unprocessed", unprocessed)) if not on]
        params += [("filter", m) for m in matchers]
        if receiver is not None:
            params.append(("receiver", receiver))
        data = self._get("alerts", params, timeout_s)
        if not isinstance(data, list):
            raise self._bad("alerts", "not a list of alerts")
        if len(data) > self.max_alerts:
            raise AlertmanagerAnswerError(
                self._url("alerts"), f"{len(data)} alerts over the bound of {self.max_alerts}")
        return [self._alert(a) for a in data]

    def status(self, timeout_s: float | None = None) -> AlertmanagerStatus:
        """Alertmanager's version, start time and configuration."""
        data = self._get("status", [], timeout_s)
        if not isinstance(data, dict):
            raise self._bad("status", "not an object")
        config = data.get("config") if isinstance(data.get("config"), dict) else {}
        info = data.get("versionInfo") if isinstance(data.get("versionInfo"), dict) else {}
        return AlertmanagerStatus(str((info or {}).get("version") or ""),
                                  rfc3339(data.get("uptime")),
                                  str((config or {}).get("original") or ""))

    # -- answers -----------------------------------------------------------------------------
    def _alert(self, a: Any) -> AlertmanagerAlert:
        if not isinstance(a, dict):
            raise self._bad("alerts", "an alert is not an object")
        fingerprint = a.get("fingerprint")
        starts = rfc3339(a.get("startsAt"))
        status = a.get("status") if isinstance(a.get("status"), dict) else None
        if not isinstance(fingerprint, str) or not fingerprint or starts is None \
                or status is None:
            raise self._bad("alerts", "an alert lacks its fingerprint, startsAt or status")
        state = str(status.get("state") or "")
        if state not in STATES:
            raise self._bad("alerts", f"unknown alert state {state!r}")
        receivers = a.get("receivers") or []
        return AlertmanagerAlert(
            fingerprint, self._labels(a.get("labels")), self._labels(a.get("annotations")),
            starts, rfc3339(a.get("endsAt")), rfc3339(a.get("updatedAt")), state,
            tuple(str(r.get("name")) for r in receivers if isinstance(r, dict)),
            str(a.get("generatorURL") or ""), tuple(map(str, status.get("silencedBy") or ())),
            tuple(map(str, status.get("inhibitedBy") or ())))

    def _labels(self, obj: Any) -> dict[str, str]:
        if obj is None:
            return {}
        if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
            raise self._bad("alerts", "labels are not a map of strings")
        return obj

    # -- transport ---------------------------------------------------------------------------
    def _url(self, endpoint: str) -> str:
        return f"{self.base_url}/api/v2/{endpoint}"

    def _get(self, endpoint: str, params: list[tuple[str, str | int | float | bool | None]],
             timeout_s: float | None) -> Any:
        url = self._url(endpoint)
        extra: dict[str, Any] = {} if timeout_s is None else {
            "timeout": httpx.Timeout(max(timeout_s, 0.001))}
        request = self.http.build_request("GET", url, params=params, **extra)
        status, body = read_bounded(self.http, request, url, self.max_response_bytes,
                                    unavailable=AlertmanagerUnavailable,
                                    too_large=self._too_large)
        if status in (401, 403):
            raise AlertmanagerAuthError(url, f"HTTP {status}: credentials refused (settings "
                                             "alertmanager_bearer_token / "
                                             "alertmanager_username)")
        if status >= 500:
            raise AlertmanagerUnavailable(url, f"HTTP {status}: {_text(body)}")
        if status >= 400:
            raise AlertmanagerAnswerError(url, f"HTTP {status}: {_text(body)}")
        try:
            return json.loads(body)
        except ValueError:
            raise AlertmanagerAnswerError(url, f"HTTP {status}, not JSON: not Alertmanager's "
                                               "API v2 (is alertmanager_url its base URL?)"
                                          ) from None

    def _too_large(self, url: str) -> AlertmanagerAnswerError:
        return AlertmanagerAnswerError(url, f"answer over {self.max_response_bytes} bytes")

    def _bad(self, endpoint: str, reason: str) -> AlertmanagerAnswerError:
        return AlertmanagerAnswerError(self._url(endpoint), f"unexpected answer: {reason}")


def _text(body: bytes, limit: int = 300) -> str:
    return body[:limit].decode("utf-8", "replace").strip()


def rfc3339(text: Any) -> datetime | None:
    """Go's RFC 3339 in UTC (:func:`kg.peer_http.go_time`); None also for Go's zero time
    (year 1), which Alertmanager sends for "not set"."""
    t = go_time(text)
    return None if t is None or t.year <= 1 else t
