"""C-STORE response statuses the node returns (PS3.4 Annex B.2.3, PS3.7 C.4.2)."""

from __future__ import annotations

import enum


class StoreStatus(enum.IntEnum):
    """Every status :func:`node.network.store_handler.handle_store` may return."""

    SUCCESS = 0x0000
    # Failure: Refused: Out of Resources (PS3.4 B.2.3): disk full, quota, size cap
    OUT_OF_RESOURCES = 0xA700
    # Failure: Out of Resources, other storage failure (I/O error that is not "full")
    STORAGE_FAILURE = 0xA701
    # Failure: Data Set does not match SOP Class (UIDs disagree with the command,
    # identifying attributes missing)
    DATASET_MISMATCH = 0xA900
    # Failure: Cannot understand (malformed, truncated, incomplete pixel data)
    CANNOT_UNDERSTAND = 0xC000
    # Failure: the catalogue could not be written (database locked or down)
    PROCESSING_FAILURE = 0x0110
