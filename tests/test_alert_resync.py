"""The resync with Alertmanager: the reconcile as a table, the routing tree against the group
keys a real Alertmanager sends, the API v2 client against a real Alertmanager, and the
resync writing through the webhook's path on both backends (the outage across real
``autocnc serve`` processes is in tests/test_alert_resync_live.py)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.alert_receiver import AlertReceiver
from api.alert_resync import AlertResync, ResyncSchedule
from api.incident_worker import IncidentWorker, alert_refs
from ingest.alertmanager import parse_payload
from ingest.alertmanager_resync import Action, Desired, Observed, payloads, plan_resync
from ingest.alertmanager_routes import (
    go_quote,
    label_set,
    parse_matchers,
    routes_of,
    routing_tree,
    webhook_receivers,
)
from kg.alertmanager import (
    AlertmanagerAlert,
    AlertmanagerAnswerError,
    AlertmanagerClient,
    AlertmanagerUnavailable,
)
from kg.config import Settings, load_settings
from kg.errors import ConfigError
from kg.graph import KnowledgeGraph
from tests.live import free_port, post_alerts, start_alertmanager, wait_for

SCOPE = "shop"
T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
READ_AT = NOW - timedelta(seconds=1)


# -- settings ---------------------------------------------------------------------------------

def test_alertmanager_settings_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCNC_ALERTMANAGER_URL", "http://am.example:9093/")
    monkeypatch.setenv("AUTOCNC_ALERTMANAGER_SCOPE", "prod-eu")
    monkeypatch.setenv("AUTOCNC_ALERTMANAGER_BEARER_TOKEN", "s3cret")
    s = load_settings()
    assert s.alertmanager_url == "http://am.example:9093" and s.resync_scope == "prod-eu"
    assert s.alertmanager_resync_s == 60 and "s3cret" not in repr(s)
    for name in ("SCOPE", "BEARER_TOKEN"):
        monkeypatch.delenv(f"AUTOCNC_ALERTMANAGER_{name}")
    assert load_settings(default_scope="dflt").resync_scope == "dflt"
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "needs the scope"),
        ({"alertmanager_url": "am:9093", "default_scope": "x"}, "http:// or https://"),
        ({"alertmanager_url": "http://am:9093/api/v2", "default_scope": "x"},
         "without /api/v2"),
        ({"alertmanager_resync_s": 1, "default_scope": "x"}, "alertmanager_resync_s"),
        ({"alertmanager_password": "pw", "default_scope": "x"},
         "needs alertmanager_username"),
        ({"alertmanager_bearer_token": "t", "alertmanager_username": "u",
          "default_scope": "x"}, "exclude each other"),
    ]
    for bad, says in cases:
        with pytest.raises(ConfigError, match=says):
            load_settings(**bad)


def test_the_client_takes_url_timeout_and_credentials_from_settings() -> None:
    with pytest.raises(ConfigError, match="alertmanager_url"):
        AlertmanagerClient.from_settings(load_settings())
    token = load_settings(alertmanager_url="http://am:9093", default_scope="x",
                          alertmanager_bearer_token="t0k", alertmanager_timeout_s=3)
    with AlertmanagerClient.from_settings(token) as c:
        assert c.base_url == "http://am:9093" and c.http.timeout.read == 3
        assert c.http.headers["Authorization"] == "Bearer t0k"
    basic = load_settings(alertmanager_url="http://am:9093", default_scope="x",
                          alertmanager_username="u", alertmanager_password="pw")
    with AlertmanagerClient.from_settings(basic) as c:
        assert c.http.auth is not None
        request = next(c.http.auth.auth_flow(httpx.Request("GET", "http://am:9093")))
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(
            b"u:pw").decode()


# -- the reconcile as a table -------------------------------------------------------------------

def am(fp: str, start: datetime, state: str = "active") -> Desired:
    alert = AlertmanagerAlert(fp, {"alertname": fp}, {}, start, None, None, state,
                              ("autocnc",))
    return Desired(alert, f'{{}}:{{alertname="{fp}"}}', "autocnc")


def graph(fp: str, start: datetime, first_seen: datetime = T0) -> Observed:
    return Observed(f"iri:{fp}/{start.isoformat()}", fp, start, first_seen, {"alertname": fp},
                    {}, f'{{}}:{{alertname="{fp}"}}')


T1 = T0 + timedelta(minutes=5)
SUB_MS = T0 + timedelta(microseconds=400)  # the webhook's time; the API gives T0
LATER = NOW + timedelta(minutes=10)  # Alertmanager's clock ahead of ours
PLAN_CASES: list[tuple[str, list[Desired], list[Observed], dict[Any, Any], bool,
                       list[tuple[str, str, str, datetime | None]], dict[str, int]]] = [
    # name, Alertmanager holds, the graph has open, the graph has closed, settled,
    #   actions (op, reason, fingerprint, end time), counts
    ("held and open", [am("a", T0)], [graph("a", T0)], {}, True, [], {"unchanged": 1}),
    ("new", [am("a", T0)], [], {}, True, [("create", "new", "a", None)], {"created": 1}),
    ("new, unprocessed", [am("a", T0, "unprocessed")], [], {}, True,
     [("create", "new", "a", None)], {"created": 1}),
    ("new, silenced", [am("a", T0, "suppressed")], [], {}, True, [], {"suppressed": 1}),
    ("open, silenced since", [am("a", T0, "suppressed")], [graph("a", T0)], {}, True, [],
     {"unchanged": 1}),
    ("gone", [], [graph("a", T0)], {}, True, [("close", "resync-missing", "a", NOW)],
     {"closedMissing": 1, "updated": 1}),
    ("gone, Alertmanager just started", [], [graph("a", T0)], {}, False, [],
     {"deferred": 1}),
    ("gone, but written after the read", [], [graph("a", T0, first_seen=NOW)], {}, True, [],
     {"unchanged": 1}),
    ("refired", [am("a", T1)], [graph("a", T0)], {}, True,
     [("close", "resync-refired", "a", T1), ("create", "new", "a", None)],
     {"closedRefired": 1, "created": 1}),
    ("refired, Alertmanager just started", [am("a", T1)], [graph("a", T0)], {}, False,
     [("close", "resync-refired", "a", T1), ("create", "new", "a", None)],
     {"closedRefired": 1, "created": 1}),
    ("refired, by a clock ahead", [am("a", LATER)], [graph("a", T0)], {}, True,
     [("close", "resync-refired", "a", NOW), ("create", "new", "a", None)], {}),
    ("held with an older start", [am("a", T0)], [graph("a", T1)], {}, True,
     [("close", "resync-missing", "a", NOW), ("create", "new", "a", None)], {}),
    ("gone, started after our now", [], [graph("a", LATER)], {}, True,
     [("close", "resync-missing", "a", LATER)], {}),
    ("closed by a resync, held again", [am("a", T0)], [], {("a", T0): "resync-missing"},
     True, [("reopen", "reappeared", "a", None)], {"reopened": 1, "updated": 1}),
    ("closed by Alertmanager's report, held again", [am("a", T0)], [], {("a", T0): None},
     True, [], {"closedUpstream": 1}),
    ("times finer than a millisecond", [am("a", T0)], [graph("a", SUB_MS)], {}, True, [],
     {"unchanged": 1}),
    ("two occurrences under one key", [am("a", T0)], [graph("a", T0), graph("a", SUB_MS)],
     {}, True, [], {"unchanged": 2}),
    ("several alerts", [am("a", T0), am("b", T0), am("c", T1)], [graph("a", T0),
                                                                   graph("d", T0)],
     {}, True, [("close", "resync-missing", "d", NOW), ("create", "new", "b", None),
                ("create", "new", "c", None)],
     {"created": 2, "closedMissing": 1, "unchanged": 1}),
]


@pytest.mark.parametrize(("name", "desired", "observed", "closed", "settled", "actions",
                          "counts"), PLAN_CASES, ids=[c[0] for c in PLAN_CASES])
def test_the_plan_acts_on_the_difference(
        name: str, desired: list[Desired], observed: list[Observed], closed: dict[Any, Any],
        settled: bool, actions: list[tuple[str, str, str, datetime | None]],
        counts: dict[str, int]) -> None:
    plan = plan_resync(desired, observed, closed, now=NOW, read_at=READ_AT,
                       close_missing=settled)
    assert [(a.op, a.reason, fingerprint(a), a.at) for a in plan.actions] == actions
    assert {k: v for k, v in plan.counts().items() if k in counts} == counts
    # made again on the graph its actions leave, the plan finds nothing left to do
    still_open = [o for o in observed if not any(a.observed is o for a in plan.actions)]
    now_closed = dict(closed)
    for a in plan.actions:
        if a.desired is not None:
            still_open.append(graph(a.desired.alert.fingerprint, a.desired.alert.starts_at))
            now_closed.pop(a.desired.key, None)
        elif a.observed is not None:
            now_closed[a.observed.key] = a.reason
    again = plan_resync(desired, still_open, now_closed, now=NOW, read_at=READ_AT,
                        close_missing=settled)
    assert again.actions == [], name


def fingerprint(a: Action) -> str:
    return a.desired.alert.fingerprint if a.desired else a.observed.fingerprint \
        if a.observed else ""


def test_actions_become_webhook_notifications() -> None:
    plan = plan_resync([am("a", T0), am("b", T0), am("c", T1, "unprocessed")],
                       [graph("x", T0), graph("y", T0)], {}, now=NOW, read_at=READ_AT,
                       close_missing=True)
    plan.actions.append(plan_resync([am("r", T0)], [], {("r", T0): "resync-missing"},
                                    now=NOW, read_at=READ_AT, close_missing=True).actions[0])
    out = payloads(plan, external_url="http://am:9093", max_alerts=1)
    kinds = sorted((p["status"], json.dumps(o), p["alerts"][0]["fingerprint"])
                   for p, o in out)
    assert kinds == sorted([("firing", "{}", "a"), ("firing", "{}", "b"),
                            ("firing", "{}", "c"), ("firing", '{"reopen": true}', "r"),
                            ("resolved", '{"closed_by": "resync-missing"}', "x"),
                            ("resolved", '{"closed_by": "resync-missing"}', "y")])
    for p, _ in out:
        note = parse_payload(p)  # what the webhook's receiver takes
        assert note.group_key == f'{{}}:{{alertname="{p["alerts"][0]["fingerprint"]}"}}'
        if note.status == "resolved":
            assert note.alerts[0].ends_at == NOW
    same = [Desired(d.alert, "{}:{}", "autocnc") for d in (am("a", T0), am("b", T0))]
    one = plan_resync(same, [], {}, now=NOW, read_at=READ_AT, close_missing=True)
    [(note, _)] = payloads(one, external_url="http://am:9093")  # one per group and kind
    assert [a["fingerprint"] for a in note["alerts"]] == ["a", "b"]


# -- the routing tree ---------------------------------------------------------------------------

def test_autocncs_receivers_are_those_posting_to_the_webhook() -> None:
    shown = ("receivers:\n- name: autocnc\n  webhook_configs:\n  - url: http://a:8080/v1/alerts/"
             "alertmanager?scope=shop\n- name: pager\n  webhook_configs:\n  - url: http://p/\n"
             "- name: mail\n")
    assert webhook_receivers(shown) == {"autocnc"}
    masked = shown.replace("http://a:8080/v1/alerts/alertmanager?scope=shop", "<secret>")
    assert webhook_receivers(masked) == set()  # Alertmanager 0.28 masks them


def test_matchers_and_go_quoting() -> None:
    ms = parse_matchers('{severity="page", team=~"db|net",env!=dev, x!~"a\\"b"}')
    assert [str(m) for m in ms] == ['severity="page"', 'team=~"db|net"', 'env!="dev"',
                                    'x!~"a\\"b"']
    assert ms[1].matches({"team": "db"}) and not ms[1].matches({"team": "dbx"})
    assert ms[2].matches({}) and ms[3].matches({"x": 'a"bc'}) and not ms[3].matches(
        {"x": 'a"b'})
    assert go_quote('a"b\\c\n\x01é\u2028') == '"a\\"b\\\\c\\n\\x01é\\u2028"'
    assert label_set({"job": "x", "alertname": "A"}) == '{alertname="A", job="x"}'


ROUTED = """
route:
  receiver: autocnc
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['severity="page"', 'team=~"db|net"']
      receiver: pager
      continue: true
    - match: {env: prod}
      match_re: {svc: "a.*"}
      group_by: ['...']
      receiver: autocnc
    - matchers: ['{team="web",severity!="info"}']
      receiver: autocnc
      group_by: [team, cluster]
      routes:
        - match: {cluster: eu}
