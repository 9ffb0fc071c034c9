"""Study completion: quiet timer, early completion on the expected view, bounded re-opening."""

from node.completion.rules import ArrivalAction, CompletionPolicy, CompletionReason
from node.completion.service import CompletedStudy, CompletionService

__all__ = [
    "ArrivalAction",
    "CompletedStudy",
    "CompletionPolicy",
    "CompletionReason",
    "CompletionService",
]
