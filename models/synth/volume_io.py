"""Readers for the two volume formats the generator accepts.

MetaImage (``.mhd`` + raw or zlib ``.zraw``) for the pelvic-ref label maps and
NIfTI-1 (``.nii`` / ``.nii.gz``) for CT volumes. Both are small formats; a
reader of a few dozen lines avoids SimpleITK / nibabel as dependencies.
Volumes come back as ``(array[x, y, z], spacing_mm (3,), origin_mm (3,))`` in
LPS-like axes: x toward the patient's left, y posterior, z superior.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class VolumeFormatError(ValueError):
    """The file is not a volume this reader understands; ``str()`` says why."""


@dataclass(frozen=True)
class Volume:
    """A 3D array indexed ``[x, y, z]`` with its voxel spacing and origin in mm."""

    data: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    name: str


_MET_TYPES = {
    "MET_SHORT": np.int16,
    "MET_USHORT": np.uint16,
    "MET_CHAR": np.int8,
    "MET_UCHAR": np.uint8,
    "MET_INT": np.int32,
    "MET_UINT": np.uint32,
    "MET_FLOAT": np.float32,
    "MET_DOUBLE": np.float64,
}


def read_metaimage(path: str | Path) -> Volume:
    """Read a 3D MetaImage (``.mhd``) with raw or zlib-compressed data.

    Only axis-aligned volumes (identity TransformMatrix) in RAI (= LPS) order
    are accepted, which is what the pelvic-ref maps are.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "label.mhd"
    if not path.is_file():
        raise VolumeFormatError(f"{path}: no such MetaImage header")
    header: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            header[key.strip()] = value.strip()
    try:
        dims = [int(v) for v in header["DimSize"].split()]
        spacing = [float(v) for v in header.get("ElementSpacing", "1 1 1").split()]
        origin = [float(v) for v in header.get("Offset", header.get("Origin", "0 0 0")).split()]
        dtype = np.dtype(_MET_TYPES[header["ElementType"]])
        data_file = header["ElementDataFile"]
    except (KeyError, ValueError) as exc:
        raise VolumeFormatError(f"{path}: incomplete or malformed MetaImage header ({exc})") from exc
    if len(dims) != 3:
        raise VolumeFormatError(f"{path}: expected a 3D image, NDims gives {len(dims)}")
    matrix = [float(v) for v in header.get("TransformMatrix", "1 0 0 0 1 0 0 0 1").split()]
    if not np.allclose(np.abs(np.array(matrix)), np.eye(3).ravel()):
        raise VolumeFormatError(f"{path}: oblique TransformMatrix is not supported")
    orientation = header.get("AnatomicalOrientation", "RAI").upper()
    if orientation not in ("RAI", "???"):
        raise VolumeFormatError(f"{path}: orientation {orientation} not supported (expected RAI)")
    if header.get("BinaryDataByteOrderMSB", "False").lower() == "true":
        dtype = dtype.newbyteorder(">")
    if data_file == "LOCAL":
        raise VolumeFormatError(f"{path}: embedded (LOCAL) data is not supported")
    raw = (path.parent / data_file).read_bytes()
    if header.get("CompressedData", "False").lower() == "true":
        try:
            raw = zlib.decompress(raw)
        except zlib.error as exc:
            raise VolumeFormatError(f"{path}: compressed data is corrupt ({exc})") from exc
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise VolumeFormatError(f"{path}: data has {len(raw)} bytes, header implies {expected}")
    array = np.frombuffer(raw, dtype=dtype).reshape(dims[::-1]).transpose(2, 1, 0)
    name = path.parent.name if path.stem == "label" else path.stem
    return Volume(np.ascontiguousarray(array), tuple(spacing), tuple(origin), name)  # type: ignore[arg-type]


_NIFTI_TYPES = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64, 256: np.int8, 512: np.uint16}


