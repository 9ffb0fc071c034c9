"""Extra receiver processes: more C-STORE throughput than one Python process (GIL) gives.

The node's main process runs one SCP; with ``receiver_processes = N`` (default
``"auto"``: one per usable core, at most 4) it also
spawns N-1 processes that bind the same port with SO_REUSEPORT and run only the
SCP and the ingest path (same file store, same catalogue). Each stored instance
is reported back over a queue so the main process's completion service hears
of it. The children die with the main process (PR_SET_PDEATHSIG), so a killed
node never leaves a receiver listening on its port.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing as mp
import queue
import signal
import threading
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from typing import Any

log = logging.getLogger("node.receivers")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _receiver_main(
    settings_data: dict[str, Any],
    log_level: str,
    json_lines: bool,
    notify: Any,
    ready: Any,
    stop: Any,
    association_counts: Any,
    index: int,
) -> None:
    """Entry point of one extra receiver process."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    from node.config import Settings
    from node.logging_setup import configure_logging
    from node.network.ae import start_scp
    from node.network.association_limit import SharedAssociationCount
    from node.network.ingest import Ingestor
    from storage import catalogue
    from storage.db import make_engine, make_session_factory
    from storage.filestore import FileStore

    configure_logging(log_level, json_lines=json_lines)
    settings = Settings(**settings_data)
    engine = make_engine(settings.effective_database_url)
    session_factory = make_session_factory(engine)
    filestore = FileStore(settings.storage_dir, settings.max_storage_bytes, settings.direct_io)
    with session_factory() as session:
        filestore.set_used_bytes(catalogue.stored_bytes(session))

    def on_stored(study_uid: str, expected_view: bool) -> None:
        notify.put((study_uid, expected_view))

    ingestor = Ingestor(filestore, session_factory, on_stored=on_stored)
    _ae, server = start_scp(settings, ingestor, SharedAssociationCount(association_counts, index))
    # The handler only flips a flag: touching the multiprocessing Event from a signal
    # handler while the main thread waits on it deadlocks (its lock is not reentrant).
    terminated = False

    def _on_sigterm(*_args: object) -> None:
        nonlocal terminated
        terminated = True

    signal.signal(signal.SIGTERM, _on_sigterm)
    ready.set()
    while not terminated and not stop.wait(0.5):
        pass
    server.shutdown()
    engine.dispose()


class ReceiverPool:
    """The N-1 extra receiver processes and the thread relaying their notifications."""

    def __init__(self, settings: Any, on_stored: Callable[[str, bool], None] | None) -> None:
        self.settings = settings
        self.on_stored = on_stored
        self._context = mp.get_context("spawn")
        self._notify = self._context.Queue()
        self._stop = self._context.Event()
        self._processes: list[SpawnProcess] = []
        # Open connections per process (slot 0: the main process), for the node-wide limit.
        self.association_counts = self._context.RawArray("i", settings.receiver_process_count)
        self._relay: threading.Thread | None = None

    def start(self, count: int, timeout: float = 60.0) -> None:
        root = logging.getLogger()
        json_lines = any(type(h.formatter).__name__ == "JsonFormatter" for h in root.handlers)
        data = self.settings.model_dump(mode="json")
        # The children share the port whatever "auto" would resolve to in them.
        data["receiver_processes"] = self.settings.receiver_process_count
        readies = []
        for index in range(count):
            ready = self._context.Event()
            process = self._context.Process(
                target=_receiver_main,
                name=f"hipnode-receiver-{index + 1}",
                daemon=True,
                args=(
                    data,
                    logging.getLevelName(root.level),
                    json_lines,
                    self._notify,
                    ready,
                    self._stop,
                    self.association_counts,
                    index + 1,
                ),
            )
            process.start()
            self._processes.append(process)
            readies.append(ready)
        self._relay = threading.Thread(target=self._relay_loop, name="receiver-relay", daemon=True)
        self._relay.start()
        for process, ready in zip(self._processes, readies):
            if not ready.wait(timeout):
                raise RuntimeError(f"{process.name} did not start listening within {timeout:.0f} s")
        log.info(
            "receiver processes listening",
            extra={"count": count, "pids": ",".join(str(p.pid) for p in self._processes)},
        )

    def _relay_loop(self) -> None:
        while True:
            try:
                item = self._notify.get(timeout=0.5)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            except (EOFError, OSError):
                return
            if item is None:
                return
            if self.on_stored is not None:
                try:
                    self.on_stored(*item)
                except Exception:
                    log.exception("relaying a stored instance failed")

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for process in self._processes:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(5)
        self._processes.clear()
        if self._relay is not None:
            self._relay.join(5)
            self._relay = None
