"""The competency questions of the ontology (``queries/competency.yaml``), runnable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from ontology import ONTOLOGY_DIR


@dataclass(frozen=True)
class CompetencyQuestion:
    id: str
    question: str
    params: tuple[str, ...]
    sparql: str
    cypher: str
    cypher_embedded: str | None = None

    def cypher_for(self, store_name: str) -> str:
        return self.cypher_embedded if store_name == "embedded" and self.cypher_embedded \
            else self.cypher


def competency_questions() -> list[CompetencyQuestion]:
    doc = yaml.safe_load((ONTOLOGY_DIR / "queries" / "competency.yaml").read_text())
    return [CompetencyQuestion(q["id"], q["question"], tuple(q["params"]), q["sparql"],
                               q["cypher"], q.get("cypher_embedded"))
            for q in doc["questions"]]


def sparql_bindings(params: dict[str, Any]) -> dict[Any, Any]:
    """Parameters as Oxigraph substitutions (IRIs for strings that look like IRIs)."""
    import pyoxigraph as ox

    out: dict[Any, Any] = {}
    for k, v in params.items():
        if isinstance(v, str) and "://" in v:
            term: Any = ox.NamedNode(v)
        elif isinstance(v, bool):
            term = ox.Literal("true" if v else "false",
                              datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#boolean"))
        elif isinstance(v, float):
            term = ox.Literal(repr(v),
                              datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#double"))
        elif isinstance(v, int):
            term = ox.Literal(str(v),
                              datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer"))
        else:
            term = ox.Literal(str(v))
        out[ox.Variable(k)] = term
    return out
