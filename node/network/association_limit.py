"""One association limit for the whole node, however many receiver processes share its port.

pynetdicom counts only its own process's associations against
``maximum_associations``. With several receiver processes (SO_REUSEPORT) each
would admit the full limit, so the node would take N times what its settings
say. Each process here publishes how many connections it holds in one slot
of a shared array, and the AE's limit is what the other processes leave over.
Two processes accepting in the same instant may both pass (a race the kernel's
connection spreading makes rare); the limit is never undercounted otherwise.
"""

from __future__ import annotations

import threading
from typing import Any

from pynetdicom import AE, evt


class SharedAssociationCount:
    """This process's open connections, published in slot ``index`` of a shared int array."""

    def __init__(self, counts: Any, index: int) -> None:
        self._counts = counts  # multiprocessing RawArray("i", processes)
        self._index = index
        self._open: set[int] = set()
        self._lock = threading.Lock()

    def on_open(self, event: evt.Event) -> None:
        with self._lock:
            self._open.add(id(event.assoc))
            self._counts[self._index] = len(self._open)

    def on_close(self, event: evt.Event) -> None:
        with self._lock:  # a set: a close reported twice still counts once
            self._open.discard(id(event.assoc))
            self._counts[self._index] = len(self._open)

    def held_by_others(self) -> int:
        return sum(c for i, c in enumerate(self._counts) if i != self._index)


class NodeWideLimitAE(AE):
    """An AE whose ``maximum_associations`` leaves out what the node's other processes hold."""

    shared_count: SharedAssociationCount | None = None

    @property  # type: ignore[override]
    def maximum_associations(self) -> int:
        limit = int(self._maximum_associations)
        if self.shared_count is None:
            return limit
        # pynetdicom rejects when its own acceptors (the new one included) exceed this.
        return limit - self.shared_count.held_by_others()

    @maximum_associations.setter
    def maximum_associations(self, value: int) -> None:
        AE.maximum_associations.fset(self, value)  # type: ignore[attr-defined]
