"""``autocnc alerts resync``: reconcile the graph with the alerts Alertmanager holds now.

Through the running server (``POST /v1/alerts/resync``) when it holds the data directory;
otherwise the CLI opens the stores and writes through the same receiver itself.
"""

from __future__ import annotations

from typing import Any

import typer

from api.cli_context import http, server, settings
from api.output import JsonFlag, Output, chosen, emit_doc, stdout
from kg.errors import ConfigError

alerts_app = typer.Typer(help="Alerts from Alertmanager (the webhook receiver is "
                              "`autocnc serve`; rule files: `autocnc ingest alerts`).",
                         no_args_is_help=True)


@alerts_app.command("resync")
def resync(output: Output = None, as_json: JsonFlag = False) -> None:
    """Reconcile the graph with the alerts Alertmanager holds now (setting alertmanager_url,
    AUTOCNC_ALERTMANAGER_URL): create the firing alerts the graph lacks (joining incidents
    as delivered ones do), close the occurrences it no longer holds, leave the rest; prints
    the counts. The server does this on start-up and every alertmanager_resync_s seconds."""
    fmt = chosen(output, json_flag=as_json)
    s = settings()
    if (info := server(s)) is not None:  # the server's own settings apply
        outcome = http(info, "POST", "/v1/alerts/resync").json()
    elif not s.alertmanager_url:
        raise ConfigError("the resync needs alertmanager_url (AUTOCNC_ALERTMANAGER_URL) and "
                          "alertmanager_scope or default_scope")
    else:
        from api.alert_resync import resync_locally

        outcome = resync_locally(s)
    emit_doc(fmt, outcome, human=_print)


def _print(outcome: Any) -> None:
    c, am = outcome["counts"], outcome["alertmanager"]
    stdout.print(f"Alertmanager {am['version'] or '(version unknown)'}: {am['alerts']} "
                  "alerts held, "
                  f"{am['toAutocnc']} routed to AutoCNC (receivers "
                  f"{', '.join(outcome['receivers']) or 'all'})")
    stdout.print(f"created {c['created']}, closed {c['closedMissing']} missing and "
                  f"{c['closedRefired']} refired, reopened {c['reopened']}, unchanged "
                  f"{c['unchanged']}, suppressed {c['suppressed']}, deferred {c['deferred']} "
                  f"in {outcome['durationS']:.2f} s")
    for problem in outcome["problems"]:
        stdout.print(f"[yellow]note:[/yellow] {problem}")
