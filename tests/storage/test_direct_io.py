"""O_DIRECT writer: exact bytes and size for any write pattern, and a clean fallback."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from storage import direct_io
from storage.direct_io import ALIGNMENT, DirectFile
from storage.filestore import FileStore, is_full_error


def _o_direct_supported(directory: Path) -> bool:
    """Independent probe: can this file system open a file with O_DIRECT at all?"""
    probe = directory / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return True


def _writer(path: Path, staging: int = 4 * ALIGNMENT) -> DirectFile:
    return DirectFile(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), staging_bytes=staging)


@pytest.mark.parametrize(
    "sizes", [[1], [3, ALIGNMENT * 4], [7000] * 9, [ALIGNMENT * 4] * 3, [0, 5, 0]]
)
def test_bytes_and_size_match_for_any_write_pattern(tmp_path: Path, sizes: list[int]) -> None:
    """Writes straddling the staging buffer, exact multiples of it, tiny tails."""
    path = tmp_path / "out.bin"
    expected = bytearray()
    writer = _writer(path)
    for index, size in enumerate(sizes):
        chunk = bytes((index * 31 + i) % 251 for i in range(size))
        assert writer.write(chunk) == size
        expected += chunk
    writer.close()
    assert path.read_bytes() == bytes(expected)
    assert writer.direct == _o_direct_supported(tmp_path)


def test_flush_mid_file_sets_the_size_and_later_writes_continue(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    writer = _writer(path)
    writer.write(b"a" * 5000)
    writer.flush()
    assert path.read_bytes() == b"a" * 5000  # padded block written, file cut to its size
    writer.write(b"b" * 20000)  # rewrites the staged tail, then fills the buffer
    writer.flush()
    assert path.read_bytes() == b"a" * 5000 + b"b" * 20000
    writer.write(memoryview(b"c" * 3))
    writer.close()
    assert path.read_bytes() == b"a" * 5000 + b"b" * 20000 + b"ccc"
    assert writer.closed


def test_file_system_without_o_direct_falls_back_to_buffered_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(direct_io, "enable_direct_io", lambda fd: False)
    writer = _writer(tmp_path / "out.bin")
    writer.write(b"x" * 12345)
    writer.close()
    assert not writer.direct
    assert (tmp_path / "out.bin").read_bytes() == b"x" * 12345


def test_refused_direct_write_is_retried_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system may accept the flag but refuse the aligned write (EINVAL)."""
    real_pwrite = os.pwrite
    calls = {"refused": 0}

    def pwrite(fd: int, data: object, offset: int) -> int:
        if direct_io.fcntl.fcntl(fd, direct_io.fcntl.F_GETFL) & os.O_DIRECT:
            calls["refused"] += 1
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(direct_io.os, "pwrite", pwrite)
    path = tmp_path / "out.bin"
    writer = _writer(path)
    writer.write(b"y" * 40000)
    writer.close()
    assert path.read_bytes() == b"y" * 40000
    assert not writer.direct
    assert calls["refused"] == (1 if _o_direct_supported(tmp_path) else 0)


def test_other_write_errors_reach_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct_io.os, "pwrite", full)
    writer = _writer(tmp_path / "out.bin")
    with pytest.raises(OSError) as info:
        writer.write(b"z" * (4 * ALIGNMENT))  # fills the staging buffer: written at once
    assert info.value.errno == errno.ENOSPC


def test_receive_buffer_hash_and_file_with_and_without_direct_io(tmp_path: Path) -> None:
    """The store's receive buffer gives the same file and hash either way."""
    header = [b"\0" * 128, b"DICM", b"meta" * 10]
    body = [os.urandom(300_000), os.urandom(1 << 20), os.urandom(77)]
    results = []
    for direct in (True, False):
        store = FileStore(tmp_path / f"store-{direct}", direct_io=direct)
        store.prepare()
        buffer = store.new_buffer()
        for part in header + body:
            buffer.write(part)
        assert buffer.direct == (direct and _o_direct_supported(store.tmp_dir))
        buffer.finish()
        buffer.close()
        offset = sum(len(p) for p in header)
        results.append((Path(buffer.name).read_bytes(), buffer.sha256_from(offset)))
    assert results[0] == results[1]
    assert results[0][1] == hashlib.sha256(b"".join(body)).hexdigest()


def test_close_after_a_failed_write_raises_only_the_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failed write's traceback still holds a slice of the staging buffer."""
    writer = _writer(tmp_path / "out.bin")
    writer.write(b"w" * 100)

    def too_large(*_args: object) -> int:
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(direct_io.os, "pwrite", too_large)
    with pytest.raises(OSError) as info:
        writer.close()
    assert info.value.errno == errno.EFBIG
    assert writer.closed


class _Socket:
    """Stands in for ``recv_into``: fills each view it is given with the next bytes."""

    def __init__(self, data: bytes) -> None:
        self.rest = memoryview(data)
        self.calls = 0

    def fill(self, view: memoryview) -> None:
        view[:] = self.rest[: len(view)]
        self.rest = self.rest[len(view) :]
        self.calls += 1


@pytest.mark.parametrize("direct", [True, False])
def test_receive_in_place_gives_the_same_file_and_hash_as_write(
    tmp_path: Path, direct: bool
) -> None:
    """``ReceiveBuffer.receive`` (recv_into the staging buffer) against plain writes."""
    header = [b"\0" * 128, b"DICM", b"meta" * 10]
    first, body = os.urandom(1000), os.urandom(3 * (1 << 20) + 123)
    store = FileStore(tmp_path / "store", direct_io=direct)
    store.prepare()
    files = []
    for in_place in (True, False):
        buffer = store.new_buffer()
        for part in [*header, first]:
            buffer.write(part)
        if in_place:
            socket = _Socket(body)
            buffer.receive(socket.fill, len(body))
            assert not socket.rest  # took exactly what it was told
        else:
            buffer.write(body)
        buffer.finish()
        buffer.close()
        offset = sum(len(p) for p in header)
        files.append((Path(buffer.name).read_bytes(), buffer.sha256_from(offset)))
    assert files[0] == files[1]
    assert files[0][1] == hashlib.sha256(first + body).hexdigest()


def test_receive_after_a_full_disk_drains_the_socket_and_keeps_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pynetdicom must stay in step with the peer: every byte is read, none written."""
    store = FileStore(tmp_path / "store")
    store.prepare()
    buffer = store.new_buffer()
    for part in (b"\0" * 128, b"DICM", b"meta", b"first"):
        buffer.write(part)

    def full(*_args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct_io.os, "pwrite", full)
    socket = _Socket(os.urandom(3 * (1 << 20)))
    buffer.receive(socket.fill, 3 * (1 << 20))  # never raises into the reader thread
    assert not socket.rest
    with pytest.raises(OSError) as info:
        buffer.finish()
    assert is_full_error(info.value)
    assert os.path.getsize(buffer.name) == 0  # the partial bytes were given back
