"""A private network namespace that holds only ``lo``.

Orthanc 1.10 cannot choose its listen address; inside this namespace it, the
receiver, the proxy and Chromium see only each other, so fixed ports never
collide with other runs or with processes on the host.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import threading
from collections.abc import Iterator, Sequence

from harness.processes import ProcessGroup

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET) failed: {os.strerror(err)} (root or CAP_SYS_ADMIN needed)")


class NetNamespace:
    """Create the namespace with a holder process; enter it per command or per thread."""

    def __init__(self, processes: ProcessGroup) -> None:
        self._processes = processes
        self.holder_pid: int | None = None

    def start(self) -> None:
        """Start ``unshare -n`` with a sleeping holder; fail loudly if namespaces are unavailable."""
        script = "ip link set lo up && echo ready && exec sleep infinity"
        proc = self._processes.start("netns", ["unshare", "--net", "--", "sh", "-c", script],
                                     stdout=subprocess.PIPE)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if line != "ready":
            raise RuntimeError(
                f"cannot create a private network namespace (unshare -n: {self._processes.log_tail('netns')}); "
                "the harness needs root or CAP_SYS_ADMIN")
        self.holder_pid = proc.pid

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped in ``nsenter`` so it runs inside the namespace (exec, no extra fork)."""
        if self.holder_pid is None:
            raise RuntimeError("namespace not started")
        return ["nsenter", "-t", str(self.holder_pid), "-n", "--", *argv]

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Move the calling thread into the namespace for the block.

        ``setns`` acts on the calling thread only, so other threads of the test
        process stay on the host. Sockets created inside keep the namespace.
        """
        if self.holder_pid is None:
            raise RuntimeError("namespace not started")
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(f"/proc/{self.holder_pid}/ns/net", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)
