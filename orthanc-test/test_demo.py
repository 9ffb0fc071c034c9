"""``hipnode demo`` end to end (stand-in results): it prints a working viewer URL and leaves nothing behind."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from harness.stack import REPO_ROOT

pytestmark = [pytest.mark.harness, pytest.mark.usefixtures("harness_installed")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_prints_the_viewer_url_and_cleans_up() -> None:
    port = _free_port()
    proc = subprocess.run([sys.executable, "-m", "node", "demo", "--stand-in", "--pair", "simple", "--exit-after-results",
                           "--results-timeout", "60", "--listen", f"127.0.0.1:{port}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SEG x1" in proc.stdout and "SR x1" in proc.stdout and "OT x1" in proc.stdout
    assert f"http://127.0.0.1:{port}/viewer?StudyInstanceUIDs=" in proc.stdout
    with socket.socket() as s:  # the proxy is gone: nobody listens on the port any more
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of its connections is fine
        s.bind(("127.0.0.1", port))
        s.listen()
