"""An outage of AutoCNC across real processes: a real Alertmanager routing to the webhook of a
real ``autocnc serve`` (both backends), which is stopped while alerts fire and resolve, then
started with ``alertmanager_url`` set, then started once more."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import backend_settings
from tests.live import AUTOCNC, free_port, post_alerts, start_alertmanager, start_server, wait_for

SCOPE = "shop"
FIRE_GROUP = '{}:{alertname="Fire"}'


def rows(api: httpx.Client, query: str) -> list[list[Any]]:
    answer = api.post("/v1/cypher", json={"query": query})
    assert answer.status_code == 200, answer.text
    return [list(r) for r in answer.json()["rows"]]


def occurrences(api: httpx.Client) -> dict[str, dict[str, Any]]:
    """Alert occurrences by name and start."""
    got = rows(api, "MATCH (a:Entity) WHERE a.kind = 'Alert' RETURN a.name, a.startTime, "
                    "a.alertStatus, a.endTime, a.closedBy, a.groupKey, a.attributes")
    return {f"{n}@{_t(s)}": {"status": st, "end": _t(e) if e else None, "closedBy": c,
                             "groupKey": g, "attributes": json.loads(a or "{}")}
            for n, s, st, e, c, g, a in got}


def incidents(api: httpx.Client) -> list[tuple[str, list[str]]]:
    """Incidents (their group key) with their alerts."""
    got = rows(api, "MATCH (a:Entity)-[:partOfIncident]->(i:Entity) "
                    "RETURN i.iri, i.groupKey, a.name, a.startTime")
    by: dict[tuple[str, str], list[str]] = {}
    for iri, key, name, start in got:
        by.setdefault((iri, key), []).append(f"{name}@{_t(start)}")
    return sorted((k, sorted(v)) for (_, k), v in by.items())


def _t(v: Any) -> datetime:
    return v if isinstance(v, datetime) else datetime.fromisoformat(str(v))


def _key(name: str, start: datetime) -> str:
    return f"{name}@{start}"


@pytest.mark.parametrize("backend", ["embedded", "neo4j"])
def test_an_outage_loses_no_alert_alertmanager_holds(backend: str, tmp_path: Path) -> None:
    settings = backend_settings(backend, tmp_path / "data")
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/v1/alerts/alertmanager?scope={SCOPE}"
    am, am_url = start_alertmanager(tmp_path, (
        "route: {receiver: autocnc, group_by: [alertname], group_wait: 1s, "
        "group_interval: 1s, repeat_interval: 1h}\n"
        f'receivers: [{{name: autocnc, webhook_configs: [{{url: "{webhook}", '
        "send_resolved: true}]}]\n"))
    env = {"AUTOCNC_ALERTMANAGER_URL": am_url}
    config = f"alertmanager_scope: {SCOPE}\nalertmanager_settle_s: 0\n"
    now = datetime.now(UTC).replace(microsecond=0)
    m = timedelta(minutes=1)
    seen = {"Resolves": now - 10 * m, "Resolves2": now - 9 * m}
    ends = {"Resolves": now - 2 * m, "Resolves2": now - timedelta(seconds=30)}
    fired = {"Fire": now - 5 * m, "Fire2": now - 4 * m}
    servers = []
    try:
        # 1. AutoCNC up: two alerts fire and are delivered; a ghost comes by the webhook
        #    alone (no Alertmanager holds it)
        server, url = start_server(tmp_path, settings, env, config, "serve1", port)
        servers.append(server)
        post_alerts(am_url, [{"labels": {"alertname": n}, "startsAt": t}
                             for n, t in seen.items()])
        with httpx.Client(base_url=url, timeout=60) as api:
            wait_for("the webhook's deliveries", lambda: len(occurrences(api)) == 2, 30,
                     am.check)
            ghost = now - 20 * m
            api.post(f"/v1/alerts/alertmanager?scope={SCOPE}", json={
                "version": "4", "groupKey": '{}:{alertname="Ghost"}', "status": "firing",
                "receiver": "autocnc", "groupLabels": {}, "commonLabels": {},
                "commonAnnotations": {}, "externalURL": "http://elsewhere", "alerts": [{
                    "status": "firing", "labels": {"alertname": "Ghost"}, "annotations": {},
                    "startsAt": ghost.isoformat(), "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "", "fingerprint": "feedfacefeedface"}]
            }).raise_for_status()
        server.stop()

        # 2. AutoCNC down: those two resolve, two alerts of one group fire, one fires and
        #    resolves in between
        post_alerts(am_url, [{"labels": {"alertname": n}, "startsAt": seen[n], "endsAt": e}
                             for n, e in ends.items()])
        post_alerts(am_url, [{"labels": {"alertname": "Fire", "instance": n},
                              "startsAt": t} for n, t in fired.items()])
        post_alerts(am_url, [{"labels": {"alertname": "Blip"}, "startsAt": now - 3 * m,
                              "endsAt": now - 2 * m}])

        # 3. up again: the resync on start-up restores what Alertmanager holds
        restart = datetime.now(UTC)
        server, url = start_server(tmp_path, settings, env, config, "serve2", port)
        servers.append(server)
        ready = datetime.now(UTC)
        with httpx.Client(base_url=url, timeout=60) as api:
            health = api.get("/healthz").json()["alertmanagerResync"]
            first = health["lastRun"]
            assert first["ok"], health
            assert first["counts"]["created"] == 2, first
            assert first["counts"]["closedMissing"] == 3, first  # ghost, the two resolved
            got = occurrences(api)
            fire = {n: got[_key("Fire", t)] for n, t in fired.items()}
            assert all(f["status"] == "firing" and f["groupKey"] == FIRE_GROUP
                       for f in fire.values()), fire
            g = got[_key("Ghost", ghost)]
            assert g["closedBy"] == "resync-missing" and restart <= g["end"] <= ready
            assert not any(k.startswith("Blip@") for k in got)  # Alertmanager's API never
            # lists an alert whose end has passed: one that fired and resolved while AutoCNC
            # was down is not restored

            # Alertmanager's own resolved reports land at its times, and its firing report
            # of the Fire group joins the incident the resync opened
            def settled() -> dict[str, dict[str, Any]] | None:
                now_got = occurrences(api)
                done = all(now_got[_key(n, t)]["end"] == ends[n] and
                           now_got[_key(n, t)]["closedBy"] is None for n, t in seen.items())
                delivered = all(now_got[_key("Fire", t)]["attributes"]["externalURL"] !=
                                am_url for t in fired.values())
                return now_got if done and delivered else None

            got = wait_for("Alertmanager's reports after the restart", settled, 60, am.check)
            fire_incidents = [i for i in incidents(api) if i[0] == FIRE_GROUP]
            assert fire_incidents == [(FIRE_GROUP, sorted(
                _key("Fire", t) for t in fired.values()))]
            assert any(i["groupKey"] == FIRE_GROUP for i in api.get("/v1/incidents").json())

            # nothing left to do: by the API and by the CLI (through the server)
            again = api.post("/v1/alerts/resync")
            assert again.status_code == 200, again.text
            assert again.json()["counts"]["created"] == 0
            assert again.json()["counts"]["updated"] == 0
            assert again.json()["counts"]["unchanged"] == 2
            cli = subprocess.run(
                [AUTOCNC, "alerts", "resync", "--json"], capture_output=True, text=True,
                env={**os.environ, "AUTOCNC_DATA_DIR": str(settings.data_dir),
                     "AUTOCNC_STORE": settings.store,
                     **({"NEO4J_URI": settings.neo4j_uri} if settings.neo4j_uri else {})},
                timeout=120)
            assert cli.returncode == 0, cli.stderr
            assert json.loads(cli.stdout)["counts"]["unchanged"] == 2
            before = (occurrences(api), incidents(api))
        server.stop()

        # 4. a restart with nothing changed changes nothing
        server, url = start_server(tmp_path, settings, env, config, "serve3", port)
        servers.append(server)
        with httpx.Client(base_url=url, timeout=60) as api:
            last = api.get("/healthz").json()["alertmanagerResync"]["lastRun"]
            assert last["ok"] and last["counts"]["updated"] == 0 and \
                last["counts"]["created"] == 0 and last["counts"]["unchanged"] == 2, last
            assert (occurrences(api), incidents(api)) == before
        server.stop()
    finally:
        for proc in servers:
            proc.stop()
        am.stop()
