"""RCA's evidence stage: metric kinds from names, series judged against a clean reference,
origin scores, chains and reach (pure functions on small hand-made series)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from reasoning.rca.evidence.judge import JudgeConfig, judge
from reasoning.rca.evidence.kinds import classify
from reasoning.rca.evidence.origin import (
    EntityEvidence,
    KindEvidence,
    chain_factors,
    origin_scores,
    reach_shares,
)
from reasoning.rca.evidence.sources import SeriesData, SeriesRef

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CFG = JudgeConfig()


def series(metric: str, values: list[float], step_s: int = 60, start: datetime | None = None,
           labels: dict[str, str] | None = None) -> SeriesData:
    """``values`` sampled every ``step_s``, the last one at T0 + 2 steps (so the window
    around T0 holds the last five)."""
    n = len(values)
    first = start or T0 - timedelta(seconds=step_s * (n - 3))
    ts = np.array([int((first + timedelta(seconds=step_s * i)).timestamp() * 1000)
                   for i in range(n)], dtype=np.int64)
    return SeriesData(SeriesRef("urn:x", metric, labels or {}, "local", metric), ts,
                      np.asarray(values, dtype=float))


def noisy(n: int, level: float, spread: float, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(level + spread * rng.standard_normal(n))


@pytest.mark.parametrize("metric,labels,kind,role,sign", [
    ("container_cpu_usage_seconds_total", {}, "resource", "own", 1),
    ("CpuUsageRate(%)", {}, "resource", "own", 1),
    ("http_request_duration_seconds", {}, "latency", "propagating", 1),
    ("PodServerLatencyP90(s)", {}, "latency", "propagating", 1),
    ("PodClientLatencyP90(s)", {}, "client", "waiting", 1),
    ("istio_request_duration_milliseconds", {"reporter": "source"}, "client", "waiting", 1),
    ("trace_self_time_seconds", {}, "self", "own", 1),
    ("trace_call_gap_seconds", {}, "gap", "own", 1),
    ("trace_error_ratio", {}, "errors", "propagating", 1),
    ("PodSuccessRate(%)", {}, "availability", "propagating", -1),
    ("up", {}, "availability", "propagating", -1),
    ("http_requests_total", {}, "traffic", "neutral", 0),
    ("SyscallRead", {}, "other", "neutral", 0),
])
def test_kinds_read_from_names(metric: str, labels: dict[str, str], kind: str, role: str,
                               sign: int) -> None:
    k = classify(metric, labels)
    assert (k.name, k.role, k.sign) == (kind, role, sign)


def test_unit_floors() -> None:
    assert classify("CpuUsageRate(%)").floor == 1.0
    assert classify("latency_seconds").floor == 0.001
    assert classify("error_ratio").floor == 0.01
    assert classify("latency").floor == 0.0


def test_a_step_up_is_judged_against_the_reference() -> None:
    v = judge(series("latency_seconds", noisy(60, 0.1, 0.005) + [0.1, 0.1, 0.5, 0.5, 0.5]),
              (T0, T0), None, CFG)
    assert v.status == "judged" and v.anomalous and v.deviation > 50
    assert v.onset == T0 and v.baseline == pytest.approx(0.1, abs=0.01)
    # the harmful direction only: a drop of latency is not evidence
    down = judge(series("latency_seconds", noisy(60, 0.1, 0.005) + [0.1, 0.1, 0.02, 0.02,
                                                                     0.02]), (T0, T0), None, CFG)
    assert down.status == "judged" and not down.anomalous


def test_one_noisy_point_is_not_a_fault_two_are() -> None:
    base = noisy(60, 10.0, 0.5)
    one = judge(series("cpu_usage", base + [10, 10, 40, 10, 10]), (T0, T0), None, CFG)
    two = judge(series("cpu_usage", base + [10, 10, 40, 40, 10]), (T0, T0), None, CFG)
    assert not one.anomalous and two.anomalous


def test_flat_and_zero_series_cannot_explode() -> None:
    # a flat 0 reference and one request: the window's own level bounds the scale
    v = judge(series("queue_depth", [0.0] * 60 + [0, 0, 1, 1, 0]), (T0, T0), None, CFG)
    assert v.deviation < 100
    # a flat percentage moving by less than a point is noise (the unit floor)
    p = judge(series("cpu_percent", [5.0] * 60 + [5, 5, 5.4, 5.4, 5]), (T0, T0), None, CFG)
    assert not p.anomalous
    still = judge(series("cpu_percent", [5.0] * 65), (T0, T0), None, CFG)
    assert still.status == "judged" and still.note == "flat" and not still.anomalous


def test_availability_is_judged_as_the_failing_fraction() -> None:
    # 100 % -> 97 %: a 3-point drop, thirty times the 0.1-point floor of failures
    v = judge(series("availability", [100.0] * 60 + [100, 100, 97, 96, 100]), (T0, T0), None,
              CFG)
    assert v.anomalous and v.deviation == pytest.approx(30, rel=0.01)
    ratio = judge(series("success_ratio", [1.0] * 60 + [1, 1, 0.97, 0.96, 1]), (T0, T0),
                  None, CFG)
    assert ratio.deviation == pytest.approx(v.deviation, rel=0.01)


def test_unjudged_series_say_why() -> None:
    short = judge(series("latency_seconds", [0.1, 0.1, 0.5, 0.5, 0.5]), (T0, T0), None, CFG)
    assert short.status == "too-short" and "reference point" in short.note
    late = series("latency_seconds", [0.1] * 10, start=T0 + timedelta(hours=2))
    assert judge(late, (T0, T0), None, CFG).status == "missing"


def test_the_trailing_reference_drops_an_earlier_incident() -> None:
    # an incident 20 minutes earlier (a plateau at 5x) must not become the normal
    base = noisy(60, 1.0, 0.05)
    base[35:42] = [5.0] * 7
    v = judge(series("latency_seconds", base + [1, 1, 3, 3, 3]), (T0, T0), None, CFG)
    assert v.anomalous and v.baseline == pytest.approx(1.0, abs=0.05)


def test_an_explicit_reference_window_is_used() -> None:
    data = series("latency_seconds", noisy(60, 1.0, 0.05) + [3.0] * 100,
                  start=T0 - timedelta(minutes=60))
    # the trailing hour before T0 is clean, but say a later period is the reference: the
    # plateau at 3 is then normal
    later = (T0 + timedelta(minutes=30), T0 + timedelta(minutes=90))
    assert judge(data, (T0, T0), None, CFG).anomalous
    assert not judge(data, (T0, T0), later, CFG).anomalous


def test_coarse_series_widen_the_window() -> None:
    # 5-minute samples: two of them either side of the symptom, not the 5 minutes default
    v = judge(series("latency_seconds", noisy(30, 1.0, 0.05) + [1, 1, 4, 4, 1], step_s=300),
              (T0, T0), None, CFG)
    assert v.anomalous


# -- origin -------------------------------------------------------------------------------------

def ev(**kinds: tuple[float, str]) -> EntityEvidence:
    e = EntityEvidence()
    for kind, (score, role) in kinds.items():
        e.observed.add(kind)
        if score > 0:
            e.add(kind, role, KindEvidence(score, T0))
    return e


def test_latency_explained_by_a_callee_is_not_origin() -> None:
    # front -> mid -> leaf; leaf is saturated (own), everyone is slow (propagating)
    deps = {0: [1], 1: [2], 2: []}
    evidence = {0: ev(latency=(3.0, "propagating")), 1: ev(latency=(3.0, "propagating")),
                2: ev(latency=(2.0, "propagating"), resource=(2.0, "own"))}
    scores = origin_scores([0, 1, 2], deps, evidence)
    assert scores[2][0] == pytest.approx(4.0)  # its own CPU and its unexplained latency
    assert scores[1][0] == pytest.approx(3.0 * (1 - 2.0 / 3.0))  # partly its callee's
    assert scores[0][0] == 0.0  # fully explained by mid
    assert max(scores, key=lambda n: scores[n][0]) == 2


def test_client_latency_explains_the_same_entitys_latency() -> None:
    evidence = {0: ev(latency=(2.0, "propagating"), client=(2.0, "waiting"))}
    assert origin_scores([0], {0: []}, evidence)[0][0] == 0.0


def test_an_unobserved_common_cause_is_inferred() -> None:
    # a link (3) nobody monitors under four services that all deviate
    deps = {0: [3], 1: [3], 2: [3], 4: [3], 3: []}
    evidence = {n: ev(alert=(1.0, "propagating")) for n in (0, 1, 2, 4)}
    scores = origin_scores([0, 1, 2, 3, 4], deps, evidence)
    assert scores[3][0] == pytest.approx(1.0) and scores[3][1] == {"inferred": 1.0}
    assert all(scores[n][0] == 0.0 for n in (0, 1, 2, 4))
    # two of five deviating is not enough to blame what they share
    deps[5] = [3]
    few = {0: evidence[0], 1: evidence[1]}
    assert origin_scores([3], deps, few)[3][0] == 0.0


def test_chain_and_reach() -> None:
    # symptom 0 -> 1 (healthy, observed) -> 2 (deviating); 0 -> 3 (deviating)
    deps = {0: [1, 3], 1: [2], 2: [], 3: []}
    evidence = {0: ev(latency=(1.0, "propagating")), 1: ev(latency=(0.0, "propagating")),
                2: ev(resource=(2.0, "own")), 3: ev(resource=(2.0, "own"))}
    chain = chain_factors([0], deps, evidence, floor=0.2)
    assert chain[3] == 1.0 and chain[2] == pytest.approx(0.2)
    share = reach_shares([2, 3, 0], deps, evidence)
    assert share[3] == pytest.approx(1.0 / 5.0)  # the symptom's 1 of 5 in all
    assert share[0] == 0.0  # nothing depends on the symptom


def test_error_log_templates_are_judged_against_the_reference() -> None:
    from reasoning.rca.evidence.collect import LogCount, Timing, collect

    counts = []
    for k in range(70):  # a minute window each: an info template always, errors late
        at = T0 - timedelta(minutes=65 - k)
        counts.append(LogCount("urn:cart", at, 100.0, "urn:tpl/info", "info"))
        errors = 40.0 if k >= 64 else float(k % 3 == 0)  # rare errors, then a burst
        counts.append(LogCount("urn:cart", at, errors, "urn:tpl/boom", "error"))
        counts.append(LogCount("urn:web", at, 50.0, "urn:tpl/hit", "info"))
    found = collect({"urn:cart", "urn:web"}, [], (T0, T0), None, [], CFG, Timing(),
                    log_counts=counts)
    cart = found.entities["urn:cart"]
    assert "logs" in cart.kinds and cart.kinds["logs"].score > 1
    verdict = cart.kinds["logs"].verdict
    assert verdict is not None and verdict.ref.labels == {"template": "boom", "level": "error"}
    # info templates are no evidence, and a quiet stream has none
    assert "urn:web" not in found.entities or not found.entities["urn:web"].kinds
