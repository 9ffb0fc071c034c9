"""What a C-STORE outcome means for an outbox row: done, retry later, or dead.

Two tables: DIMSE response statuses (PS3.7 Annex C, PS3.4 Annex B.2.3) and
failures that never produced a status (network, association, local file).
Warnings mean the object was stored; out-of-resources and network trouble may
pass; a peer that cannot understand or will not accept the object will refuse
it again, so those go to the dead-letter list for an operator.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    """What happens to the delivery row after one attempt."""

    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class StatusRule:
    """A closed range of DIMSE statuses with one outcome."""

    low: int
    high: int
    outcome: Outcome
    meaning: str


STATUS_TABLE: tuple[StatusRule, ...] = (
    # Success and warnings (PS3.4 B.2.3, PS3.7 C.1.1): the peer holds the object
    StatusRule(0x0000, 0x0000, Outcome.DONE, "Success"),
    StatusRule(0x0001, 0x0001, Outcome.DONE, "Warning"),
    StatusRule(0xB000, 0xB000, Outcome.DONE, "Warning: coercion of data elements"),
    StatusRule(0xB006, 0xB006, Outcome.DONE, "Warning: elements discarded"),
    StatusRule(0xB007, 0xB007, Outcome.DONE, "Warning: data set does not match SOP class"),
    StatusRule(0xB001, 0xBFFF, Outcome.DONE, "Warning (other)"),
    # Transient refusals (PS3.4 B.2.3, PS3.7 C.5): try again later
    StatusRule(0xA700, 0xA7FF, Outcome.RETRY, "Refused: out of resources"),
    StatusRule(0x0210, 0x0210, Outcome.RETRY, "Duplicate invocation"),
    StatusRule(0x0213, 0x0213, Outcome.RETRY, "Resource limitation"),
    StatusRule(0xFE00, 0xFE00, Outcome.RETRY, "Cancel"),
    # Permanent refusals: the same object would be refused again
    StatusRule(0xA900, 0xA9FF, Outcome.DEAD, "Error: data set does not match SOP class"),
    StatusRule(0xC000, 0xCFFF, Outcome.DEAD, "Error: cannot understand"),
    StatusRule(0x0117, 0x0117, Outcome.DEAD, "Invalid SOP instance"),
    StatusRule(0x0122, 0x0122, Outcome.DEAD, "SOP class not supported"),
    StatusRule(0x0124, 0x0124, Outcome.DEAD, "Not authorised"),
    StatusRule(0x0211, 0x0211, Outcome.DEAD, "Unrecognised operation"),
    StatusRule(0x0212, 0x0212, Outcome.DEAD, "Mistyped argument"),
)


class Failure(enum.StrEnum):
    """An attempt that ended without a DIMSE status."""

    CONNECTION_FAILED = "connection_failed"  # refused, unreachable, TCP/TLS timeout
    ASSOCIATION_REJECTED = "association_rejected"
    ASSOCIATION_ABORTED = "association_aborted"  # aborted or released before this object went
    NO_RESPONSE = "no_response"  # DIMSE timeout or invalid response
    NO_CONTEXT = "no_context"  # peer accepted no presentation context for the object
    FILE_UNREADABLE = "file_unreadable"  # missing, not DICOM, or holds another SOP instance
    UNKNOWN_DESTINATION = "unknown_destination"  # the row names no configured destination


FAILURE_TABLE: dict[Failure, Outcome] = {
    Failure.CONNECTION_FAILED: Outcome.RETRY,
    Failure.ASSOCIATION_REJECTED: Outcome.RETRY,  # often a peer restarting or at its limit
    Failure.ASSOCIATION_ABORTED: Outcome.RETRY,
    Failure.NO_RESPONSE: Outcome.RETRY,
    Failure.NO_CONTEXT: Outcome.DEAD,
    Failure.FILE_UNREADABLE: Outcome.DEAD,
    Failure.UNKNOWN_DESTINATION: Outcome.DEAD,
}


def classify_status(status: int) -> tuple[Outcome, str]:
    """Outcome and meaning of a DIMSE status; statuses not in the table are dead."""
    for rule in STATUS_TABLE:
        if rule.low <= status <= rule.high:
            return rule.outcome, rule.meaning
    return Outcome.DEAD, f"Unknown status 0x{status:04X}"


def classify_failure(failure: Failure) -> Outcome:
    """Outcome of an attempt that produced no status."""
    return FAILURE_TABLE[failure]
