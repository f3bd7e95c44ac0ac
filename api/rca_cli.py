"""``autocnc rca`` and ``autocnc incidents list|show``.

Through the running server (``POST /v1/rca``, ``GET /v1/incidents``,
``GET /v1/incidents/{id}``) when it holds the data directory; otherwise the CLI opens the
stores itself (read-only unless ``rca --store``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.output import FormatAlias, Output, chosen, emit_rows, stdout, write_doc
from kg.errors import AutoCNCError

if TYPE_CHECKING:
    from kg.config import Settings

incidents_app = typer.Typer(help="Incidents: alerts grouped as Alertmanager groups them, "
                                 "each with its latest root-cause analysis.",
                            no_args_is_help=True)
ID_BASE = "https://w3id.org/autocnc/id/"  # the default IRI base (ontology.iri.DEFAULT_BASE)


def short(iri: Any) -> str:
    """An entity IRI in a table: without the default base (the JSON keeps the full IRI)."""
    text = "" if iri is None else str(iri)
    return text[len(ID_BASE):] if text.startswith(ID_BASE) else text


def rca(
    alerts: Annotated[Path | None, typer.Option(
        help="Alertmanager webhook payload (JSON) or a JSON list of its alerts")] = None,
    window: Annotated[tuple[str, str] | None, typer.Option(
        help="START END (ISO 8601 with zone): the firing alerts in the graph in this window")
    ] = None,
    incident: Annotated[str | None, typer.Option(help="IRI of an incident in the graph")
                        ] = None,
    scope: Annotated[str | None, typer.Option(
        help="cluster/network/site the alert labels belong to")] = None,
    store: Annotated[bool, typer.Option(help="store the result in the graph")] = False,
    limit: Annotated[str, typer.Option(
        help="candidates to show: a number >= 1, or 'all'")] = "10",
    reference: Annotated[tuple[str, str] | None, typer.Option(
        help="START END (ISO 8601 with zone): a known fault-free window to judge series "
             "against (default: the hour before the incident, cleaned of anomalies)")
    ] = None,
    output: Output = None,
    format: FormatAlias = None,
) -> None:
    """Rank the root causes of alerts (a file), an incident, or a time window.

    Each candidate comes with the evidence that makes it the origin (present, normal,
    unjudged or missing per kind), the deviating series and the paths that link it to the
    symptoms.

    -o csv prints one row per candidate; -o json / yaml the whole analysis."""
    fmt = chosen(output, format_alias=format)
    if limit != "all" and not (limit.isdigit() and int(limit) >= 1):
        raise typer.BadParameter(f"expected a number >= 1 or 'all', got {limit!r}",
                                 param_hint="'--limit'")
    body: dict[str, Any] = {"scope": scope, "store": store,
                            "limit": limit if limit == "all" else int(limit)}
    if reference is not None:
        body["reference"] = {"start": reference[0], "end": reference[1]}
    if sum(x is not None for x in (alerts, window, incident)) != 1:
        raise typer.BadParameter("give exactly one of --alerts, --window, --incident")
    if alerts is not None:
        try:
            doc = json.loads(alerts.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AutoCNCError(f"cannot read {alerts}: {exc}") from exc
        body["alerts"] = doc.get("alerts", []) if isinstance(doc, dict) else doc
        if not scope:
            raise typer.BadParameter("--alerts needs --scope: the cluster its labels "
                                     "belong to", param_hint="'--scope'")
    elif window is not None:
        body["window"] = {"start": window[0], "end": window[1]}
    else:
        body["incident"] = incident
    from api.cli_context import http, server, settings

    s = settings()
    if (info := server(s)) is not None:
        result = http(info, "POST", "/v1/rca", json=body).json()
    else:
        result = _rca_local(s, body)
    if fmt in ("json", "yaml"):
        write_doc(fmt, result)
        return
    rows = [[c["rank"], c["entity"] if fmt == "csv" else short(c["entity"]), c["kind"],
             round(c["score"], 6), c["hypothesis"], ", ".join(_evidence(c))]
            for c in result["candidates"]]
    columns = ["rank", "candidate", "type", "score", "hypothesis", "evidence"]
    if fmt == "csv":
        emit_rows(fmt, columns, rows)
        return
    emit_rows(fmt, columns, rows)
    shown, total = len(result["candidates"]), result.get("totalCandidates", 0)
    if total > shown:
        stdout.print(f"{shown} of {total} candidates (--limit all shows every one)")
    for problem in result.get("evidence", {}).get("problems", []):
        stdout.print(f"[yellow]evidence not read:[/yellow] {problem}", markup=True)
    if result["candidates"]:
        for path in result["candidates"][0]["paths"][:3]:
            hops = " <- ".join(short(e) for e in path["entities"][::-1])
            stdout.print(f"evidence: {path['symptomName']} at {path['at']}: {hops}",
                         markup=False)
    stdout.print(result["explanation"], markup=False)


def _evidence(c: Mapping[str, Any]) -> list[str]:
    if "evidenceKinds" in c:
        return [f"{k} {v['origin']:.2f}" for k, v in c["evidenceKinds"].items()
                if v["status"] == "present"]
    top = sorted(c["contributions"].items(), key=lambda kv: -kv[1])[:3]
    return [f"{k} {v:.2f}" for k, v in top if v]


def _rca_local(s: Settings, body: dict[str, Any]) -> dict[str, Any]:
    from api.cli_context import open_graph
    from kg.facts import utc
    from reasoning.rca import RCAService
    from reasoning.rca.evidence.prometheus import PrometheusSeries

    kg = open_graph(writer=bool(body["store"]))
    prometheus = None
    try:
        # series pulled from the operator's Prometheus too, as the server does
        prometheus = PrometheusSeries.from_settings(kg)
        svc = RCAService(kg, sources=[prometheus] if prometheus else [])
        if "alerts" in body:
            symptoms = svc.symptoms_from_alerts(body["alerts"], body["scope"])
        elif "window" in body:
            w = body["window"]
            symptoms = svc.symptoms_in_window(utc(w["start"], what="--window start"),
                                              utc(w["end"], what="--window end"),
                                              body["scope"])
        else:
            symptoms = svc.symptoms_of_incident(body["incident"])
        if not symptoms:
            raise AutoCNCError("no firing alerts found for this request")
        ref = body.get("reference")
        result = svc.analyse(
            symptoms, limit=None if body["limit"] == "all" else int(body["limit"]),
            reference=(utc(ref["start"], what="--reference start"),
                       utc(ref["end"], what="--reference end")) if ref else None)
        if body["store"]:
            svc.store(result, scope=body["scope"] or "default", incident=body.get("incident"))
        return result.to_json()
    finally:
        if prometheus is not None:
            prometheus.close()
        kg.close()


# -- incidents -----------------------------------------------------------------------------

STATUSES = ("open", "resolved", "all")
MAX_INCIDENTS = 1000  # the server's cap on one listing


def _incidents(incident_id: str | None, limit: int) -> list[dict[str, Any]]:
    """Incidents (newest first) from the running server, else from the store read-only."""
    from api.cli_context import http, open_graph, server, settings

    s = settings()
    if (info := server(s)) is not None:
        if incident_id is not None:
            from urllib.parse import quote

            return [http(info, "GET", "/v1/incidents/" + quote(incident_id, safe="")).json()]
        return list(http(info, "GET", "/v1/incidents", params={"limit": limit}).json())
    from api.incident_worker import incident_json

    kg = open_graph(writer=False)
    try:
        found = incident_json(kg, incident_id, limit=limit)
    finally:
        kg.close()
    if incident_id is not None and not found:
        raise AutoCNCError(f"no incident {incident_id} (`autocnc incidents list` shows them)")
    return found


def _is(status: str, incident: Mapping[str, Any]) -> bool:
    resolved = incident.get("status") == "resolved"
    return status == "all" or resolved == (status == "resolved")


def _top(incident: Mapping[str, Any]) -> Mapping[str, Any]:
    rca = incident.get("rca") or {}
    return (rca.get("candidates") or [{}])[0]


@incidents_app.command("list")
def incidents_list(
    status: Annotated[str, typer.Option(
        help="open (not resolved: open or analysed), resolved (also: closed), or all")
    ] = "all",
    limit: Annotated[int, typer.Option(min=1, max=MAX_INCIDENTS,
                                       help="at most this many, newest first")] = 100,
    output: Output = None,
) -> None:
    """List incidents, newest first, with the top root cause of their latest analysis.

    -o json / yaml: every field and the top candidates of each."""
    fmt = chosen(output)
    status = "resolved" if status == "closed" else status
    if status not in STATUSES:
        raise typer.BadParameter(f"{status!r}: expected open, resolved (closed) or all",
                                 param_hint="'--status'")
    # the server lists newest first without a status filter: ask for all it keeps, filter
    found = _incidents(None, limit if status == "all" else MAX_INCIDENTS)
    picked = [i for i in found if _is(status, i)][:limit]
    columns = ["id", "status", "start", "alerts", "top cause", "score", "group"]
    rows = []
    for i in picked:
        top = _top(i)
        cause = top.get("entity") if fmt == "csv" else short(top.get("entity"))
        rows.append([i["id"], i["status"], i["startTime"], i["alerts"], cause,
                     top.get("score"), i["groupKey"]])
    emit_rows(fmt, columns, rows, doc=picked, footer=f"{len(rows)} incident(s)")


@incidents_app.command("show")
def incidents_show(
    incident_id: Annotated[str, typer.Argument(
        metavar="ID", help="the incident's id (from `incidents list`) or its IRI")],
    output: Output = None,
) -> None:
    """Show one incident and the ranked candidates of its latest analysis.

    -o csv: one row per candidate."""
    fmt = chosen(output)
    inc = _incidents(incident_id, 1)[0]
    if fmt in ("json", "yaml"):
        write_doc(fmt, inc)
        return
    rca = inc.get("rca") or {}
    cands = rca.get("candidates") or []
    columns = ["rank", "candidate", "type", "score", "hypothesis"]
    if fmt == "csv":
        emit_rows(fmt, ["incident", *columns],
                  [[inc["iri"], c["rank"], c["entity"], c["kind"], c["score"],
                    c["hypothesis"]] for c in cands])
        return
    emit_rows("table", ["field", "value"], [
        ["id", inc["id"]], ["iri", inc["iri"]], ["status", inc["status"]],
        ["start", inc["startTime"]], ["alerts", inc["alerts"]], ["group", inc["groupKey"]],
        ["analysis", rca.get("iri")], ["analysed at", rca.get("generatedAt")]])
    if cands:
        emit_rows("table", columns, [[c["rank"], short(c["entity"]), c["kind"], c["score"],
                                      c["hypothesis"]] for c in cands])
    if rca.get("summary"):
        stdout.print(rca["summary"], markup=False)
    elif not rca:
        stdout.print("not analysed yet (analysis starts group_wait after the first alert)")
