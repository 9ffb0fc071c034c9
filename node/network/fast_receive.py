"""Stream C-STORE data set fragments from the socket straight into the temp file.

pynetdicom turns every P-DATA-TF PDU into a bytes copy, a PDU object, a
P-DATA primitive and a state-machine event before the data set bytes reach
the file: four copies and a few hundred Python calls per 128 KiB. While an
association is established (Sta6) and a chunked C-STORE data set is being
received, nothing in those steps can change the outcome, so this reader
copies each data set fragment from the socket into the temp file directly:
into the store's O_DIRECT staging buffer itself where the target offers
``receive`` (:class:`storage.filestore.ReceiveBuffer`), else one ``recv_into``
into a reused buffer and one write.

Everything else takes pynetdicom's own path unchanged: every non-P-DATA PDU,
command fragments, the *last* fragment of each data set (so pynetdicom
completes the message and calls the C-STORE handler itself), any P-DATA
while another event is still queued, and data sets pynetdicom keeps in
memory. Within one PDU, once a PDV takes pynetdicom's path the rest of that
PDU does too, so fragments are never reordered.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
from functools import partial

from pynetdicom.dul import DULServiceProvider

log = logging.getLogger("node.scp")

_ORIGINAL_READ = DULServiceProvider._read_pdu_data
_P_DATA_TF = 0x04
_PDV_HEADER = struct.Struct(">LBB")  # item length, presentation context ID, control header
_CHUNK = 1 << 18
_NEXT_PDU_WAIT = 0.01


class _ConnectionClosed(Exception):
    """The peer closed the connection, or the socket failed, mid-PDU."""


def _recv_exact(sock: socket.socket, view: memoryview) -> None:
    got = 0
    size = len(view)
    while got < size:
        count = sock.recv_into(view[got:], size - got)
        if not count:
            raise _ConnectionClosed
        got += count


def _read_bytes(sock: socket.socket, size: int) -> bytearray:
    data = bytearray(size)
    _recv_exact(sock, memoryview(data))
    return data


def _streaming_file(dul: DULServiceProvider) -> object | None:
    """The temp file of the C-STORE data set being received, if this PDU may stream."""
    if dul.state_machine.current_state != "Sta6":
        return None
    if not dul.event_queue.empty() or not dul._recv_pdu.empty():
        return None
    assoc = getattr(dul, "assoc", None)
    message = getattr(getattr(assoc, "dimse", None), "message", None)
    return getattr(message, "_data_set_file", None) if message is not None else None


def _read_pdu_streaming(self: DULServiceProvider) -> None:
    """Drop-in for ``DULServiceProvider._read_pdu_data`` with the fast data path.

    After a streamed PDU it goes on with the next one while the peer keeps
    sending (waiting at most :data:`_NEXT_PDU_WAIT` s): returning to the reactor
    would cost its idle sleep (about 1 ms) per PDU.
    """
    while True:
        target = _streaming_file(self)
        sock = getattr(self.socket, "socket", None)
        if target is None or sock is None:
            _ORIGINAL_READ(self)
            return
        try:
            header = _read_bytes(sock, 6)
        except (_ConnectionClosed, OSError):
            self.event_queue.put("Evt17")
            return
        pdu_type, _, pdu_length = struct.unpack(">BBL", header)
        try:
            if pdu_type != _P_DATA_TF:
                self._decode_and_queue(header + _read_bytes(sock, pdu_length))  # type: ignore[attr-defined]
                return
            if not _stream_p_data(self, sock, pdu_length, target):
                return
        except (_ConnectionClosed, OSError):
            log.warning("connection closed before the entire PDU was received")
            self.event_queue.put("Evt17")
            return
        try:
            readable, _, _ = select.select([sock], [], [], _NEXT_PDU_WAIT)
        except (OSError, ValueError):
            return
        if not readable:
            return


def _stream_p_data(
    dul: DULServiceProvider, sock: socket.socket, pdu_length: int, target: object
) -> bool:
    """Write streamable data set PDVs to ``target``; queue the rest as one P-DATA-TF.

    Returns whether every PDV was streamed (nothing was queued for pynetdicom).
    """
    scratch = getattr(dul, "_hipnode_scratch", None)
    if scratch is None:  # one reused buffer per association
        scratch = dul._hipnode_scratch = memoryview(bytearray(_CHUNK))  # type: ignore[attr-defined]
    remaining = pdu_length
    passed_on: list[bytes] = []  # raw PDV items (header included) for pynetdicom
    item_header = bytearray(_PDV_HEADER.size)
    while remaining > 0:
        if remaining < _PDV_HEADER.size:
            _read_bytes(sock, remaining)
            dul.event_queue.put("Evt19")  # a PDV item cut short: invalid PDU
            return False
        _recv_exact(sock, memoryview(item_header))
        item_length, _context_id, control = _PDV_HEADER.unpack(item_header)
        remaining -= 4 + item_length
        if item_length < 2 or remaining < 0:
            _drain(sock, remaining + 4 + item_length - _PDV_HEADER.size, scratch)
            dul.event_queue.put("Evt19")
            return False
        data_length = item_length - 2
        is_command, is_last = bool(control & 1), bool(control & 2)
        if passed_on or is_command or is_last:
            passed_on.append(bytes(item_header) + _read_bytes(sock, data_length))
            continue
        receive = getattr(target, "receive", None)
        if receive is not None:  # the store's buffer: bytes land where the disk reads them
            receive(partial(_recv_exact, sock), data_length)
            continue
        while data_length > 0:
            count = min(data_length, len(scratch))
            chunk = scratch[:count]
            _recv_exact(sock, chunk)
            target.write(chunk)  # type: ignore[attr-defined]
            data_length -= count
    if passed_on:
        body = b"".join(passed_on)
        dul._decode_and_queue(struct.pack(">BBL", _P_DATA_TF, 0, len(body)) + body)  # type: ignore[attr-defined]
        return False
    return True


def _drain(sock: socket.socket, count: int, scratch: memoryview) -> None:
    while count > 0:
        step = min(count, len(scratch))
        _recv_exact(sock, scratch[:step])
        count -= step


def _decode_and_queue(self: DULServiceProvider, bytestream: bytes | bytearray) -> None:
    """pynetdicom's own tail of ``_read_pdu_data``: decode, queue event and PDU."""
    try:
        pdu, event = self._decode_pdu(bytearray(bytestream))
        self.event_queue.put(event)
    except Exception:
        log.exception("unable to decode the received PDU")
        self.event_queue.put("Evt19")
        return
    self._recv_pdu.put(pdu)


def stream_data_sets_to_file() -> None:
    """Install the fast data path on pynetdicom's DUL reader (idempotent)."""
    DULServiceProvider._decode_and_queue = _decode_and_queue  # type: ignore[attr-defined]
    DULServiceProvider._read_pdu_data = _read_pdu_streaming  # type: ignore[method-assign]
