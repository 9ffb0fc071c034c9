"""The one log line per connection, whatever order pynetdicom's events arrive in."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from pynetdicom import evt
from pynetdicom.pdu_primitives import A_ASSOCIATE

from node.network.store_handler import AssociationLog


def _rejected_assoc() -> SimpleNamespace:
    request, response = A_ASSOCIATE(), A_ASSOCIATE()
    request.called_ae_title = "NOT_THE_NODE"
    response.result, response.result_source, response.diagnostic = 0x01, 0x01, 0x07
    return SimpleNamespace(
        requestor=SimpleNamespace(ae_title="ECHOSCU", primitive=request),
        acceptor=SimpleNamespace(ae_title="HIPNODE", primitive=response),
    )


@pytest.mark.parametrize("close_first", [False, True], ids=["rejected-then-close", "close-then-rejected"])
def test_a_rejection_is_logged_rejected_in_either_event_order(caplog: pytest.LogCaptureFixture, close_first: bool):
    """The acceptor sends A-ASSOCIATE-RJ before EVT_REJECTED fires; a fast peer closes in between."""
    assoc_log, assoc = AssociationLog(), _rejected_assoc()
    rejected = SimpleNamespace(event=evt.EVT_REJECTED, assoc=assoc)
    closed = SimpleNamespace(event=evt.EVT_CONN_CLOSE, assoc=assoc, address=("127.0.0.1", 4242))
    events = [closed, rejected] if close_first else [rejected, closed]
    with caplog.at_level(logging.INFO, logger="node.scp"):
        for event in events:
            (assoc_log.on_close if event is closed else assoc_log.on_outcome)(event)  # type: ignore[arg-type]
    (record,) = [r for r in caplog.records if r.getMessage() == "association"]
    assert record.outcome == "rejected" and record.levelno == logging.WARNING  # type: ignore[attr-defined]
    assert record.called_aet == "NOT_THE_NODE"  # type: ignore[attr-defined]
    assert assoc_log._stats == {}  # nothing left behind for a connection that is gone


def test_a_connection_without_association_is_logged_as_such(caplog: pytest.LogCaptureFixture):
    assoc = SimpleNamespace(requestor=SimpleNamespace(ae_title="", primitive=None),
                            acceptor=SimpleNamespace(ae_title="HIPNODE", primitive=None))
    with caplog.at_level(logging.INFO, logger="node.scp"):
        AssociationLog().on_close(SimpleNamespace(event=evt.EVT_CONN_CLOSE, assoc=assoc, address=("127.0.0.1", 1)))
    (record,) = [r for r in caplog.records if r.getMessage() == "association"]
    assert record.outcome == "no_association" and record.called_aet == "HIPNODE"  # type: ignore[attr-defined]
