"""The harness stack as one context manager.

``HarnessStack(StackOptions(...))`` starts, inside a private network namespace:
the receiver the routing sends to (DCMTK ``storescp`` standing in for the node,
or the real ``python -m node serve`` sending its results back to Orthanc),
Orthanc with the DICOMweb and Python plugins and ``routing.py``, and optionally
the one-origin proxy in front of OHIF. Leaving the ``with`` block stops every
process group and removes the temp dir, whatever failed; logs are copied to
``artifacts_dir`` first so a CI failure can be read.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.netns import NetNamespace
from harness.orthanc import ORTHANC_BINARY, OrthancClient, orthanc_config, write_config
from harness.processes import ProcessGroup, die_with_parent, wait_for

HARNESS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = HARNESS_DIR.parent
CACHE_DIR = HARNESS_DIR / ".cache"
OHIF_DIST = CACHE_DIR / "ohif" / "dist"
APP_CONFIG = HARNESS_DIR / "app-config.js"
PROXY_SCRIPT = HARNESS_DIR / "proxy.py"
VIEWER_DIR = HARNESS_DIR / "viewer"

ORTHANC_AET = "ORTHANC"
ORTHANC_DICOM_PORT = 4242
ORTHANC_HTTP_PORT = 8042
NODE_PORT = 11112
NODE_WEB_PORT = 8080  # the node's status page, proxied under /hipnode/ with the viewer
PROXY_PORT = 3000
LOOPBACK = "127.0.0.1"


@dataclass
class StackOptions:
    """What to start. ``receiver="node"`` is the one-line switch from stand-in to the real node."""

    routing_mode: Literal["on-stored", "stable-study"] = "on-stored"
    receiver: Literal["storescp", "node"] = "storescp"
    node_aet: str = "HIPNODE"
    stable_age_s: int = 2
    viewer: bool = False
    # Where the proxy listens: None keeps it inside the namespace (tests); "127.0.0.1:3000"
    # puts it on the host (demo) while it still reaches Orthanc inside the namespace.
    host_listen: str | None = None
    artifacts_dir: Path | None = None
    keep_work_dir: bool = False
    node_extra_config: dict[str, object] = field(default_factory=dict)
    start_timeout_s: float = 30.0


class HarnessStack:
    """Start the stack on ``__enter__``; tear it all down on ``__exit__``."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.work_dir = Path(tempfile.mkdtemp(prefix="hipnode-harness-"))
        self.received_dir = self.work_dir / "received"
        # storescp writes a file in place, so one that is listed may still be half written; it
        # touches a marker here once the file is closed, and only marked files count as received.
        self.received_marks_dir = self.work_dir / "received-complete"
        self.processes = ProcessGroup(self.work_dir / "logs")
        self.netns = NetNamespace(self.processes)
        self.orthanc = OrthancClient(self.netns, f"http://{LOOPBACK}:{ORTHANC_HTTP_PORT}")
        self.viewer_base_url: str | None = None

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> HarnessStack:
        try:
            self.netns.start()
            self._start_receiver()
            self._start_orthanc()
            if self.options.viewer:
                self._start_proxy()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything (newest first), keep the logs as artifacts, remove the temp dir."""
        try:
            self.processes.stop_all()
        finally:
            if self.options.artifacts_dir is not None and (self.work_dir / "logs").exists():
                target = self.options.artifacts_dir / "logs"
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(self.work_dir / "logs", target)
            if not self.options.keep_work_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- parts -----------------------------------------------------------------
    def _start_receiver(self) -> None:
        self.received_dir.mkdir(parents=True)
        opts = self.options
        if opts.receiver == "storescp":
            self.received_marks_dir.mkdir(parents=True)
            argv = ["storescp", "+xa", "--aetitle", opts.node_aet, "--output-directory", str(self.received_dir),
                    "--exec-on-reception", f"touch {self.received_marks_dir}/#f", str(NODE_PORT)]
            self.processes.start("receiver", self.netns.command(argv))
        else:
            config = {"destinations": [{"name": "orthanc", "ae_title": ORTHANC_AET, "host": LOOPBACK,
                                        "port": ORTHANC_DICOM_PORT}],
                      "web": {"enabled": True, "bind_address": LOOPBACK, "port": NODE_WEB_PORT},
                      **opts.node_extra_config}
            config_path = self.work_dir / "node.toml"
            config_path.write_text(_toml(config), encoding="utf-8")
            argv = [sys.executable, "-m", "node", "serve", "--aet", opts.node_aet, "--port", str(NODE_PORT),
                    "--bind", LOOPBACK, "--storage", str(self.received_dir), "--config", str(config_path)]
            self.processes.start("receiver", self.netns.command(argv), cwd=REPO_ROOT,
                                 env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        wait_for(lambda: self._alive("receiver") and self.echo(opts.node_aet, NODE_PORT),
                 opts.start_timeout_s, f"the {opts.receiver} receiver to answer C-ECHO")

    def _start_orthanc(self) -> None:
        opts = self.options
        config = orthanc_config(self.work_dir / "orthanc", aet=ORTHANC_AET, dicom_port=ORTHANC_DICOM_PORT,
                                http_port=ORTHANC_HTTP_PORT, routing_mode=opts.routing_mode,
                                node_aet=opts.node_aet, node_host=LOOPBACK, node_port=NODE_PORT,
                                stable_age_s=opts.stable_age_s)
        path = write_config(self.work_dir / "orthanc.json", config)
        if not ORTHANC_BINARY.exists():
            raise FileNotFoundError(f"{ORTHANC_BINARY} missing: run deploy/install-system-deps.sh")
        self.processes.start("orthanc", self.netns.command([str(ORTHANC_BINARY), str(path)]))
        wait_for(lambda: self._alive("orthanc") and self.orthanc.system(), opts.start_timeout_s,
                 "Orthanc's REST API")
        wait_for(lambda: "hipnode routing loaded" in self.processes.log_tail("orthanc", 100_000),
                 opts.start_timeout_s, "routing.py to load in Orthanc's Python plugin")

    def _start_proxy(self) -> None:
        if not (OHIF_DIST / "index.html").is_file():
            raise FileNotFoundError(f"{OHIF_DIST} has no OHIF build: run orthanc-test/install.sh")
        opts = self.options
        base = [sys.executable, str(PROXY_SCRIPT), "--upstream", f"http://{LOOPBACK}:{ORTHANC_HTTP_PORT}",
                "--dist", str(OHIF_DIST), "--app-config", str(APP_CONFIG)]
        if opts.receiver == "node":
            base += ["--node-upstream", f"http://{LOOPBACK}:{NODE_WEB_PORT}"]
        if opts.host_listen:
            argv = base + ["--listen", opts.host_listen, "--netns-pid", str(self.netns.holder_pid)]
            self.viewer_base_url = f"http://{opts.host_listen}"
            client = OrthancClient(None, self.viewer_base_url)
        else:
            argv = self.netns.command(base + ["--listen", f"{LOOPBACK}:{PROXY_PORT}"])
            self.viewer_base_url = f"http://{LOOPBACK}:{PROXY_PORT}"
            client = OrthancClient(self.netns, self.viewer_base_url)
        self.processes.start("proxy", argv)
        wait_for(lambda: self._alive("proxy") and client.request("GET", "/dicom-web/studies")[0] in (200, 204),
                 opts.start_timeout_s, "the OHIF proxy to reach Orthanc's DICOMweb")

    def _alive(self, name: str) -> bool:
        self.processes.check_alive(name)
        return True

    # -- actions ---------------------------------------------------------------
    def run(self, argv: list[str], timeout_s: float = 60.0, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and return its completed process (never raises on status).

        It gets its own process group, killed whole on timeout: a viewer script's
        Chromium must not outlive it.
        """
        proc = subprocess.Popen(self.netns.command(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, env=env, cwd=cwd, start_new_session=True,
                                preexec_fn=die_with_parent)
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise subprocess.TimeoutExpired(argv, timeout_s, stdout, stderr) from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers of a finished command
        return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)

    def echo(self, aet: str, port: int) -> bool:
        return self.run(["echoscu", "-to", "5", "-aec", aet, LOOPBACK, str(port)], timeout_s=15).returncode == 0

    def send_to_orthanc(self, files: list[Path], calling_aet: str = "MODALITY") -> None:
        """C-STORE ``files`` to Orthanc with DCMTK storescu (contexts proposed from the files: ``-R``)."""
        proc = self.run(["storescu", "-R", "-aet", calling_aet, "-aec", ORTHANC_AET, LOOPBACK,
                         str(ORTHANC_DICOM_PORT), *map(str, files)], timeout_s=120)
        if proc.returncode != 0 or "E:" in proc.stderr:
            raise RuntimeError(f"storescu failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    def received_files(self) -> list[Path]:
        """Files the stand-in receiver has written and closed (storescp only)."""
        done = {p.name for p in self.received_marks_dir.glob("*")} if self.received_marks_dir.is_dir() else set()
        return sorted(p for p in self.received_dir.rglob("*") if p.is_file() and p.name in done)

    def viewer_env(self) -> dict[str, str]:
        return {**os.environ, "NODE_PATH": str(CACHE_DIR / "node_modules")}


def _toml(config: dict[str, object]) -> str:
    """Just enough TOML for the node's config (top-level scalars, tables of scalars, lists of tables)."""
    lines, tables = [], []
    for key, value in config.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                tables.append(f"[[{key}]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in item.items()))
        elif isinstance(value, dict):
            tables.append(f"[{key}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in value.items()))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n" + "\n".join(tables)
