"""File store: cleaned paths, atomic no-replace commit, leftovers, the size cap, failed writes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from storage.filestore import FileStore, OutOfSpace, ReceiveBuffer, clean_uid, is_full_error


@pytest.mark.parametrize(
    ("uid", "cleaned"),
    [
        ("1.2.3", "1.2.3"),
        ("1.2.3 ", "1.2.3"),
        ("../../etc/passwd", ".._.._etc_passwd"),
        ("..", "_.."),
        ("", "_"),
        ("1.2\x00.3/4", "1.2_.3_4"),
    ],
)
def test_clean_uid(uid: str, cleaned: str) -> None:
    assert clean_uid(uid) == cleaned


def test_commit_places_file_and_never_replaces(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    store.prepare()
    buffer = store.new_buffer()
    buffer.write(b"first")
    buffer.finish()
    buffer.close()
    relative = store.relative_path("1.2", "1.2.3", "1.2.3.4")
    final = store.commit(Path(buffer.name), relative)
    assert final.read_bytes() == b"first" and not Path(buffer.name).exists()
    second = store.new_buffer()
    second.write(b"second")
    second.finish()
    second.close()
    with pytest.raises(FileExistsError):
        store.commit(Path(second.name), relative)
    assert final.read_bytes() == b"first"


def test_prepare_removes_leftovers(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    store.prepare()
    (store.tmp_dir / "x.part").write_bytes(b"partial")
    nested = store.objects_dir / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "y.part").write_bytes(b"partial")
    (nested / "keep.dcm").write_bytes(b"kept")
    assert store.prepare() == 2
    assert list(store.iter_objects()) == ["dicom/a/b/keep.dcm"]


def test_cap_refuses_and_release_frees(tmp_path: Path) -> None:
    store = FileStore(tmp_path, max_bytes=100)
    store.reserve(60)
    with pytest.raises(OutOfSpace) as info:
        store.reserve(50)
    assert is_full_error(info.value) and "max_storage_bytes=100" in str(info.value)
    store.release(60)
    store.reserve(90)
    store.settle(90)
    store.set_used_bytes(90)  # a recount from the catalogue
    store.reserve(10)
    store.set_used_bytes(90)  # a recount while 10 bytes are in flight keeps them
    assert store.used_bytes == 100
    with pytest.raises(OutOfSpace):
        store.reserve(1)


def test_receive_buffer_keeps_write_errors_and_frees_space(tmp_path: Path) -> None:
    buffer = ReceiveBuffer(tmp_path)
    buffer.write(b"x" * 10)
    buffer.finish()

    class Full:
        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    buffer._fp = Full()  # type: ignore[assignment]  # the disk fills up mid-object
    assert buffer.write(b"y" * 10) == 10  # never raises into pynetdicom's reader
    buffer.write(b"z")
    with pytest.raises(OSError) as info:
        buffer.finish()
    assert is_full_error(info.value)
    assert os.path.getsize(buffer.name) == 0  # the partial bytes were given back