receivers:
  - name: autocnc
    webhook_configs: [{url: "http://127.0.0.1:PORT/v1/alerts/alertmanager?scope=shop",
                       send_resolved: true}]
  - name: pager
    webhook_configs: [{url: "http://127.0.0.1:PORT/pager"}]
"""
ROUTED_ALERTS = [
    {"alertname": "Root", "x": "1"},
    {"alertname": "Page", "severity": "page", "team": "db"},
    {"alertname": "Both", "severity": "page", "team": "net", "env": "prod", "svc": "api"},
    {"alertname": "Web", "team": "web", "severity": "warning", "cluster": "eu"},
    {"alertname": "WebInfo", "team": "web", "severity": "info"},
    {"alertname": "Quoted", "env": "prod", "svc": 'a "q" é\\'},
]


class Capture:
    """A webhook that records what Alertmanager sends it, by path."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                capture.got.append((self.path.split("?")[0], json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(404)
                self.end_headers()
                self.wfile.write(b"not found\n")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def capture() -> Iterator[Capture]:
    c = Capture()
    try:
        yield c
    finally:
        c.server.shutdown()


def test_group_keys_are_those_alertmanager_sends(tmp_path: Path, capture: Capture) -> None:
    proc, url = start_alertmanager(tmp_path, ROUTED.replace("PORT", str(capture.port)))
    try:
        post_alerts(url, [{"labels": labels} for labels in ROUTED_ALERTS])
        with AlertmanagerClient(url, httpx.Client(timeout=10)) as client:
            config = client.status().config
            held = {a.labels["alertname"]: a for a in client.alerts()}
        tree = routing_tree(config)
        expected = {(f"/{r.receiver}".replace("/autocnc", "/v1/alerts/alertmanager"),
                     r.group_key(a.labels), a.fingerprint)
                    for a in held.values() for r in routes_of(tree, a.labels)}

        deadline = time.monotonic() + 20
        while True:
            delivered = {(path, note["groupKey"], alert["fingerprint"])
                         for path, note in list(capture.got) for alert in note["alerts"]}
            if len(delivered) >= len(expected) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        proc.stop()
    assert delivered == expected
    keys = {fp: k for _, k, fp in expected}
    assert keys[held["Web"].fingerprint] == \
        '{}/{severity!="info",team="web"}/{cluster="eu"}:{cluster="eu", team="web"}'
    assert {r.receiver for r in routes_of(tree, held["Both"].labels, ["autocnc"])} == \
        {"autocnc", "pager"}
    assert routes_of(tree, held["Both"].labels, ["autocnc"])[0].receiver == "autocnc"


