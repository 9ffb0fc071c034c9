"""Write a file with O_DIRECT: the bytes go from our buffer to the disk, not via the page cache.

Every received object is fsync'd before it is acknowledged, so the page
cache's copy of it buys nothing: the kernel copies each byte into a cache page
(measured: the single largest CPU cost of ingest when four senders fill both
cores of a small machine) and then writes the page out anyway. With O_DIRECT the
device reads our buffer itself.

O_DIRECT wants the buffer, the file offset and the length aligned to the
device's logical block. The writer gathers bytes in an anonymous ``mmap``
(page-aligned) and writes it whole; the last, partial block is written padded
and the file is cut back to its true size with ``ftruncate``. Where the file
system refuses O_DIRECT (tmpfs before Linux 6.6, some FUSE and network file
systems) the writer falls back to ordinary buffered writes, so the caller never
has to know.

Not thread-safe; one writer per file. Durability is still the caller's
``fdatasync``: O_DIRECT skips the cache, not the device's write cache.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os

ALIGNMENT = 4096
"""Buffer, offset and length alignment: a multiple of every common logical block size."""

STAGING_BYTES = 1 << 20

_O_DIRECT = getattr(os, "O_DIRECT", 0)


def enable_direct_io(fd: int) -> bool:
    """Switch an open file descriptor to O_DIRECT; False where the platform or file system refuses."""
    if not _O_DIRECT:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT)
        return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & _O_DIRECT)
    except OSError:
        return False


def _disable_direct_io(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~_O_DIRECT)


class DirectFile:
    """Append-only writer over ``fd`` (opened for writing, at offset 0) using O_DIRECT when it can.

    Behaves like a binary file object for ``write``, ``flush`` and ``close``;
    :attr:`direct` says whether O_DIRECT is (still) in use.
    """

    def __init__(self, fd: int, staging_bytes: int = STAGING_BYTES) -> None:
        if staging_bytes % ALIGNMENT:
            raise ValueError(f"staging_bytes must be a multiple of {ALIGNMENT}")
        self._fd = fd
        self.direct = enable_direct_io(fd)
        self._staging = mmap.mmap(-1, staging_bytes)
        self._view = memoryview(self._staging)
        self._base = 0  # file offset of the staging buffer's first byte (always aligned)
        self._fill = 0  # bytes gathered in the staging buffer
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        source = memoryview(data).cast("B")
        total = len(source)
        done = 0
        capacity = len(self._view)
        while done < total:
            step = min(total - done, capacity - self._fill)
            self._view[self._fill : self._fill + step] = source[done : done + step]
            done += step
            self.commit_staged(step)
        return total

    def staging_space(self, limit: int) -> memoryview:
        """Free room in the staging buffer (at most ``limit`` bytes) to fill in place.

        Lets a caller ``recv_into`` it, saving the copy :meth:`write` makes; report
        the bytes with :meth:`commit_staged` and release the view before :meth:`close`.
        """
        return self._view[self._fill : min(len(self._view), self._fill + limit)]

    def commit_staged(self, count: int) -> None:
        """Count ``count`` bytes filled in place at the start of :meth:`staging_space`."""
        self._fill += count
        if self._fill == len(self._view):
            self._write_at(self._view, self._base)
            self._base += self._fill
            self._fill = 0

    def flush(self) -> None:
        """Write what is gathered and set the file's size; the partial tail stays staged.

        A later write rewrites that tail block, so flushing mid-file is allowed.
        """
        if self._fill == 0:
            return
        padded = -(-self._fill // ALIGNMENT) * ALIGNMENT if self.direct else self._fill
        self._write_at(self._view[:padded], self._base)
        if padded != self._fill:
            os.ftruncate(self._fd, self._base + self._fill)

    def close(self) -> None:
        """Flush, then close the descriptor (also when the flush fails)."""
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self.closed = True
            os.close(self._fd)
            try:
                self._view.release()
                self._staging.close()
            except BufferError:
                # A slice is still referenced (by the traceback of a failed write): the
                # mapping goes when that does.
                pass

    def _write_at(self, block: memoryview, offset: int) -> None:
        written = 0
        while written < len(block):
            try:
                count = os.pwrite(self._fd, block[written:], offset + written)
            except OSError as exc:
                if exc.errno == errno.EINVAL and self.direct:
                    # The file system accepted the flag but not these writes: go buffered.
                    _disable_direct_io(self._fd)
                    self.direct = False
                    continue
                raise
            if count == 0:  # pragma: no cover - pwrite to a regular file never returns 0
                raise OSError(errno.EIO, "short write")
            written += count
