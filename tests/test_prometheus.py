"""The Prometheus pull without a Prometheus: settings, the client's factory and bounds, the
selectors that name an entity (the real server is in tests/test_prometheus_live.py)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from kg.config import load_settings
from kg.errors import ConfigError
from kg.graph import KnowledgeGraph
from kg.prometheus import PrometheusClient, PrometheusQueryError, selector
from ontology import mint_iri
from reasoning.rca.evidence.prometheus import (
    Matchers,
    PrometheusSeries,
    entity_ref,
    selectors_for,
)

BASE = "https://w3id.org/autocnc/id/"
T = datetime(2026, 12, 1, tzinfo=UTC)
NO_ALERTS = '__name__!~"ALERTS|ALERTS_FOR_STATE"'


# -- settings and the factory ------------------------------------------------------------------

def test_prometheus_settings_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCNC_PROMETHEUS_URL", "https://prom.example:9090/")
    monkeypatch.setenv("AUTOCNC_PROMETHEUS_BEARER_TOKEN", "s3cret")
    s = load_settings()
    assert s.prometheus_url == "https://prom.example:9090" and s.prometheus_step_s == 15
    assert "s3cret" not in repr(s)
    monkeypatch.delenv("AUTOCNC_PROMETHEUS_BEARER_TOKEN")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"prometheus_url": "prom:9090"}, "http:// or https://"),
        ({"prometheus_url": "http://prom:9090/api/v1"}, "without /api/v1"),
        ({"prometheus_step_s": 0}, "prometheus_step_s"),
        ({"prometheus_max_series": 0}, "prometheus_max_series"),
        ({"prometheus_password": "pw"}, "needs prometheus_username"),
        ({"prometheus_bearer_token": "t", "prometheus_username": "u"}, "exclude each other"),
    ]
    for bad, says in cases:
        with pytest.raises(ConfigError, match=says):
            load_settings(**bad)


def test_the_factory_takes_url_timeout_and_credentials_from_settings() -> None:
    with pytest.raises(ConfigError, match="prometheus_url"):
        PrometheusClient.from_settings(load_settings())
    token = load_settings(prometheus_url="http://p:9090", prometheus_bearer_token="t0k",
                          prometheus_timeout_s=3)
    with PrometheusClient.from_settings(token) as c:
        assert c.base_url == "http://p:9090" and c.http.timeout.read == 3
        assert c.http.headers["Authorization"] == "Bearer t0k"
    basic = load_settings(prometheus_url="http://p:9090", prometheus_username="u",
                          prometheus_password="pw")
    with PrometheusClient.from_settings(basic) as c:
        assert c.http.auth is not None
        request = next(c.http.auth.auth_flow(httpx.Request("GET", "http://p:9090")))
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(
            b"u:pw").decode()


def test_a_range_over_the_points_bound_is_refused_before_asking() -> None:
    # nothing listens on port 9: the bound is checked before any request
    with PrometheusClient("http://127.0.0.1:9", httpx.Client(), max_points=100) as c:
        with pytest.raises(PrometheusQueryError, match="101 points") as err:
            c.query_range("up", T - timedelta(seconds=100), T, 1)
        assert err.value.error_type == "too_many_points"
        with pytest.raises(ValueError, match="step"):
            c.query_range("up", T - timedelta(seconds=100), T, 0)


def test_no_url_no_source(kg: KnowledgeGraph) -> None:
    assert PrometheusSeries.from_settings(kg) is None


# -- naming series ---------------------------------------------------------------------------

def test_series_selectors() -> None:
    assert selector({"__name__": "up", "job": "node", "instance": "a:9100"}) == \
        'up{instance="a:9100",job="node"}'
    assert selector({"__name__": "up"}) == "up"
    assert selector({"job": 'say "hi"\\'}) == '{job="say \\"hi\\"\\\\"}'
    assert selector({"__name__": "http.server.duration", "job": "x"}) == \
        '{__name__="http.server.duration",job="x"}'


def test_entity_ref_reads_scope_and_key_from_the_iri() -> None:
    pod = mint_iri("prod/eu", "Pod", "shop/cart-0", BASE)
    ref = entity_ref(pod, "Pod", BASE)
    assert ref is not None and (ref.scope, ref.key) == ("prod/eu", "shop/cart-0")
    assert entity_ref(pod, "Deployment", BASE) is None  # the kind is part of the IRI
    assert entity_ref("urn:x:y", "Pod", BASE) is None


def selectors(kind: str, key: str, label_map: dict[str, str] | None = None) -> list[str]:
    ref = entity_ref(mint_iri("c1", kind, key, BASE), kind, BASE)
    assert ref is not None
    return selectors_for(ref, Matchers(label_map or {}))


def test_selectors_invert_resolution() -> None:
    scoped = f'cluster=~"c1|",{NO_ALERTS}'
    assert selectors("Pod", "default/cart-0") == [
        f'{{pod="cart-0",namespace=~"default|",{scoped}}}']
    assert selectors("Pod", "shop/cart-0") == [f'{{pod="cart-0",namespace="shop",{scoped}}}']
    no_subject = ",".join(f'{k}=""' for k in ("pod", "deployment", "statefulset", "daemonset",
                                              "replicaset", "node", "namespace", "cluster"))
    assert selectors("Service", "cart") == [f'{{service="cart",{no_subject},{scoped}}}',
                                            f'{{job="cart",{no_subject},{scoped}}}']
    node = selectors("ComputeNode", "node-1.lan")
    assert node[0] == f'{{node="node-1.lan",{scoped}}}'
    assert node[1] == f'{{instance=~"(node\\\\-1\\\\.lan)(:[0-9]+)?",{no_subject},{scoped}}}'
    assert selectors("KubernetesService", "shop/cart") == []  # resolution never gets there
    assert "pod=~" in selectors("Deployment", "shop/cart")[1]


def test_selectors_ask_under_the_operators_names_too() -> None:
    got = selectors("Pod", "shop/cart-0", {"kubernetes_pod_name": "pod",
                                           "kubernetes_namespace": "namespace"})
    # the namespace has two names: resolution alone checks it
    assert got == [f'{{pod="cart-0",cluster=~"c1|",{NO_ALERTS}}}',
                   f'{{kubernetes_pod_name="cart-0",cluster=~"c1|",{NO_ALERTS}}}']
    service = selectors("Service", "cart", {"app": "service", "kubernetes_pod_name": "pod"})
    assert [s.split(",")[0] for s in service] == ['{service="cart"', '{app="cart"', '{job="cart"']
    assert 'kubernetes_pod_name=""' in service[0]  # a mapped pod is a subject label too