# -- the client against a real Alertmanager -------------------------------------------------------

CLIENT_CONFIG = """
route: {receiver: autocnc, group_wait: 1h}
receivers: [{name: autocnc}]
inhibit_rules:
  - source_matchers: [alertname="Source"]
    target_matchers: [alertname="Target"]
"""


def test_the_client_reads_alerts_with_their_filters_and_status(tmp_path: Path,
                                                               capture: Capture) -> None:
    proc, url = start_alertmanager(tmp_path, CLIENT_CONFIG)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        post_alerts(url, [
            {"labels": {"alertname": "Plain"}, "annotations": {"summary": "s"},
             "startsAt": now - timedelta(minutes=3), "generatorURL": "http://prom/g"},
            {"labels": {"alertname": "Quiet"}, "startsAt": now - timedelta(minutes=2)},
            {"labels": {"alertname": "Source"}}, {"labels": {"alertname": "Target"}},
            {"labels": {"alertname": "Over"}, "startsAt": now - timedelta(minutes=9),
             "endsAt": now - timedelta(minutes=1)}])
        httpx.post(f"{url}/api/v2/silences", json={
            "matchers": [{"name": "alertname", "value": "Quiet", "isRegex": False,
                          "isEqual": True}], "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(), "createdBy": "test",
            "comment": "quiet"}).raise_for_status()
        with AlertmanagerClient(url, httpx.Client(timeout=10)) as c:
            held = wait_for("the silence and inhibition applied", lambda: {
                a.labels["alertname"]: a for a in c.alerts()} if all(
                a.state != "unprocessed" for a in c.alerts()) else None, 10)
            status = c.status()
            filtered = {name: sorted(a.labels["alertname"] for a in c.alerts(**kw)) for
                        name, kw in {"no silenced": {"silenced": False},
                                     "no inhibited": {"inhibited": False},
                                     "no active": {"active": False},
                                     "matcher": {"matchers": ['alertname=~"P.*"']},
                                     "receiver": {"receiver": "nobody"}}.items()}
            with pytest.raises(AlertmanagerAnswerError, match="HTTP 400"):
                c.alerts(matchers=["{{"])
    finally:
        proc.stop()
    assert sorted(held) == ["Plain", "Quiet", "Source", "Target"]  # resolved ones: never
    plain = held["Plain"]
    assert plain.state == "active" and plain.receivers == ("autocnc",)
    assert plain.starts_at == now - timedelta(minutes=3) and plain.ends_at is not None
    assert plain.annotations == {"summary": "s"} and plain.generator_url == "http://prom/g"
    assert len(plain.fingerprint) == 16 and plain.updated_at is not None
    assert held["Quiet"].state == "suppressed" and held["Quiet"].silenced_by
    assert held["Target"].state == "suppressed" and held["Target"].inhibited_by
    assert filtered == {"no silenced": ["Plain", "Source", "Target"],
                        "no inhibited": ["Plain", "Quiet", "Source"],
                        "no active": ["Quiet", "Target"], "matcher": ["Plain"],
                        "receiver": []}
    # (a go-install build has no version string)
    assert status.started_at and "inhibit_rules" in status.config
    with AlertmanagerClient(f"http://127.0.0.1:{free_port()}", httpx.Client()) as c:
        with pytest.raises(AlertmanagerUnavailable) as down:
            c.alerts()
        assert down.value.retryable
    with AlertmanagerClient(f"http://127.0.0.1:{capture.port}", httpx.Client()) as c:
        with pytest.raises(AlertmanagerAnswerError, match="HTTP 404"):
            c.status()


