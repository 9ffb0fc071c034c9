"""Deterministic UIDs for result objects, so that a re-run is idempotent.

A result's SOP Instance UID is a UUID5 of (kind, sorted input SOP Instance
UIDs, sorted model versions) written as a ``2.25`` UID: running the same
models on the same images again produces the same UID, which the catalogue
(``UNIQUE(sop_instance_uid)``) and any PACS deduplicate. New weights give a
new UID, hence a new object next to the old one, never a silent overwrite.

Series UIDs derive from (kind, study, model versions): every result of one
kind that one model version makes in one study lands in one series.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import highdicom as hd

from models.algorithms.results import AlgorithmInfo

# Fixed namespace of this project; never change it, or every UID changes.
NAMESPACE = uuid.UUID("0d3c5b8e-4a1f-5d7e-9c62-7b1f2e8a9c40")

RESULT_KINDS: tuple[str, ...] = ("seg", "sr", "sr_pair", "cdm_sc", "overlay_sc")


def _versions(algorithms: Iterable[AlgorithmInfo]) -> str:
    return ",".join(sorted(f"{a.name}={a.version}" for a in algorithms))


def _check_kind(kind: str) -> None:
    if kind not in RESULT_KINDS:
        raise ValueError(f"unknown result kind {kind!r}; expected one of {RESULT_KINDS}")


def instance_uid(kind: str, input_sop_uids: Iterable[str], algorithms: Iterable[AlgorithmInfo]) -> hd.UID:
    """SOP Instance UID of the ``kind`` result computed from these inputs by these models."""
    _check_kind(kind)
    inputs = sorted(str(u) for u in input_sop_uids)
    if not inputs:
        raise ValueError("a result needs at least one input SOP Instance UID")
    key = f"{kind}|{','.join(inputs)}|{_versions(algorithms)}"
    return hd.UID.from_uuid(str(uuid.uuid5(NAMESPACE, key)))


def series_uid(kind: str, study_uid: str, algorithms: Iterable[AlgorithmInfo]) -> hd.UID:
    """Series Instance UID of the ``kind`` results in ``study_uid`` for these models."""
    _check_kind(kind)
    key = f"series|{kind}|{study_uid}|{_versions(algorithms)}"
    return hd.UID.from_uuid(str(uuid.uuid5(NAMESPACE, key)))
