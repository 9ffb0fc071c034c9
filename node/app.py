"""The Node: catalogue + file store + Storage SCP + completion service + outbox sender.

``Node(settings).start()`` migrates the catalogue (Alembic ``upgrade head``),
removes leftover receive buffers, re-indexes object files that have no row,
requeues jobs a dead process left running, then starts the analysis worker
processes, the completion service, the SCP, the sender and (when enabled)
the status page; :meth:`Node.run`
blocks until SIGTERM/SIGINT and stops them in reverse order.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
from typing import Any

from pynetdicom import AE
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from node.config import Settings
from node.jobs.queue import recover_interrupted
from node.jobs.worker import WorkerPool
from node.network.ae import start_scp
from node.network.ingest import Ingestor
from storage import catalogue
from storage.db import make_engine, make_session_factory
from storage.filestore import FileStore
from storage.migrate import upgrade_to_head

log = logging.getLogger("node.app")


def _optional_service(module_name: str, class_name: str, settings: Settings,
                      session_factory: sessionmaker) -> Any | None:
    """Build a colleague's service if its module exists; log clearly when it does not."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            log.warning("service not available: module missing", extra={"service_module": module_name})
            return None
        raise
    return getattr(module, class_name)(settings, session_factory)


class Node:
    """One node process; start, then :meth:`run` (or :meth:`stop` from a test)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.session_factory: sessionmaker | None = None
        self.filestore: FileStore | None = None
        self.ingestor: Ingestor | None = None
        self.completion: Any | None = None
        self.sender: Any | None = None
        self.workers: WorkerPool | None = None
        self.ae: AE | None = None
        self.server: ThreadedAssociationServer | None = None
        self.receivers: Any | None = None
        self.web: Any | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        settings = self.settings
        settings.storage_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.effective_database_url)
        revision = upgrade_to_head(self.engine)
        self.session_factory = make_session_factory(self.engine)
        self.filestore = FileStore(settings.storage_dir, settings.max_storage_bytes, settings.direct_io)
        removed = self.filestore.prepare()
        indexed, unreadable = catalogue.reindex(self.session_factory, self.filestore.root,
                                                lambda: list(self.filestore.iter_objects()))  # type: ignore[union-attr]
        with self.session_factory() as session:
            self.filestore.set_used_bytes(catalogue.stored_bytes(session))
        log.info("storage ready", extra={
            "storage_dir": str(self.filestore.root), "schema_revision": revision,
            "temp_files_removed": removed, "reindexed": indexed, "unreadable": unreadable,
            "used_bytes": self.filestore.used_bytes,
        })

        recover_interrupted(self.session_factory)
        if settings.workers > 0:
            self.workers = WorkerPool(settings)
            self.workers.start()

        self.completion = _optional_service("node.completion.service", "CompletionService", settings,
                                            self.session_factory)
        if self.completion is not None:
            if self.workers is not None:
                self.completion.on_completed(self.workers.wake)
            self.completion.start()
        on_stored = self.completion.on_instance_stored if self.completion is not None else None
        self.ingestor = Ingestor(self.filestore, self.session_factory, on_stored=on_stored)
        if settings.receiver_process_count > 1:
            from node.network.receivers import ReceiverPool

            # Before the main SCP listens: once the node answers, every receiver shares the port.
            self.receivers = ReceiverPool(settings, on_stored)
            self.receivers.start(settings.receiver_process_count - 1)
        shared_count = None
        if self.receivers is not None:
            from node.network.association_limit import SharedAssociationCount

            shared_count = SharedAssociationCount(self.receivers.association_counts, 0)
        self.ae, self.server = start_scp(settings, self.ingestor, shared_count)
        self.sender = _optional_service("node.sender.service", "OutboxSender", settings, self.session_factory)
        if self.sender is not None:
            self.sender.start()
            if self.workers is not None:
                self.workers.on_results(self.sender.wake)
        if settings.web.enabled:
            from node.web.status_page import StatusPage

            self.web = StatusPage(settings, self.session_factory)
            self.web.start()
        log.info("node listening", extra={
            "ae_title": settings.ae_title, "bind": settings.bind_address, "port": self.port,
            "tls": settings.tls.enabled, "allowed_calling_aets": ",".join(settings.allowed_calling_aets) or "*",
            "max_associations": settings.maximum_associations,
            "receiver_processes": settings.receiver_process_count,
            "completion": self.completion is not None, "sender": self.sender is not None,
            "workers": settings.workers, "status_page_port": self.web.port if self.web is not None else None,
        })

    @property
    def port(self) -> int:
        if self.server is None:
            return self.settings.port
        return int(self.server.server_address[1])

    def stop(self) -> None:
        """Stop accepting, finish in-flight work, stop the services, close the database."""
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        if self.receivers is not None:
            self.receivers.stop()
            self.receivers = None
        for service in (self.web, self.sender, self.completion):
            if service is not None:
                try:
                    service.stop()
                except Exception:
                    log.exception("service stop failed", extra={"service": type(service).__name__})
        self.web = self.sender = self.completion = None
        if self.workers is not None:
            self.workers.stop()
            self.workers = None
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
        log.info("node stopped")

    def request_stop(self, *_args: object) -> None:
        self._stop.set()

    def handle_stop_signals(self) -> None:
        """SIGTERM and SIGINT request a clean stop (main thread only).

        Call it before :meth:`start`: a signal during start-up (systemd stopping a unit
        that is still starting) then stops the node cleanly once it is up, instead of
        the default action killing it half-started.
        """
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> None:
        """Block until SIGTERM or SIGINT (or :meth:`request_stop`), then stop."""
        self.handle_stop_signals()
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()
