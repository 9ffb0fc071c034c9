"""Read a radiograph from DICOM into the form every model expects.

This is the one place that turns a stored object into pixels: decoded (any
transfer syntax pydicom + pylibjpeg/pyjpegls can read), MONOCHROME1 inverted so
bright always means dense, rescaled to float32, with the spec's calibration.
Problems become :class:`UnreadableImage` with a reason a user can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from models.algorithms.calibration import resolve_pixel_spacing


class UnreadableImage(ValueError):
    """The object cannot be turned into a grey-scale radiograph; ``str()`` says why."""


@dataclass
class Radiograph:
    """Decoded grey-scale radiograph, bright = dense (MONOCHROME2 sense)."""

    pixels: np.ndarray  # float32, shape (rows, columns)
    pixel_spacing_mm: tuple[float, float] | None  # (row, col)
    calibration: str | None
    dataset: Dataset  # header (and pixel data) as read
    photometric_interpretation: str
    bits_stored: int


def _number(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _pair(ds: Dataset, keyword: str) -> list[float] | None:
    value = ds.get(keyword)
    if value is None:
        return None
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return values if len(values) == 2 else None


def header_pixel_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    """``((row_mm, col_mm), calibration)`` from a header by the spec's precedence (pixels not needed)."""
    return resolve_pixel_spacing(
        _pair(ds, "PixelSpacing"),
        _pair(ds, "ImagerPixelSpacing"),
        _number(ds, "EstimatedRadiographicMagnificationFactor"),
    )


def radiograph_from_dataset(ds: Dataset) -> Radiograph:
    """Decode ``ds`` (which must carry PixelData) into a :class:`Radiograph`."""
    if "PixelData" not in ds:
        raise UnreadableImage("object has no pixel data")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnreadableImage(f"not a grey-scale image (PhotometricInterpretation {photometric or 'missing'})")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise UnreadableImage("not a grey-scale image (SamplesPerPixel > 1)")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise UnreadableImage("multi-frame object: a single projection radiograph is expected")
    try:
        array = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for codec trouble
        raise UnreadableImage(f"pixel data cannot be decoded: {exc}") from exc
    if array.ndim != 2:
        raise UnreadableImage(f"unexpected pixel array shape {array.shape}")
    pixels = array.astype(np.float32)
    slope = _number(ds, "RescaleSlope")
    intercept = _number(ds, "RescaleIntercept")
    if slope is not None and slope != 0:
        pixels = pixels * np.float32(slope)
    if intercept is not None:
        pixels = pixels + np.float32(intercept)
    if photometric == "MONOCHROME1":
        pixels = pixels.max() + pixels.min() - pixels
    spacing, calibration = header_pixel_spacing(ds)
    return Radiograph(
        pixels=pixels,
        pixel_spacing_mm=spacing,
        calibration=calibration,
        dataset=ds,
        photometric_interpretation=photometric,
        bits_stored=int(ds.get("BitsStored", array.dtype.itemsize * 8)),
    )


def load_radiograph(path: str | Path) -> Radiograph:
    """Read and decode a DICOM file; raises :class:`UnreadableImage` with the reason."""
    try:
        ds = pydicom.dcmread(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise UnreadableImage(f"not a readable DICOM file: {exc}") from exc
    return radiograph_from_dataset(ds)