def read_nifti(path: str | Path) -> Volume:
    """Read a 3D NIfTI-1 volume (single file, optionally gzip), scaled by scl_slope/inter.

    The voxel axes are assumed to be (close to) the scanner axes; the qform /
    sform signs decide whether x and y are flipped into LPS order.
    """
    path = Path(path)
    if not path.is_file():
        raise VolumeFormatError(f"{path}: no such file")
    blob = path.read_bytes()
    if blob[:2] == b"\x1f\x8b":
        blob = gzip.decompress(blob)
    if len(blob) < 352:
        raise VolumeFormatError(f"{path}: too short for a NIfTI-1 header")
    for endian in ("<", ">"):
        if struct.unpack(endian + "i", blob[:4])[0] == 348:
            break
    else:
        raise VolumeFormatError(f"{path}: not a NIfTI-1 file (sizeof_hdr != 348)")
    dim = struct.unpack(endian + "8h", blob[40:56])
    if dim[0] < 3 or any(d > 1 for d in dim[4 : dim[0] + 1]):
        raise VolumeFormatError(f"{path}: expected a single 3D volume, dim={dim[: dim[0] + 1]}")
    datatype = struct.unpack(endian + "h", blob[70:72])[0]
    if datatype not in _NIFTI_TYPES:
        raise VolumeFormatError(f"{path}: unsupported NIfTI datatype {datatype}")
    pixdim = struct.unpack(endian + "8f", blob[76:108])
    vox_offset = int(struct.unpack(endian + "f", blob[108:112])[0])
    slope, inter = struct.unpack(endian + "2f", blob[112:120])
    srow = np.array(struct.unpack(endian + "12f", blob[280:328])).reshape(3, 4)
    sform_code = struct.unpack(endian + "h", blob[254:256])[0]
    shape = dim[1:4]
    dtype = np.dtype(_NIFTI_TYPES[datatype]).newbyteorder(endian)
    count = int(np.prod(shape))
    if len(blob) < vox_offset + count * dtype.itemsize:
        raise VolumeFormatError(f"{path}: data is truncated")
    data = np.frombuffer(blob, dtype=dtype, count=count, offset=vox_offset).reshape(shape[::-1]).transpose(2, 1, 0)
    data = data.astype(np.float32)
    if slope not in (0.0,) and np.isfinite(slope):
        data = data * np.float32(slope) + np.float32(inter if np.isfinite(inter) else 0.0)
    spacing = tuple(abs(float(p)) or 1.0 for p in pixdim[1:4])
    origin = [0.0, 0.0, 0.0]
    if sform_code > 0:
        # NIfTI world is RAS; flip axes whose direction points the RAS way so the array is LPS.
        if srow[0, 0] > 0:
            data = data[::-1]
        if srow[1, 1] > 0:
            data = data[:, ::-1]
        if srow[2, 2] < 0:
            data = data[:, :, ::-1]
        origin = [-float(srow[0, 3]), -float(srow[1, 3]), float(srow[2, 3])]
    name = path.name.split(".")[0]
    return Volume(np.ascontiguousarray(data), spacing, tuple(origin), name)  # type: ignore[arg-type]


def write_nifti(path: str | Path, data: np.ndarray, spacing_mm: tuple[float, float, float]) -> None:
    """Write a float32 NIfTI-1 volume in LPS array order (RAS sform with flipped x, y); for tests."""
    data = np.asarray(data, np.float32)
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *data.shape, 1, 1, 1, 1)
    struct.pack_into("<h", header, 70, 16)
    struct.pack_into("<h", header, 72, 32)
    struct.pack_into("<8f", header, 76, 1.0, *spacing_mm, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352.0)
    struct.pack_into("<2f", header, 112, 1.0, 0.0)
    struct.pack_into("<h", header, 254, 1)
    struct.pack_into("<4f", header, 280, -spacing_mm[0], 0, 0, 0)
    struct.pack_into("<4f", header, 296, 0, -spacing_mm[1], 0, 0)
    struct.pack_into("<4f", header, 312, 0, 0, spacing_mm[2], 0)
    header[344:348] = b"n+1\x00"
    Path(path).write_bytes(bytes(header) + data.transpose(2, 1, 0).tobytes())
