"""Result sender: durable outbox of (object, destination) delivered by C-STORE."""

from node.sender.outbox import enqueue
from node.sender.service import OutboxSender

__all__ = ["OutboxSender", "enqueue"]