# -- the resync on both backends, through the webhook's write path ---------------------------------

RESYNC_CONFIG = """
route: {receiver: autocnc, group_by: [alertname], group_wait: 1h, group_interval: 1h}
receivers:
  - name: autocnc
    webhook_configs: [{url: "http://127.0.0.1:9/v1/alerts/alertmanager?scope=shop"}]
"""


class Pipeline:
    """The server's alert path without the server: receiver and incident grouping."""

    def __init__(self, kg: KnowledgeGraph) -> None:
        self.guard = threading.Lock()
        self.incidents = IncidentWorker(kg, self.guard)
        self.incidents.restore()
        self.receiver = AlertReceiver(kg, self.guard, incidents=lambda recs, scope: (
            self.incidents.assign(alert_refs(recs), scope))).start()

    def deliver(self, group_key: str, *alerts: dict[str, Any]) -> None:
        status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
        payload = {"version": "4", "groupKey": group_key, "status": status,
                   "receiver": "autocnc", "groupLabels": {}, "commonLabels": {},
                   "commonAnnotations": {}, "externalURL": "http://am", "alerts": [
                       {"annotations": {}, "generatorURL": "", "endsAt": "0001-01-01T00:00:00Z",
                        **a} for a in alerts]}
        self.receiver.submit(payload, SCOPE).result(timeout=60)


