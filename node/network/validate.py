"""Is a received object complete and the object the command announced?

pydicom silently accepts a truncated body (it stops at end of file), so the
structure is walked here first, element by element, without loading values:
every length must fit in the file, every undefined-length sequence must end
with its delimiter, and Pixel Data must have the size its header promises
(native) or consist of well-formed fragments (encapsulated). Only then is the
header parsed (stopping before Pixel Data, so memory stays bounded).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from node.network.contexts import requires_pixel_data
from node.network.status import StoreStatus

_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_MAX_DEPTH = 32


class InvalidObject(Exception):
    """The object must be refused with :attr:`status`; ``str()`` says why."""

    def __init__(self, status: StoreStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Truncated(Exception):
    pass


@dataclass(frozen=True)
class PixelDataInfo:
    """Where Pixel Data sits and how it is encoded."""

    length: int  # value length in bytes; for encapsulated: total of all fragment items
    encapsulated: bool
    fragments: int  # data fragments after the Basic Offset Table (encapsulated only)


@dataclass(frozen=True)
class CheckedObject:
    """A complete object: its header (no Pixel Data) and Pixel Data facts."""

    header: Dataset
    transfer_syntax_uid: str
    dataset_offset: int  # first byte after the File Meta Information
    pixel_data: PixelDataInfo | None


class _Walker:
    """Walks data elements by their headers, checking every length against the end."""

    def __init__(self, fp: BinaryIO, end: int, implicit: bool, little: bool) -> None:
        self.fp = fp
        self.end = end
        self.implicit = implicit
        self.endian = "<" if little else ">"
        self.pixel_data: PixelDataInfo | None = None

    def _read(self, n: int) -> bytes:
        data = self.fp.read(n)
        if len(data) != n:
            raise _Truncated(f"file ends inside an element header at byte {self.fp.tell()}")
        return data

    def _tag(self) -> int:
        group, elem = struct.unpack(self.endian + "HH", self._read(4))
        return (group << 16) | elem

    def _skip(self, length: int, what: str) -> None:
        pos = self.fp.tell()
        if pos + length > self.end:
            raise _Truncated(
                f"{what} needs {length} bytes at byte {pos}, only {self.end - pos} remain"
            )
        self.fp.seek(pos + length)

    def walk_dataset(self, depth: int, in_item: bool) -> None:
        """Walk elements until end of file (top level) or an item delimiter (nested)."""
        if depth > _MAX_DEPTH:
            raise _Truncated("sequences nested too deeply")
        while True:
            if not in_item and self.fp.tell() >= self.end:
                return
            tag = self._tag()
            if tag == _ITEM_END:
                if not in_item:
                    raise _Truncated("item delimiter outside an item")
                self._read(4)
                return
            if self.implicit:
                vr = b""
                (length,) = struct.unpack(self.endian + "L", self._read(4))
            else:
                vr = self._read(2)
                if vr in _LONG_VRS:
                    self._read(2)
                    (length,) = struct.unpack(self.endian + "L", self._read(4))
                else:
                    (length,) = struct.unpack(self.endian + "H", self._read(2))
            if tag == _PIXEL_DATA and depth == 0:
                self._pixel_data(length)
            elif length == _UNDEFINED:
                self._undefined_sequence(depth)
            else:
                self._skip(length, f"element ({tag >> 16:04X},{tag & 0xFFFF:04X})")

    def _undefined_sequence(self, depth: int) -> None:
        while True:
            tag = self._tag()
            (length,) = struct.unpack(self.endian + "L", self._read(4))
            if tag == _SEQUENCE_END:
                return
            if tag != _ITEM:
                raise _Truncated(f"unexpected tag {tag:08X} inside a sequence")
            if length == _UNDEFINED:
                self.walk_dataset(depth + 1, in_item=True)
            else:
                self._skip(length, "sequence item")

    def _pixel_data(self, length: int) -> None:
        if length != _UNDEFINED:
            self._skip(length, "Pixel Data")
            self.pixel_data = PixelDataInfo(length=length, encapsulated=False, fragments=0)
            return
        items = 0
        total = 0
        while True:
            tag = self._tag()
            (item_length,) = struct.unpack(self.endian + "L", self._read(4))
            if tag == _SEQUENCE_END:
                break
            if tag != _ITEM or item_length == _UNDEFINED:
                raise _Truncated(f"malformed encapsulated Pixel Data fragment (tag {tag:08X})")
            self._skip(item_length, "Pixel Data fragment")
            items += 1
            total += item_length
        self.pixel_data = PixelDataInfo(
            length=total, encapsulated=True, fragments=max(items - 1, 0)
        )


def _expected_native_length(header: Dataset) -> int:
    rows = int(header.Rows)
    columns = int(header.Columns)
    samples = int(header.get("SamplesPerPixel", 1) or 1)
    bits = int(header.BitsAllocated)
    frames = int(header.get("NumberOfFrames", 1) or 1)
    pixels = rows * columns * samples * frames
    return (pixels * bits + 7) // 8


def check_object(
    path: Path,
    sop_class_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> CheckedObject:
    """Check the Part 10 file at ``path``; raise :class:`InvalidObject` on any problem.

    ``sop_class_uid``/``sop_instance_uid`` are the C-STORE command's affected
    UIDs; the dataset must carry the same values (else 0xA900).
    """
    size = path.stat().st_size
    with path.open("rb") as fp:
        try:
            pydicom.filereader.read_preamble(fp, force=False)
            file_meta = pydicom.filereader._read_file_meta_info(fp)
        except Exception as exc:  # pydicom raises several kinds for garbage
            raise InvalidObject(
                StoreStatus.CANNOT_UNDERSTAND, f"not a DICOM Part 10 stream: {exc}"
            ) from exc
        dataset_offset = fp.tell()
        ts = UID(str(file_meta.get("TransferSyntaxUID", "")))
        if not ts:
            raise InvalidObject(
                StoreStatus.CANNOT_UNDERSTAND, "no transfer syntax in the file meta"
            )
        stream: BinaryIO = fp
        end = size
        if ts == DeflatedExplicitVRLittleEndian:
            try:
                inflated = zlib.decompressobj(-zlib.MAX_WBITS)
                body = inflated.decompress(fp.read()) + inflated.flush()
            except zlib.error as exc:
                raise InvalidObject(
                    StoreStatus.CANNOT_UNDERSTAND, f"deflate stream corrupt: {exc}"
                ) from exc
            if not inflated.eof:
                raise InvalidObject(StoreStatus.CANNOT_UNDERSTAND, "deflate stream truncated")
            stream = io.BytesIO(body)
            end = len(body)
            implicit, little = False, True
        else:
            try:
                implicit, little = ts.is_implicit_VR, ts.is_little_endian
            except ValueError as exc:
                raise InvalidObject(
                    StoreStatus.CANNOT_UNDERSTAND, f"unknown transfer syntax {ts}"
                ) from exc
        walker = _Walker(stream, end, implicit, little)
        try:
            walker.walk_dataset(0, in_item=False)
        except (_Truncated, struct.error) as exc:
            raise InvalidObject(StoreStatus.CANNOT_UNDERSTAND, f"incomplete object: {exc}") from exc

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        # Touch every top-level value so a malformed one fails here, not later.
        for elem in header:
            _ = elem.value
    except Exception as exc:
        raise InvalidObject(
            StoreStatus.CANNOT_UNDERSTAND, f"cannot parse the header: {exc}"
        ) from exc

    _check_identity(header, sop_class_uid, sop_instance_uid)
    _check_pixels(header, walker.pixel_data, ts)
    return CheckedObject(
        header=header,
        transfer_syntax_uid=str(ts),
        dataset_offset=dataset_offset,
        pixel_data=walker.pixel_data,
    )


def _check_identity(
    header: Dataset, sop_class_uid: str | None, sop_instance_uid: str | None
) -> None:
    ds_class = str(header.get("SOPClassUID", "") or "")
    ds_instance = str(header.get("SOPInstanceUID", "") or "")
    if sop_class_uid is not None and ds_class != sop_class_uid:
        raise InvalidObject(
            StoreStatus.DATASET_MISMATCH,
            f"SOP Class UID {ds_class!r} in the data set, {sop_class_uid!r} in the command",
        )
    if sop_instance_uid is not None and ds_instance != sop_instance_uid:
        raise InvalidObject(
            StoreStatus.DATASET_MISMATCH,
            f"SOP Instance UID {ds_instance!r} in the data set, {sop_instance_uid!r} in the command",
        )
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not str(header.get(keyword, "") or "").strip():
            raise InvalidObject(StoreStatus.DATASET_MISMATCH, f"{keyword} is missing or empty")


def _check_pixels(header: Dataset, pixel_data: PixelDataInfo | None, ts: UID) -> None:
    sop_class = str(header.get("SOPClassUID", ""))
    if pixel_data is None:
        if requires_pixel_data(sop_class):
            raise InvalidObject(StoreStatus.CANNOT_UNDERSTAND, "image object without Pixel Data")
        return
    try:
        for keyword in ("Rows", "Columns", "BitsAllocated"):
            if header.get(keyword) in (None, ""):
                raise InvalidObject(StoreStatus.CANNOT_UNDERSTAND, f"Pixel Data without {keyword}")
        frames = int(header.get("NumberOfFrames", 1) or 1)
        if pixel_data.encapsulated:
            if pixel_data.fragments < max(frames, 1):
                raise InvalidObject(
                    StoreStatus.CANNOT_UNDERSTAND,
                    f"{pixel_data.fragments} Pixel Data fragments for {frames} frame(s)",
                )
            return
        expected = _expected_native_length(header)
    except (TypeError, ValueError) as exc:
        raise InvalidObject(
            StoreStatus.CANNOT_UNDERSTAND, f"bad image pixel description: {exc}"
        ) from exc
    if pixel_data.length not in (expected, expected + 1):
        raise InvalidObject(
            StoreStatus.CANNOT_UNDERSTAND,
            f"Pixel Data holds {pixel_data.length} bytes, the header describes {expected}",
        )
