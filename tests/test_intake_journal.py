"""The webhook's intake journal (api/intake_journal.py): a round trip through its files,
fsync before the acknowledgement, back-pressure, and ``kill -9`` of ``autocnc serve`` with
acknowledged notifications not yet in the graph, replayed exactly once after the restart,
and again from an older applied mark without duplicates."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.intake_journal import IntakeFull, IntakeJournal, read_segment
from tests.conftest import SHARED_DATA
from tests.live import AUTOCNC, free_port, wait_for

EXAMPLE = json.loads((SHARED_DATA / "alertmanager-webhook-example.json").read_text())
COUNT_ALERTS = "MATCH (a:Entity) WHERE a.kind = 'Alert' RETURN count(a) AS n"
DISTINCT_ALERTS = "MATCH (a:Entity) WHERE a.kind = 'Alert' RETURN count(DISTINCT a.iri) AS n"


def notification(i: int) -> dict[str, Any]:
    """The example notification with fingerprints of its own (new occurrences)."""
    doc = copy.deepcopy(EXAMPLE)
    for k, alert in enumerate(doc["alerts"]):
        alert["fingerprint"] = f"{i:08x}{k:08x}"
    return doc


# -- the journal itself ---------------------------------------------------------------------

def test_round_trip_fsync_before_ack_and_segments(tmp_path: Path) -> None:
    root = tmp_path / "intake"
    journal = IntakeJournal.open(root, max_entries=1000, max_bytes=1 << 30,
                                 segment_bytes=1)  # a segment per batch
    delivered: list[int] = []
    on_disk_at_ack: list[bool] = []

    def on_disk(seq: int) -> bool:
        return any(e.seq == seq for p in root.glob("*.jsonl") for e in read_segment(p))

    journal.start(lambda e: delivered.append(e.seq))
    entries = []
    for i in range(5):
        e = journal.append("prod", {"rules_scope": "r"}, notification(i))
        e.durable.add_done_callback(lambda f: on_disk_at_ack.append(on_disk(f.result())))
        entries.append(e)
        assert e.durable.result(timeout=10) == i + 1
    wait_for("every delivery", lambda: len(delivered) == 5, 10)
    assert delivered == [1, 2, 3, 4, 5] and on_disk_at_ack == [True] * 5
    assert journal.lag() == (5, sum(e.size for e in entries))
    journal.applied(3, sum(e.size for e in entries[:3]))
    journal.stop()
    assert json.loads((root / "applied").read_text()) == {"v": 1, "seq": 3}

    again = IntakeJournal.open(root, max_entries=1000, max_bytes=1 << 30)
    # segments wholly applied are gone; what is after the mark comes back as written
    assert sorted(int(p.stem) for p in root.glob("*.jsonl")) == [4, 5]
    replay = again.unapplied()
    assert [e.seq for e in replay] == [4, 5]
    assert replay[0].payload == notification(3) and replay[0].scope == "prod"
    assert replay[0].options == {"rules_scope": "r"}
    assert again.lag() == (2, sum(e.size for e in entries[3:]))
    again.start(None)  # numbering goes on after the highest sequence number
    assert again.append("prod", {}, notification(9)).durable.result(timeout=10) == 6
    again.stop()


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "intake"
    journal = IntakeJournal.open(root, max_entries=10, max_bytes=1 << 30).start(None)
    journal.append("prod", {}, notification(0)).durable.result(timeout=10)
    journal.stop()
    (segment,) = root.glob("*.jsonl")
    with segment.open("ab") as f:
        f.write(b'{"v":1,"seq":2,"scope":"pr')  # a crash mid-append: never acknowledged
    assert [e.seq for e in IntakeJournal.open(root, max_entries=10,
                                              max_bytes=1 << 30).unapplied()] == [1]


def test_back_pressure_refuses_past_the_bound(tmp_path: Path) -> None:
    journal = IntakeJournal.open(tmp_path / "intake", max_entries=2,
                                 max_bytes=1 << 30).start(None)
    for i in range(2):
        journal.append("prod", {}, notification(i))
    with pytest.raises(IntakeFull) as err:
        journal.append("prod", {}, notification(2))
    assert err.value.retryable
    journal.applied(1, 0)  # the writer caught up one: room for one more
    journal.append("prod", {}, notification(3)).durable.result(timeout=10)
    journal.stop()
    small = IntakeJournal.open(tmp_path / "small", max_entries=100,
                               max_bytes=100).start(None)
    small.append("prod", {}, notification(0))  # over 100 bytes on its own
    with pytest.raises(IntakeFull):
        small.append("prod", {}, notification(1))
    small.stop()


# -- autocnc serve, killed ------------------------------------------------------------------

@contextmanager
def serve(data: Path, config: str, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``autocnc serve`` in a process group of its own (``kill -9`` takes its query workers
    too); ready on entry, stopped by its pid on exit unless killed."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "config.yaml").write_text(config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(data), "AUTOCNC_STORE": "embedded"}
    with log.open("ab") as out:
        proc = subprocess.Popen([AUTOCNC, "serve", "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("autocnc serve", lambda: proc.poll() is None and httpx.get(
            f"{url}/readyz", timeout=5).status_code == 200 or proc.poll() is not None, 300)
        assert proc.poll() is None, log.read_text()[-3000:]
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def count(url: str, query: str = COUNT_ALERTS) -> int:
    resp = httpx.post(f"{url}/v1/cypher", json={"query": query}, timeout=60)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["rows"][0][0])


def test_acknowledged_notifications_survive_kill9_exactly_once(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "serve.log"
    per = len(EXAMPLE["alerts"])
    paused = ("default_scope: prod\nwebhook_apply_paused: true\nwebhook_ack_wait_ms: 50\n"
              "webhook_journal_max_entries: 6\n")
    with serve(data, paused, log) as (proc, url):
        answers = []
        lock = threading.Lock()

        def post(i: int) -> None:
            resp = httpx.post(f"{url}/v1/alerts/alertmanager", json=notification(i),
                              timeout=30)
            with lock:
                answers.append(resp)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status_code for r in answers] == [200] * 6, [r.text for r in answers]
        assert all(r.json()["applied"] is False and r.json()["alerts"] == per
                   for r in answers)
        full = httpx.post(f"{url}/v1/alerts/alertmanager", json=notification(6), timeout=30)
        assert full.status_code == 503 and full.headers["Retry-After"]
        assert full.json()["error"] == "IntakeFull"
        assert count(url) == 0  # acknowledged, durable in the journal only
        health = httpx.get(f"{url}/healthz").json()["intakeJournal"]
        assert health["lagEntries"] == 6 and health["appliedSeq"] == 0
        assert "autocnc_intake_journal_lag_notifications 6.0" in httpx.get(
            f"{url}/metrics").text
        kill9(proc)

    with serve(data, "default_scope: prod\n", log) as (proc, url):
        # ready only once the acknowledged notifications are in the graph
        assert count(url) == count(url, DISTINCT_ALERTS) == 6 * per
        health = httpx.get(f"{url}/healthz").json()["intakeJournal"]
        assert health["lagEntries"] == 0 and health["appliedSeq"] == 6
        # the normal path: answered after the graph commit, readable at once
        resp = httpx.post(f"{url}/v1/alerts/alertmanager", json=notification(7), timeout=30)
        assert resp.status_code == 200 and resp.json()["journalSeq"] == 7
        assert "applied" not in resp.json() and count(url) == 7 * per
        before = httpx.post(f"{url}/v1/cypher", json={
            "query": "MATCH (a:Entity)-[r]-() WHERE a.kind = 'Alert' RETURN count(r) AS n"},
            timeout=60).json()["rows"][0][0]

    # an older applied mark (it is written without fsync): the replay is idempotent
    (data / "intake" / "applied").write_text(json.dumps({"v": 1, "seq": 0}))
    with serve(data, "default_scope: prod\n", log) as (proc, url):
        assert httpx.get(f"{url}/healthz").json()["intakeJournal"]["appliedSeq"] == 7
        assert count(url) == count(url, DISTINCT_ALERTS) == 7 * per
        after = httpx.post(f"{url}/v1/cypher", json={
            "query": "MATCH (a:Entity)-[r]-() WHERE a.kind = 'Alert' RETURN count(r) AS n"},
            timeout=60).json()["rows"][0][0]
        assert after == before
