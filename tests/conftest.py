"""Shared fixtures: free ports, polling, synthetic DICOM, and a real node subprocess.

* ``free_port()`` / ``free_port`` fixture: a TCP port the OS just handed out.
* ``wait_for(predicate, timeout=..., msg=...)``: poll instead of sleeping.
* ``dx_factory(tmp_path / "a.dcm", rows=64, ...)``: write a synthetic DX/CR file
  (``tests.factories.make_dx`` keyword arguments).
* ``start_node(config={...}, storage=None, env=None)``: a ``python -m node serve``
  subprocess on a free port, waited for until it answers; returns a
  :class:`NodeProcess` (``port``, ``storage``, ``log()``, ``kill()``, ``stop()``,
  ``restart()``, ``session()``). Every node is killed at teardown.
* ``require_tool("storescu")``: the DCMTK/dicom3tools binary, or a clear failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.outside_tools import which_outside_venv

REPO_ROOT = Path(__file__).resolve().parent.parent

NO_WORKERS = {"HIPNODE_WORKERS": "0"}
"""``start_node(env=NO_WORKERS)``: a node that catalogues but runs no analysis processes."""


def free_port() -> int:
    """A TCP port free right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.05,
    msg: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {msg}")
        time.sleep(interval)


def require_tool(name: str) -> str:
    """Path of an outside tool the tests drive; fails (never skips) when it is missing."""
    path = which_outside_venv(name)
    if path is None:
        raise AssertionError(f"{name} not found: install DCMTK/dicom3tools (make test does)")
    return path


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class NodeProcess:
    """``python -m node serve`` as a real subprocess with its own storage directory."""

    def __init__(
        self,
        storage: Path,
        *,
        config: dict[str, Any] | None = None,
        ae_title: str = "HIPNODE",
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.storage = storage
        self.ae_title = ae_title
        self.port = free_port()
        self.config_path: Path | None = None
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.preexec_fn = preexec_fn
        if config:
            from node.commands.config import to_toml

            self.config_path = storage.parent / f"{storage.name}-config.toml"
            self.config_path.write_text(to_toml(config), encoding="utf-8")
        self.log_path = storage.parent / f"{storage.name}-node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._engine: Any = None

    @property
    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "node",
            "serve",
            "--storage",
            str(self.storage),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--aet",
            self.ae_title,
        ]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return cmd

    def start(self, timeout: float = 60.0) -> NodeProcess:
        log_offset = len(self.log())
        log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec_fn,
        )
        log_file.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            # The node logs this after its socket listens. (No probe connection: an idle
            # TCP connect would hold an association slot until the ACSE timeout.)
            return "node listening" in self.log()[log_offset:]

        wait_for(ready, timeout=timeout, msg="the node to listen")
        return self

    def log(self) -> str:
        return (
            self.log_path.read_text(encoding="utf-8", errors="replace")
            if self.log_path.exists()
            else ""
        )

    def kill(self) -> None:
        """SIGKILL: no clean-up code runs (the crash the durability tests need)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def restart(self) -> NodeProcess:
        self.stop()
        return self.start()

    @property
    def database_url(self) -> str:
        return f"sqlite:///{(self.storage / 'hipnode.sqlite3').resolve()}"

    def session(self) -> Any:
        """A SQLAlchemy session on the node's catalogue (the caller closes it)."""
        from storage.db import make_engine, make_session_factory

        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return make_session_factory(self._engine)()

    def close(self) -> None:
        self.kill()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


@pytest.fixture(name="free_port")
def free_port_fixture() -> int:
    return free_port()


@pytest.fixture()
def dx_factory() -> Callable[..., Path]:
    """``dx_factory(path, **make_dx_kwargs) -> path``: a synthetic DX/CR Part 10 file."""
    from tests.factories import write_dx

    return write_dx


@pytest.fixture()
def start_node(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """Factory for node subprocesses; all are killed at teardown."""
    nodes: list[NodeProcess] = []

    def _start(
        config: dict[str, Any] | None = None, storage: Path | None = None, **kwargs: Any
    ) -> NodeProcess:
        node = NodeProcess(storage or tmp_path / f"node{len(nodes)}", config=config, **kwargs)
        nodes.append(node)
        return node.start()

    yield _start
    for node in nodes:
        node.close()


def storescu_responses(output: str) -> dict[str, str]:
    """Map each file storescu ``-v`` sent to the response it logged ("Success", "Refused: ...").

    Files whose response never arrived (connection dropped) map to ``""``.
    """
    responses: dict[str, str] = {}
    current: str | None = None
    for line in output.splitlines():
        if "Sending file: " in line:
            current = line.split("Sending file: ", 1)[1].strip()
            responses[current] = ""
        elif "Received Store Response" in line and current is not None:
            text = line.split("Received Store Response", 1)[1].strip()
            responses[current] = text.strip("()").strip() or text
            current = None
    return responses


def start_storescu_senders(node: NodeProcess, batches: list[list[Path]]) -> list[subprocess.Popen[str]]:
    """One ``storescu -v`` per batch, in parallel, to a running node; read them with :func:`storescu_responses`."""
    return [
        subprocess.Popen(
            [require_tool("storescu"), "-v", "-aec", node.ae_title, "127.0.0.1", str(node.port), *map(str, batch)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for batch in batches
    ]
