"""The docs run: every command and route the README lists exists, and every Cypher and
SPARQL example in docs/ runs on the demo graph (Cypher on both backends)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from ingest.demo import generate_demo
from kg.config import Settings
from kg.graph import KnowledgeGraph

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = sorted((ROOT / "docs").rglob("*.md"))


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def readme_commands() -> list[list[str]]:
    """Each command named in the README's command table, as argv (``ingest topology`` ...)."""
    groups = {g.name for g in cli.registered_groups}
    out: list[list[str]] = []
    for row in section(README, "Commands").splitlines()[4:]:
        first = re.split(r"(?<!\\)\|", row)[1] if row.startswith("|") else ""
        for span in re.findall(r"`(autocnc [^`]*)`", first):
            words = span.replace("\\|", "|").split()
            if words[1] in groups:
                out.extend([words[1], sub] for sub in words[2].split("|"))
            else:
                out.append([words[1]])
    return out


def readme_routes() -> list[tuple[str, str]]:
    return re.findall(r"`(GET|POST|PUT|DELETE) (/[^ `?]*)", section(README, "HTTP API"))


def examples(lang: str) -> list[tuple[str, str]]:
    """(``file:line``, query) of every fenced ``lang`` block in docs/."""
    out = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(rf"^```{lang}\n(.*?)^```", text, re.M | re.S):
            line = text[:m.start()].count("\n") + 1
            out.append((f"{path.relative_to(ROOT)}:{line}", m.group(1)))
    return out


def test_the_readme_lists_commands_and_routes_that_exist(tmp_path: Path) -> None:
    commands = readme_commands()
    assert len(commands) >= 15 and ["query", "sparql"] in commands
    runner = CliRunner()
    for argv in commands:
        res = runner.invoke(cli, [*argv, "--help"])
        assert res.exit_code == 0, f"README command `autocnc {' '.join(argv)}`: {res.output}"
    from api.app import create_app

    api = create_app(Settings(data_dir=tmp_path))
    paths = api.openapi()["paths"]
    routes = readme_routes()
    assert len(routes) >= 12
    for method, path in routes:
        path = re.sub(r"\{[^}]*\}", "{x}", path)
        known = {re.sub(r"\{[^}]*\}", "{x}", p): ops for p, ops in paths.items()}
        assert method.lower() in known.get(path, {}), f"README route {method} {path}"


@pytest.fixture
def demo_graph(kg: KnowledgeGraph) -> KnowledgeGraph:
    kg.write(generate_demo(7).batch)
    return kg


@pytest.mark.parametrize(("lang", "at_least"), [("cypher", 4), ("sparql", 2)])
def test_query_examples_in_the_docs_run(demo_graph: KnowledgeGraph, lang: str,
                                        at_least: int) -> None:
    found = examples(lang)
    assert len(found) >= at_least
    run = demo_graph.cypher if lang == "cypher" else demo_graph.sparql
    for where, query in found:
        try:
            run(query)
        except Exception as exc:  # name the example that broke
            raise AssertionError(f"{where}: {exc}") from exc
