"""The streaming P-DATA reader: what it writes itself and what it leaves to pynetdicom.

Real associations exercise it in every ingest test (storescu sends one PDV per
PDU); these tests feed it PDUs storescu never sends: several PDVs per PDU, a
command fragment inside, a cut-short PDV item, a closed connection.
"""

from __future__ import annotations

import queue
import socket
import struct
import threading
from types import SimpleNamespace

import pytest
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF

from node.network import fast_receive


class _File:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes | memoryview) -> int:
        self.data += bytes(chunk)
        return len(chunk)


def _pdv(context_id: int, control: int, data: bytes) -> bytes:
    return struct.pack(">LBB", len(data) + 2, context_id, control) + data


def _pdu(*pdvs: bytes) -> bytes:
    body = b"".join(pdvs)
    return struct.pack(">BBL", 0x04, 0, len(body)) + body


@pytest.fixture
def dul():
    """A DUL provider in Sta6 with a C-STORE data set being received into a file."""
    ours, peer = socket.socketpair()
    fast_receive.stream_data_sets_to_file()
    provider = DULServiceProvider.__new__(DULServiceProvider)
    target = _File()
    provider.socket = SimpleNamespace(socket=ours)
    provider.event_queue = queue.Queue()
    provider._recv_pdu = queue.Queue()
    provider.state_machine = SimpleNamespace(current_state="Sta6")
    message = SimpleNamespace(_data_set_file=target)
    provider._assoc = SimpleNamespace(dimse=SimpleNamespace(message=message))
    provider._decode_pdu = lambda data: (_decoded(data), "Evt10")
    yield provider, peer, target
    ours.close()
    peer.close()


def _decoded(data: bytearray) -> P_DATA_TF:
    pdu = P_DATA_TF()
    pdu.decode(bytes(data))
    return pdu


def test_data_fragments_stream_and_the_last_goes_to_pynetdicom(dul) -> None:
    provider, peer, target = dul
    stream = _pdu(_pdv(1, 0x00, b"a" * 1000), _pdv(1, 0x00, b"b" * 300_000))
    stream += _pdu(_pdv(1, 0x00, b"c" * 10), _pdv(1, 0x02, b"LAST"))
    sender = threading.Thread(target=peer.sendall, args=(stream,))  # more than a socket buffer
    sender.start()
    provider._read_pdu_data()
    sender.join()
    assert bytes(target.data) == b"a" * 1000 + b"b" * 300_000 + b"c" * 10
    assert provider.event_queue.get_nowait() == "Evt10"
    pdu = provider._recv_pdu.get_nowait()
    assert [(item.context_id, item.data) for item in pdu.presentation_data_value_items] == [
        (1, b"\x02LAST")
    ]


def test_after_a_command_fragment_the_rest_of_the_pdu_keeps_its_order(dul) -> None:
    provider, peer, target = dul
    peer.sendall(_pdu(_pdv(1, 0x01, b"cmd"), _pdv(1, 0x00, b"data")))
    provider._read_pdu_data()
    assert target.data == b""  # nothing jumps ahead of the command fragment
    pdu = provider._recv_pdu.get_nowait()
    assert [item.data for item in pdu.presentation_data_value_items] == [b"\x01cmd", b"\x00data"]


def test_a_pdv_longer_than_its_pdu_is_an_invalid_pdu(dul) -> None:
    provider, peer, _ = dul
    body = struct.pack(">LBB", 100, 1, 0) + b"x" * 10
    peer.sendall(struct.pack(">BBL", 0x04, 0, len(body)) + body)
    provider._read_pdu_data()
    assert provider.event_queue.get_nowait() == "Evt19"


def test_a_connection_closed_mid_pdu_is_a_transport_close(dul) -> None:
    provider, peer, _ = dul
    whole = _pdu(_pdv(1, 0x00, b"z" * 5000))
    peer.sendall(whole[:3000])
    peer.shutdown(socket.SHUT_WR)
    provider._read_pdu_data()
    assert provider.event_queue.get_nowait() == "Evt17"


def test_outside_sta6_pynetdicom_reads_the_pdu_itself(dul, monkeypatch) -> None:
    provider, peer, target = dul
    provider.state_machine.current_state = "Sta7"
    calls = []
    monkeypatch.setattr(fast_receive, "_ORIGINAL_READ", lambda self: calls.append(self))
    peer.sendall(_pdu(_pdv(1, 0x00, b"data")))
    provider._read_pdu_data()
    assert calls == [provider] and target.data == b""
