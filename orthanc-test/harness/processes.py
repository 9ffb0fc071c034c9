"""Processes the harness starts: each in its own process group, logged to a file,
recorded in ``pids.txt``, and stopped in reverse order whatever happened."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class ProcessExited(RuntimeError):
    """A harness process died; polling for it to become ready is pointless."""


class ProcessGroup:
    """Start named child processes and guarantee they are all gone on :meth:`stop_all`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: Sequence[str], *, stdout: int | None = None,
              env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a new session (its own process group); stderr (and stdout) go to ``name.log``."""
        log = open(self.log_dir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(list(argv), stdout=stdout if stdout is not None else log, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=cwd,
                                    preexec_fn=die_with_parent)
        finally:
            log.close()
        self._procs.append((name, proc))
        with open(self.log_dir / "pids.txt", "a", encoding="utf-8") as pids:
            pids.write(f"{proc.pid} {name} {' '.join(argv)}\n")
        return proc

    def get(self, name: str) -> subprocess.Popen[bytes]:
        for proc_name, proc in self._procs:
            if proc_name == name:
                return proc
        raise KeyError(name)

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def check_alive(self, name: str) -> None:
        """Raise with the log tail when ``name`` has exited."""
        proc = self.get(name)
        if proc.poll() is not None:
            raise ProcessExited(f"{name} exited with status {proc.returncode}:\n{self.log_tail(name)}")

    def stop(self, name: str, timeout_s: float = 10.0) -> None:
        for proc_name, proc in list(self._procs):
            if proc_name == name:
                _terminate(proc, timeout_s)
                self._procs.remove((proc_name, proc))

    def stop_all(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every process group at once (Orthanc takes ~2 s), then SIGKILL what is left."""
        procs, self._procs = self._procs[::-1], []
        for _name, proc in procs:
            _signal_group(proc, signal.SIGTERM)
        for _name, proc in procs:
            _terminate(proc, timeout_s)


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the harness process dies, even by SIGKILL.

    ``finally`` blocks do not run when the test runner itself is killed (a CI
    timeout); this kernel hook still stops Orthanc, the receiver and the proxy.
    """
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _signal_group(proc, sig)
        try:
            proc.wait(timeout=timeout_s)
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.stdout is not None:
        proc.stdout.close()


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.1) -> object:
    """Poll ``predicate`` until it returns a truthy value; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ProcessExited:
            raise
        except Exception as exc:  # a peer still starting answers with errors
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}{detail}")
        time.sleep(interval_s)