@pytest.fixture
def pipeline(kg: KnowledgeGraph) -> Iterator[Pipeline]:
    p = Pipeline(kg)
    try:
        yield p
    finally:
        p.receiver.stop()


def resync_settings(kg: KnowledgeGraph, url: str, **more: Any) -> Settings:
    return kg.settings.model_copy(update={"alertmanager_url": url, "alertmanager_scope": SCOPE,
                                          "alertmanager_settle_s": 0, **more})


def occurrences(kg: KnowledgeGraph) -> dict[tuple[str, datetime], dict[str, Any]]:
    rows = kg.cypher("MATCH (a:Entity) WHERE a.kind = 'Alert' RETURN a.name, a.startTime, "
                     "a.alertStatus, a.endTime, a.closedBy, a.groupKey, a.validTo, a.iri").rows
    return {(n, s): {"status": st, "end": e, "closedBy": c, "groupKey": g, "validTo": v,
                     "iri": i} for n, s, st, e, c, g, v, i in rows}


def incident_of(kg: KnowledgeGraph, alert_iri: str) -> list[tuple[str, str]]:
    return [tuple(r) for r in kg.cypher(
        "MATCH (a:Entity {iri: $a})-[:partOfIncident]->(i:Entity) "
        "RETURN i.groupKey, i.incidentStatus", {"a": alert_iri}).rows]


