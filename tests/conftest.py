"""Fixtures: the knowledge graph on every store backend, for real.

The store suite is parametrised over the embedded store (LadybugDB in a temporary data
directory) and Neo4j (``NEO4J_URI``). Without NEO4J_URI the Neo4j half is skipped, except
under ``CI=true``, where a missing Neo4j fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kg.config import Settings, load_settings
from kg.graph import KnowledgeGraph

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BACKENDS = ["embedded", "neo4j"]


def _wipe_neo4j(uri: str) -> None:
    import neo4j

    with neo4j.GraphDatabase.driver(uri, auth=None) as driver:
        driver.execute_query("MATCH (n) DETACH DELETE n")


def backend_settings(backend: str, data_dir: Path) -> Settings:
    if backend == "neo4j":
        uri = os.environ.get("NEO4J_URI")
        if not uri:
            if os.environ.get("CI") == "true":
                pytest.fail("CI=true but NEO4J_URI is not set: the Neo4j suite must run in CI")
            pytest.skip("NEO4J_URI not set (start one with: bash .ci/neo4j.sh start)")
        try:
            _wipe_neo4j(uri)
        except Exception as exc:  # the driver raises several types when nothing listens
            if os.environ.get("CI") == "true":
                pytest.fail(f"Neo4j at {uri} is not reachable: {exc}")
            pytest.skip(f"Neo4j at {uri} is not reachable: {exc}")
        return load_settings(data_dir=data_dir, store="neo4j", neo4j_uri=uri)
    return load_settings(data_dir=data_dir, store="embedded")


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return backend_settings(request.param, tmp_path / "data")


@pytest.fixture
def kg(settings: Settings) -> Iterator[KnowledgeGraph]:
    graph = KnowledgeGraph.open(settings, writer=True)
    try:
        yield graph
    finally:
        graph.close()


@pytest.fixture(autouse=True)
def _fresh_cli_options() -> Iterator[None]:
    """The CLI keeps its global options (``--data-dir`` ...) in a module dict set by its
    callback; a test that runs a command app without that callback must not see the options
    an earlier test's full CLI left there."""
    from api.cli_context import OPTIONS

    OPTIONS.clear()
    yield
    OPTIONS.clear()
