"""One-origin server for the OHIF viewer: static ``dist/`` plus a reverse proxy to
Orthanc's DICOMweb (``/dicom-web``) and WADO-URI (``/wado``). Standard library only.

With ``--node-upstream``, ``/hipnode/...`` is proxied (prefix stripped) to the
node's read-only status page, so the same origin shows what the node made of
each study. One origin means no CORS configuration; the cross-origin isolation headers let
OHIF use SharedArrayBuffer. With ``--netns-pid`` the listening socket is opened
on the host first, then the process joins that network namespace, so a person's
browser reaches a stack whose Orthanc lives in a private namespace.

Usage: python proxy.py --listen 127.0.0.1:3000 --upstream http://127.0.0.1:8042
       --dist DIR --app-config FILE [--netns-pid PID]
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import mimetypes
import os
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PROXIED = ("/dicom-web", "/wado")
NODE_PREFIX = "/hipnode"
PAGE_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
FORWARDED_REQUEST_HEADERS = ("Accept", "Accept-Encoding", "Content-Type", "Range", "Host")
DROPPED_RESPONSE_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "server"}
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")


def fix_includefield(query: str) -> str:
    """Decode ``%2C`` inside ``includefield`` values: the DICOMweb plugin 1.7 splits on a literal comma only."""
    parts = []
    for item in query.split("&") if query else []:
        key, sep, value = item.partition("=")
        if key.lower() == "includefield":
            value = value.replace("%2C", ",").replace("%2c", ",")
        parts.append(key + sep + value)
    return "&".join(parts)


class Handler(BaseHTTPRequestHandler):
    """Static files with an SPA fallback to ``index.html``; DICOMweb proxied upstream."""

    server_version = "hipnode-harness-proxy"
    protocol_version = "HTTP/1.1"
    dist: Path
    app_config: Path
    upstream: urllib.parse.SplitResult
    node_upstream: urllib.parse.SplitResult | None = None

    def log_message(self, fmt: str, *args: object) -> None:  # quiet unless an error
        if args and str(args[1] if len(args) > 1 else "").startswith(("4", "5")):
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        if path.startswith(PROXIED):
            self._proxy(self.upstream, path, fix_includefield(query))
        elif self.node_upstream is not None and (path == NODE_PREFIX or path.startswith(NODE_PREFIX + "/")):
            self._proxy(self.node_upstream, path[len(NODE_PREFIX):] or "/", query)
        elif self.command in ("GET", "HEAD"):
            self._static(urllib.parse.unquote(path))
        else:
            self._reply(405, b"method not allowed", "text/plain")

    def _proxy(self, upstream: urllib.parse.SplitResult, path: str, query: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k in FORWARDED_REQUEST_HEADERS if (v := self.headers.get(k)) is not None}
        headers.pop("Accept-Encoding", None)  # keep bodies plain: we pass them through unchanged
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        try:
            conn.request(self.command, path + ("?" + query if query else ""), body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as exc:
            self._reply(502, f"upstream {upstream.netloc} unreachable: {exc}".encode(), "text/plain")
            return
        finally:
            conn.close()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in DROPPED_RESPONSE_HEADERS:
                self.send_header(key, value)
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _static(self, path: str) -> None:
        if path in ("/app-config.js",):
            target = self.app_config
        else:
            target = (self.dist / path.lstrip("/")).resolve()
            if not target.is_relative_to(self.dist) or not target.is_file():
                # App routes (/viewer, /segmentation, ...) are index.html; missing assets are 404.
                if "." in path.rsplit("/", 1)[-1]:
                    self._reply(404, b"not found", "text/plain")
                    return
                target = self.dist / "index.html"
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._reply(200, target.read_bytes(), ctype, PAGE_HEADERS)

    def _reply(self, status: int, data: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def join_netns(pid: int) -> None:
    """Move this (main) thread into the network namespace of ``pid``; later threads inherit it."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns failed (root or CAP_SYS_ADMIN needed)")
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:3000", help="HOST:PORT")
    parser.add_argument("--upstream", default="http://127.0.0.1:8042", help="Orthanc's HTTP root")
    parser.add_argument("--dist", type=Path, required=True, help="the OHIF dist/ folder")
    parser.add_argument("--app-config", type=Path, required=True, help="app-config.js to serve")
    parser.add_argument("--node-upstream", help="the node's status page root, served under /hipnode/")
    parser.add_argument("--netns-pid", type=int, help="reach the upstream inside this process's network namespace")
    args = parser.parse_args(argv)
    if not (args.dist / "index.html").is_file():
        parser.error(f"{args.dist} has no index.html: run orthanc-test/install.sh")
    host, _, port = args.listen.rpartition(":")
    Handler.dist = args.dist.resolve()
    Handler.app_config = args.app_config.resolve()
    Handler.upstream = urllib.parse.urlsplit(args.upstream)
    if args.node_upstream:
        Handler.node_upstream = urllib.parse.urlsplit(args.node_upstream)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    if args.netns_pid:
        join_netns(args.netns_pid)
    print(f"listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
