"""No input makes the API answer 5xx: schemathesis generates requests from the app's own
OpenAPI document (valid and invalid ones, seeded, a bounded number per operation) against
the app on a real embedded store that holds the demo CNC."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from api.app import create_app
from ingest.demo import generate_demo
from kg.config import Settings, load_settings

EXAMPLES = 25  # per operation (valid and invalid requests together)
# operations that do real work per call (training, rebuilding the views, embedding text)
FEWER = {"/v1/models/train": 5, "/v1/reindex": 10, "/v1/recommendations": 10}
SEED = 7
TRANSPORT = ("method", "url", "headers", "params", "json", "content", "data", "files",
             "cookies")


def _settings(data_dir: Path) -> Settings:
    # short query limits: a generated query must not hold the run
    return load_settings(data_dir=data_dir, store="embedded", query_timeout_s=5,
                         query_max_memory_mb=1024)


SCHEMA = schemathesis.openapi.from_dict(create_app(_settings(
    Path(tempfile.gettempdir()) / "autocnc-schema-only")).openapi())
OPERATIONS = [op.ok() for op in SCHEMA.get_all_operations()]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(_settings(tmp_path_factory.mktemp("schema") / "data"))
    with TestClient(app, raise_server_exceptions=False) as c:
        c.post("/v1/facts", json=generate_demo(SEED).batch.to_json()).raise_for_status()
        yield c


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_no_input_gives_a_server_error(client: TestClient, operation: Any) -> None:
    errors: list[str] = []
    strategy = (operation.as_strategy(GenerationMode.POSITIVE)
                | operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=FEWER.get(operation.path, EXAMPLES), derandomize=True,
              deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def call(case: Any) -> None:
        kwargs = {k: v for k, v in case.as_transport_kwargs(base_url="http://testserver")
                  .items() if k in TRANSPORT and (k != "cookies" or v)}
        if isinstance(kwargs.get("data"), bytes | str):  # a raw body: httpx calls it content
            kwargs["content"] = kwargs.pop("data")
        resp = client.request(**kwargs)
        if resp.status_code >= 500:
            errors.append(f"{resp.status_code} {resp.text[:300]} for {case.as_curl_command()}")

    call()
    assert not errors, "\n".join(errors[:5])
