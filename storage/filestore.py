"""Durable file store: temp file on the same filesystem, fsync, atomic link, dir fsync.

Layout under the storage directory::

    tmp/                     receive buffers (``*.part``); wiped at start
    dicom/<study>/<series>/<sop>.dcm

Paths are built from cleaned UIDs. :meth:`FileStore.commit` links the temp
file into place with ``os.link`` (which never replaces an existing file, so a
duplicate SOP Instance UID cannot overwrite the first copy), fsyncs the file
before and every new directory after, then drops the temp name.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import re
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from storage.direct_io import DirectFile

_UID_SAFE = re.compile(r"[^0-9A-Za-z.\-]")
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
TEMP_SUFFIX = ".part"
_RECEIVE_CHUNK = 1 << 18
"""Scratch size where :meth:`ReceiveBuffer.receive` cannot fill the staging buffer in place."""

WRITEBACK_CHUNK = 4 << 20
"""Start disk writeback every this many received bytes, so the final fsync has little left."""

_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range():  # type: ignore[no-untyped-def]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask Linux to begin writing ``[offset, offset+length)`` to disk without waiting.

    Only a head start for the fsync that follows; a no-op where unsupported.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


class OutOfSpace(OSError):
    """The disk, a quota or the configured size cap is exhausted (DIMSE 0xA700)."""


def clean_uid(uid: str) -> str:
    """A UID made safe as one path component (never empty, never ``.``/``..``)."""
    cleaned = _UID_SAFE.sub("_", uid.strip())[:64]
    if cleaned in ("", ".", ".."):
        cleaned = "_" + cleaned
    return cleaned


def is_full_error(exc: BaseException) -> bool:
    """True for the errors that mean "no space left" in one form or another."""
    return isinstance(exc, OutOfSpace) or (isinstance(exc, OSError) and exc.errno in FULL_ERRNOS)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new name) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ReceiveBuffer:
    """A temp file pynetdicom streams a received data set into.

    Stands in for ``NamedTemporaryFile(delete=False)``: it has ``name``,
    ``write``, ``file.flush`` and ``close``. A write that fails (disk full,
    file-size limit) does not raise into pynetdicom's reader thread, which would
    abort the association; the error is kept in :attr:`error`, the partial
    file is truncated to free the space, and the C-STORE handler answers with
    the right status.
    """

    # pynetdicom writes the preamble, "DICM" and the File Meta group as three
    # calls before the first data set fragment; the hash covers what follows.
    _HEADER_WRITES = 3

    def __init__(self, directory: Path, direct_io: bool = True) -> None:
        fd, name = tempfile.mkstemp(suffix=TEMP_SUFFIX, dir=directory)
        self.name = name
        self._fd = fd
        self._fp: DirectFile | BinaryIO = (
            DirectFile(fd) if direct_io else os.fdopen(fd, "wb", buffering=1 << 20)
        )
        self.file = self  # pynetdicom calls ``.file.flush()`` after every fragment
        self.error: OSError | None = None
        self.closed = False
        self._writes = 0
        self._written = 0
        self._writeback_done = 0
        self.hashed_from: int | None = None  # byte offset where hashing started
        self._hash = hashlib.sha256()
        # An association aborted mid-object drops its buffer without a handler call:
        # then the partial file goes when the buffer is collected.
        self._state = {"claimed": False}
        self._finalizer = weakref.finalize(self, _drop_unclaimed, self._fp, name, self._state)

    def write(self, data: bytes) -> int:
        if self.error is not None:
            return len(data)
        try:
            count = self._fp.write(data)
        except OSError as exc:
            self._fail(exc)
            return len(data)
        self._writes += 1
        if self._writes > self._HEADER_WRITES:
            if self.hashed_from is None:
                self.hashed_from = self._written
            self._hash.update(data)
        self._written += len(data)
        if self._written - self._writeback_done >= WRITEBACK_CHUNK and not self.direct:
            try:
                self._fp.flush()
            except OSError as exc:
                self._fail(exc)
                return len(data)
            start_writeback(self._fd, self._writeback_done, self._written - self._writeback_done)
            self._writeback_done = self._written
        return count

    def receive(self, fill: Callable[[memoryview], None], count: int) -> None:
        """Append the next ``count`` data set bytes, which ``fill`` writes into views it is given.

        With O_DIRECT the views are the staging buffer itself, so a socket's
        ``recv_into`` lands the bytes where the disk reads them: no copy in
        Python. ``fill`` must fill each view completely or raise.
        """
        fp = self._fp
        if not isinstance(fp, DirectFile) or self._writes <= self._HEADER_WRITES:
            self._receive_by_copy(fill, count)
            return
        if self.hashed_from is None:
            self.hashed_from = self._written
        while count > 0:
            if self.error is not None:  # still read every byte, so the association stays in step
                self._receive_by_copy(fill, count)
                return
            space = fp.staging_space(count)
            size = len(space)
            try:
                fill(space)
                self._hash.update(space)
            finally:
                space.release()
            count -= size
            try:
                fp.commit_staged(size)
            except OSError as exc:
                self._fail(exc)
            self._written += size
        self._writes += 1

    def _receive_by_copy(self, fill: Callable[[memoryview], None], count: int) -> None:
        chunk = bytearray(min(count, _RECEIVE_CHUNK))
        view = memoryview(chunk)
        while count > 0:
            part = view[: min(count, len(view))]
            fill(part)
            self.write(part)
            count -= len(part)

    @property
    def direct(self) -> bool:
        """Whether the bytes bypass the page cache (O_DIRECT); see :mod:`storage.direct_io`."""
        return bool(getattr(self._fp, "direct", False))

    def drop_if_unclaimed(self) -> bool:
        """Remove the partial file of an object whose message never completed."""
        if self._state["claimed"]:
            return False
        self._state["claimed"] = True
        self.closed = True
        _drop_unclaimed(self._fp, self.name, {"claimed": False})
        return True

    def sha256_from(self, offset: int) -> str | None:
        """SHA-256 of the bytes from ``offset`` on, if that is where hashing started."""
        if self.error is not None or self.hashed_from != offset:
            return None
        return self._hash.hexdigest()

    def flush(self) -> None:
        """Per-fragment flushes are pointless; :meth:`finish` flushes once."""

    def finish(self) -> None:
        """Flush buffered bytes to the OS (raising a deferred write error).

        From here on the C-STORE handler owns the file (it commits or discards it).
        """
        self._state["claimed"] = True
        if self.error is None and not self.closed:
            try:
                self._fp.flush()
            except OSError as exc:
                self._fail(exc)
        if self.error is not None:
            raise self.error

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        try:
            os.truncate(self.name, 0)
        except OSError:
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._fp.close()
        except OSError as exc:
            if self.error is None:
                self.error = exc


def _drop_unclaimed(fp: object, name: str, state: dict[str, bool]) -> None:
    if state["claimed"]:
        return
    try:
        fp.close()  # type: ignore[attr-defined]
    except OSError:
        pass
    try:
        os.unlink(name)
    except OSError:
        pass


class FileStore:
    """The object files of one node; thread-safe."""

    def __init__(self, root: Path, max_bytes: int | None = None, direct_io: bool = True) -> None:
        self.root = Path(root).resolve()
        self.tmp_dir = self.root / "tmp"
        self.objects_dir = self.root / "dicom"
        self.max_bytes = max_bytes
        self.direct_io = direct_io
        self._lock = threading.Lock()
        self._used_bytes = 0  # catalogued objects
        self._pending_bytes = 0  # reserved by objects being stored

    # -- start-up ----------------------------------------------------------------
    def prepare(self) -> int:
        """Create the folders and remove leftover temp files; return how many were removed."""
        for directory in (self.root, self.tmp_dir, self.objects_dir):
            directory.mkdir(parents=True, exist_ok=True)
        removed = 0
        for leftover in self.tmp_dir.iterdir():
            if leftover.is_file():
                leftover.unlink()
                removed += 1
        # Temp names a crash left next to stored objects (older layouts, copies).
        for leftover in self.objects_dir.rglob(f"*{TEMP_SUFFIX}"):
            leftover.unlink()
            removed += 1
        fsync_dir(self.tmp_dir)
        return removed

    def iter_objects(self) -> Iterator[str]:
        """Relative paths of every stored object file."""
        for path in self.objects_dir.rglob("*.dcm"):
            yield path.relative_to(self.root).as_posix()

    # -- capacity ----------------------------------------------------------------
    def set_used_bytes(self, used: int) -> None:
        """Catalogued bytes (recounted from the catalogue); reservations in flight are kept."""
        with self._lock:
            self._used_bytes = used

    @property
    def used_bytes(self) -> int:
        return self._used_bytes + self._pending_bytes

    def reserve(self, size: int) -> None:
        """Reserve ``size`` bytes for an object in flight, or raise :class:`OutOfSpace` above the cap."""
        with self._lock:
            used = self._used_bytes + self._pending_bytes
            if self.max_bytes is not None and used + size > self.max_bytes:
                raise OutOfSpace(
                    errno.ENOSPC,
                    f"storage cap max_storage_bytes={self.max_bytes} reached "
                    f"({used} used, {size} more requested)",
                )
            self._pending_bytes += size

    def settle(self, size: int) -> None:
        """The reserved object is catalogued: its bytes now count as used."""
        with self._lock:
            self._pending_bytes = max(0, self._pending_bytes - size)
            self._used_bytes += size

    def release(self, size: int) -> None:
        """The reserved object was not stored."""
        with self._lock:
            self._pending_bytes = max(0, self._pending_bytes - size)

    # -- writing -----------------------------------------------------------------
    def new_buffer(self) -> ReceiveBuffer:
        return ReceiveBuffer(self.tmp_dir, self.direct_io)

    def relative_path(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return f"dicom/{clean_uid(study_uid)}/{clean_uid(series_uid)}/{clean_uid(sop_uid)}.dcm"

    def absolute(self, relative: str) -> Path:
        return self.root / relative

    def commit(self, temp_path: Path, relative: str) -> Path:
        """Durably place ``temp_path`` at ``relative``.

        Raises ``FileExistsError`` when an object already has that name (the
        temp file is left for the caller to discard) and :class:`OutOfSpace` or
        ``OSError`` on I/O failure.
        """
        fd = os.open(temp_path, os.O_RDONLY)
        try:
            # Data and size (all a reader needs); the name is made durable by the dir fsync.
            os.fdatasync(fd)
        finally:
            os.close(fd)
        final = self.root / relative
        self._make_dirs(final.parent)
        os.link(temp_path, final)
        fsync_dir(final.parent)
        os.unlink(temp_path)
        return final

    def _make_dirs(self, directory: Path) -> None:
        missing: list[Path] = []
        current = directory
        while not current.exists():
            missing.append(current)
            current = current.parent
        if not missing:
            return
        directory.mkdir(parents=True, exist_ok=True)
        # Each new directory's name lives in its parent: fsync the parents, top down.
        for new_dir in reversed(missing):
            fsync_dir(new_dir.parent)

    def discard(self, temp_path: Path | str) -> None:
        try:
            os.unlink(temp_path)
        except FileNotFoundError:
            pass

    def remove(self, relative: str) -> None:
        """Delete a stored object (used only for rows that never committed)."""
        path = self.root / relative
        try:
            path.unlink()
            fsync_dir(path.parent)
        except FileNotFoundError:
            pass