def _at(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_the_resync_reconciles_the_graph(kg: KnowledgeGraph, pipeline: Pipeline,
                                         tmp_path: Path) -> None:
    proc, url = start_alertmanager(tmp_path, RESYNC_CONFIG)
    now = datetime.now(UTC).replace(microsecond=0)
    m = timedelta(minutes=1)
    try:
        post_alerts(url, [{"labels": {"alertname": n, "service": "cart"}, "startsAt": now - d}
                          for n, d in [("Fire", 10 * m), ("Refire", 5 * m), ("Quiet", 4 * m),
                                       ("Back", 15 * m), ("Upstream", 12 * m)]])
        httpx.post(f"{url}/api/v2/silences", json={
            "matchers": [{"name": "alertname", "value": "Quiet", "isRegex": False}],
            "startsAt": _at(now), "endsAt": _at(now + 60 * m), "createdBy": "t",
            "comment": "q"}).raise_for_status()
        with AlertmanagerClient(url, httpx.Client(timeout=10)) as c:
            fp = {a.labels["alertname"]: a.fingerprint for a in c.alerts()}
        # what the webhook delivered before: a ghost Alertmanager never held, an earlier
        # firing of Refire, Back (which Alertmanager then resolves), Upstream resolved
        firing = {"status": "firing"}
        pipeline.deliver('{}:{alertname="Ghost"}', {**firing, "labels": {
            "alertname": "Ghost"}, "startsAt": _at(now - 20 * m), "fingerprint": "feedface"})
        for name, start in [("Refire", now - 40 * m), ("Back", now - 15 * m)]:
            pipeline.deliver(f'{{}}:{{alertname="{name}"}}', {**firing, "labels": {
                "alertname": name, "service": "cart"}, "startsAt": _at(start),
                "fingerprint": fp[name]})
        pipeline.deliver('{}:{alertname="Upstream"}', {
            "status": "resolved", "labels": {"alertname": "Upstream", "service": "cart"},
            "startsAt": _at(now - 12 * m), "endsAt": _at(now - 11 * m),
            "fingerprint": fp["Upstream"]})
        post_alerts(url, [{"labels": {"alertname": "Back", "service": "cart"},
                           "startsAt": now - 15 * m, "endsAt": now - timedelta(seconds=1)}])

        resync = AlertResync(kg, resync_settings(kg, url, alertmanager_receivers=("autocnc",)),
                             pipeline.receiver.submit)
        before = datetime.now(UTC)
        first = resync.run()
        after = datetime.now(UTC)
        assert first["ok"] and first["counts"] == {
            "created": 2, "closedMissing": 2, "closedRefired": 1, "reopened": 0, "updated": 3,
            "unchanged": 0, "suppressed": 1, "deferred": 0, "closedUpstream": 1}, first
        assert first["receivers"] == ["autocnc"] and first["problems"] == []
        got = occurrences(kg)
        fire = got[("Fire", now - 10 * m)]
        assert fire["status"] == "firing" and fire["validTo"] is None
        assert fire["groupKey"] == '{}:{alertname="Fire"}'
        assert incident_of(kg, fire["iri"]) == [('{}:{alertname="Fire"}', "open")]
        ghost = got[("Ghost", now - 20 * m)]
        assert ghost["status"] == "resolved" and ghost["closedBy"] == "resync-missing"
        assert before <= ghost["end"] <= after and ghost["validTo"] == ghost["end"]
        assert incident_of(kg, ghost["iri"]) == [('{}:{alertname="Ghost"}', "resolved")]
        old = got[("Refire", now - 40 * m)]
        assert (old["status"], old["end"], old["closedBy"]) == (
            "resolved", now - 5 * m, "resync-refired")
        assert got[("Refire", now - 5 * m)]["status"] == "firing"
        assert got[("Back", now - 15 * m)]["closedBy"] == "resync-missing"
        upstream = got[("Upstream", now - 12 * m)]
        assert (upstream["end"], upstream["closedBy"]) == (now - 11 * m, None)
        assert not any(name == "Quiet" for name, _ in got)  # silenced: not sent either

        second = resync.run()  # idempotent: nothing left to do
        assert second["counts"] == {**first["counts"], "created": 0, "closedMissing": 0,
                                    "closedRefired": 0, "updated": 0, "unchanged": 2}
        assert second["written"] == 0 and occurrences(kg) == got

        # Back held again with the same start: the resync closed it too early, so it
        # reopens; a real resolved report replaces a resync's end time
        post_alerts(url, [{"labels": {"alertname": "Back", "service": "cart"},
                           "startsAt": now - 15 * m}])
        pipeline.deliver('{}:{alertname="Ghost"}', {
            "status": "resolved", "labels": {"alertname": "Ghost"},
            "startsAt": _at(now - 20 * m), "endsAt": _at(now - 19 * m),
            "fingerprint": "feedface"})
        third = resync.run()
        assert third["counts"]["reopened"] == 1 and third["counts"]["updated"] == 1
        got = occurrences(kg)
        back = got[("Back", now - 15 * m)]
        assert (back["status"], back["end"], back["closedBy"], back["validTo"]) == (
            "firing", None, None, None)
        ghost = got[("Ghost", now - 20 * m)]
        assert (ghost["end"], ghost["closedBy"]) == (now - 19 * m, None)

        # an Alertmanager up for less than alertmanager_settle_s: gone ones wait
        pipeline.deliver('{}:{alertname="Ghost2"}', {**firing, "labels": {
            "alertname": "Ghost2"}, "startsAt": _at(now - m), "fingerprint": "beefbeef"})
        young = AlertResync(kg, resync_settings(kg, url, alertmanager_settle_s=3600),
                            pipeline.receiver.submit).run()
        assert young["counts"]["deferred"] == 1 and not young["alertmanager"]["settled"]
        assert occurrences(kg)[("Ghost2", now - m)]["status"] == "firing"
    finally:
        proc.stop()


def test_a_failed_resync_backs_off_and_reports(kg: KnowledgeGraph, pipeline: Pipeline) -> None:
    clock = [100.0]
    down = f"http://127.0.0.1:{free_port()}"
    schedule = ResyncSchedule(AlertResync(kg, resync_settings(kg, down),
                                          pipeline.receiver.submit), 60,
                              monotonic=lambda: clock[0])
    assert schedule.attempt() is None
    assert schedule.failures == 1 and schedule.next_at == 102.0
    schedule.tick()  # not due yet
    assert schedule.failures == 1
    for wait in (4.0, 8.0, 16.0, 32.0, 60.0, 60.0):
        clock[0] = schedule.next_at
        schedule.tick()
        assert schedule.next_at - clock[0] == wait
    status = schedule.status()
    last = status["lastRun"]
    assert not last["ok"] and "AlertmanagerUnavailable" in last["error"]
    assert status["failures"] == 7 and status["url"] == down and status["scope"] == SCOPE
    with pytest.raises(AlertmanagerUnavailable):
        schedule.run_now()


def test_resync_duration(kg: KnowledgeGraph, pipeline: Pipeline, tmp_path: Path) -> None:
    """N alerts held by Alertmanager: the resync that creates them, then one with nothing
    to do (what each period costs)."""
    n = 1000
    proc, url = start_alertmanager(tmp_path, RESYNC_CONFIG)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        post_alerts(url, [{"labels": {"alertname": f"Load{i % 20}", "pod": f"p-{i}"},
                           "startsAt": now - timedelta(seconds=i)} for i in range(n)])
        resync = AlertResync(kg, resync_settings(kg, url), pipeline.receiver.submit)
        t0 = time.perf_counter()
        created = resync.run()
        t1 = time.perf_counter()
        idle = resync.run()
        t2 = time.perf_counter()
    finally:
        proc.stop()
    print(f"\nresync of {n} alerts ({kg.settings.store}): creating them {t1 - t0:.2f} s, "
          f"then nothing to do {t2 - t1:.2f} s")
    assert created["counts"]["created"] == n and created["written"] == n
    assert idle["counts"]["unchanged"] == n and idle["written"] == 0
    assert t2 - t1 < 10 and t1 - t0 < 120


# -- the route and the command ---------------------------------------------------------------------

def test_the_resync_route(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app

    off = load_settings(data_dir=tmp_path / "off", store="embedded")
    with TestClient(create_app(off)) as c:
        assert c.post("/v1/alerts/resync").status_code == 409
        assert "alertmanagerResync" not in c.get("/healthz").json()
    down = f"http://127.0.0.1:{free_port()}"
    on = load_settings(data_dir=tmp_path / "on", store="embedded", alertmanager_url=down,
                       alertmanager_scope=SCOPE, api_token="s3cret")
    with TestClient(create_app(on)) as c:  # Alertmanager down: the server starts anyway
        health = c.get("/healthz").json()["alertmanagerResync"]
        assert health["url"] == down and not health["lastRun"]["ok"]
        assert health["failures"] == 1 and health["nextInS"] <= 2
        assert c.post("/v1/alerts/resync").status_code == 401  # a write route
        failed = c.post("/v1/alerts/resync", headers={"Authorization": "Bearer s3cret"})
        assert failed.status_code == 502 and "cannot reach it" in failed.json()["detail"]
        assert failed.headers["Retry-After"] == "5"


def test_the_command_resyncs_without_a_server(settings: Settings, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from api.cli import app as cli

    proc, url = start_alertmanager(tmp_path, RESYNC_CONFIG)
    env = {"AUTOCNC_DATA_DIR": str(settings.data_dir), "AUTOCNC_STORE": settings.store,
           "NEO4J_URI": settings.neo4j_uri or ""}
    try:
        post_alerts(url, [{"labels": {"alertname": "Cli"}}])
        no_url = CliRunner().invoke(cli, ["alerts", "resync"], env=env)
        assert no_url.exit_code != 0 and "alertmanager_url" in str(no_url.exception)
        env |= {"AUTOCNC_ALERTMANAGER_URL": url, "AUTOCNC_ALERTMANAGER_SCOPE": SCOPE}
        done = CliRunner().invoke(cli, ["alerts", "resync", "--json"], env=env)
        assert done.exit_code == 0, done.output
        assert json.loads(done.output)["counts"]["created"] == 1
        again = CliRunner().invoke(cli, ["alerts", "resync"], env=env)
        assert again.exit_code == 0 and "created 0" in again.output
        assert "unchanged 1" in again.output
    finally:
        proc.stop()
    kg = KnowledgeGraph.open(settings, writer=False)
    try:
        [[status, key]] = kg.cypher("MATCH (a:Entity)-[:partOfIncident]->(i:Entity) "
                                    "WHERE a.name = 'Cli' RETURN a.alertStatus, i.groupKey"
                                    ).rows
    finally:
        kg.close()
    assert (status, key) == ("firing", '{}:{alertname="Cli"}')
