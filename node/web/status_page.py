"""The node's read-only status page: ``/`` (HTML), ``/api/status`` (JSON), ``/healthz``, ``/metrics``.

A standard-library HTTP server on its own thread, reading the catalogue
through :mod:`storage.overview`, so an operator (or a monitor) sees what the
node received and why a study got no results, without logs or SQL. It never
writes, takes no input but ``?study=UID``, and escapes every catalogue value:
DICOM text comes from outside and may hold markup. Bound to loopback by
default (``[web] bind_address``): the page shows Patient IDs.
"""

from __future__ import annotations

import html
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from node.config import Settings
from storage.overview import overview, results_in_words, summary

log = logging.getLogger("node.web")

REFRESH_SECONDS = 10

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.4em 0 1.2em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.bad{color:#a40000;font-weight:600}.ok{color:#1a6b1a}code{font-size:12px}
h2{margin-top:1.6em;font-size:16px}
"""


def _e(value: Any) -> str:
    return html.escape("-" if value is None or value == "" else str(value))


def _row(cells: list[str], header: bool = False) -> str:
    tag = "th" if header else "td"
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "<table>" + _row([_e(h) for h in header], header=True) + "".join(_row(r) for r in rows) + "</table>"


def _study_html(study: dict[str, Any]) -> str:
    # Relative, so the page also works behind a path prefix (the harness proxy's /hipnode/).
    link = f'<a href="?study={_e(study["study_instance_uid"])}"><code>{_e(study["study_instance_uid"])}</code></a>'
    parts = [f"<h2>Study {link} [{_e(study['state'])}]</h2>",
             (f"<p>Patient {_e(study['patient_id'])}"
              + (f" ({_e(study['issuer_of_patient_id'])})" if study["issuer_of_patient_id"] else "")
              + f" · date {_e(study['study_date'])} · from "
             f"{_e(study['calling_aet'])} · {_e(study['description'])}</p>")]
    images = [[f"<code>{_e(i['sop_instance_uid'])}</code>", _e(i["modality"]),
               f'<span class="{"bad" if i["verdict"] == "not analysable" else "ok"}">{_e(i["verdict"])}</span>',
               _e(i.get("right")), _e(i.get("left")), _e(i.get("reason"))] for i in study["images"]]
    parts.append(_table(["image", "modality", "verdict", "right", "left", "reason"], images))
    if study["pairings"]:
        pairs = [[_e(p["side"]), f"<code>{_e(p['pre_sop_instance_uid'])}</code>", _e(p["pre_study_date"]),
                  _e(p["reason"])] for p in study["pairings"]]
        parts.append(_table(["side", "pre-op image", "pre-op date", "pairing decision"], pairs))
    if study["jobs"]:
        jobs = [[_e(j["id"]), _e(j["kind"]),
                 f'<span class="{"bad" if j["state"] == "failed" else ""}">{_e(j["state"])}</span>',
                 f"{_e(j['attempts'])}/{_e(j['max_attempts'])}", _e(j["fail_stage"]), _e(j["fail_reason"])]
                for j in study["jobs"]]
        parts.append(_table(["job", "kind", "state", "attempts", "failed at", "reason"], jobs))
    results = study["results"]
    if results["by_kind"]:
        made, sent = results_in_words(results)
        parts.append(f"<p>Results: {_e(made)}; deliveries: {_e(sent)}</p>")
    for dead in results["dead"]:
        parts.append(f'<p class="bad">Dead delivery {_e(dead["id"])} to {_e(dead["destination"])} after '
                     f'{_e(dead["attempts"])} attempts: {_e(dead["last_error"])} '
                     f"(<code>hipnode outbox retry {_e(dead['id'])}</code>)</p>")
    return "\n".join(parts)


def render_page(view: dict[str, Any], ae_title: str) -> str:
    """The overview as one self-contained HTML page (no scripts; refreshes itself)."""
    totals = view["summary"]
    counts = [[_e(name), _e(", ".join(f"{n} {state}" for state, n in totals[name].items()))]
              for name in ("studies", "jobs", "deliveries")]
    counts.append(["images", _e(f"{totals['images_received']} received, "
                                f"{totals['images_not_analysable']} not analysable")])
    studies = "\n".join(_study_html(s) for s in view["studies"]) or "<p>No studies received yet.</p>"
    return (f"<!doctype html><html><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">"
            f"<title>HipNode {_e(ae_title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>HipNode {_e(ae_title)}</h1><p>As of {_e(view['generated_at'])} (UTC). "
            f"Research software, not a certified medical device.</p>"
            f"{_table(['', 'now'], counts)}{studies}</body></html>")


def render_metrics(totals: dict[str, Any]) -> str:
    """The catalogue's totals in the Prometheus text format (gauges: they are counts of rows now)."""
    lines: list[str] = []

    def gauge(name: str, help_text: str, values: dict[str, int] | int) -> None:
        lines.extend([f"# HELP hipnode_{name} {help_text}", f"# TYPE hipnode_{name} gauge"])
        if isinstance(values, dict):
            lines.extend(f'hipnode_{name}{{state="{state}"}} {n}' for state, n in values.items())
        else:
            lines.append(f"hipnode_{name} {values}")

    gauge("studies", "Studies in the catalogue by completion state.", totals["studies"])
    gauge("images_received", "Images received (the node's own results excluded).", totals["images_received"])
    gauge("images_not_analysable", "Received images the pipeline refused, each with a stored reason.",
          totals["images_not_analysable"])
    gauge("jobs", "Analysis jobs by state.", totals["jobs"])
    gauge("deliveries", "Result deliveries by state (dead: needs an operator).", totals["deliveries"])
    gauge("results", "Result objects the node produced.", totals["results"])
    return "\n".join(lines) + "\n"


class StatusPage:
    """Serve the status page on its own thread; ``start()`` / ``stop()`` like the node's other services."""

    def __init__(self, settings: Settings, session_factory: sessionmaker) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1]) if self.server is not None else self.settings.web.port

    def view(self, study_uid: str | None = None) -> dict[str, Any]:
        with self.session_factory() as session:
            return overview(session, limit=self.settings.web.studies_shown, study_uid=study_uid)

    def totals(self) -> dict[str, Any]:
        with self.session_factory() as session:
            return summary(session)

    def healthy(self) -> bool:
        with self.session_factory() as session:
            return session.execute(text("SELECT 1")).scalar() == 1

    def start(self) -> None:
        page = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "HipNode"

            def do_GET(self) -> None:  # the http.server name
                url = urlsplit(self.path)
                study = (parse_qs(url.query).get("study") or [None])[0]
                try:
                    if url.path == "/healthz":
                        ok = page.healthy()
                        self._send(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, "application/json",
                                   json.dumps({"status": "ok" if ok else "catalogue unreachable"}))
                    elif url.path == "/metrics":
                        self._send(HTTPStatus.OK, "text/plain; version=0.0.4; charset=utf-8",
                                   render_metrics(page.totals()))
                    elif url.path == "/api/status":
                        self._send(HTTPStatus.OK, "application/json", json.dumps(page.view(study), indent=1))
                    elif url.path == "/":
                        self._send(HTTPStatus.OK, "text/html; charset=utf-8",
                                   render_page(page.view(study), page.settings.ae_title))
                    else:
                        self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", "not found\n")
                except Exception as exc:  # a status page must answer, and say why it cannot
                    log.exception("status page failed", extra={"path": url.path})
                    self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8",
                               f"status unavailable: {type(exc).__name__}: {exc}\n")

            def _send(self, status: HTTPStatus, content_type: str, body: str) -> None:
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # the http.server signature
                log.debug("http " + format, *args)

        web = self.settings.web
        self.server = ThreadingHTTPServer((web.bind_address, web.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="status-page", daemon=True)
        self.thread.start()
        log.info("status page listening", extra={"bind": web.bind_address, "port": self.port})

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None
