"""Bring a radiograph onto the networks' working grid, and back.

Shared by training (``models/training/dataset.py``) and inference, so both see
the same pixels: isotropic resampling from the calibration (the longer physical
side fitted to ``size`` pixels), 5-95 percentile clipping then min-max to
[0, 1], and zero padding to a square ``size`` x ``size`` canvas. The returned
:class:`GridTransform` maps working-grid coordinates back to source pixels,
which is how masks and landmarks land on the source grid.

Input pixels must already be "bright = dense" (``node.imaging`` inverts
MONOCHROME1), so nothing here knows about DICOM.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORK_SIZE = 192
"""Default working-grid edge in pixels (both networks)."""


@dataclass(frozen=True)
class GridTransform:
    """Source pixel (x, y) = work pixel (x, y) * scale + offset, per axis.

    ``scale_x``/``scale_y`` are source pixels per working pixel; the working
    grid is isotropic, so ``work_mm_per_px`` is the same along both axes.
    """

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    source_shape: tuple[int, int]  # (rows, cols)
    content_shape: tuple[int, int]  # (rows, cols) of the image inside the padded canvas
    size: int
    work_mm_per_px: float | None

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` working-grid (x, y) points to source pixels."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        out = np.empty_like(pts)
        out[:, 0] = pts[:, 0] * self.scale_x + self.offset_x
        out[:, 1] = pts[:, 1] * self.scale_y + self.offset_y
        return out

    def to_work(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` source (x, y) points to the working grid."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        out = np.empty_like(pts)
        out[:, 0] = (pts[:, 0] - self.offset_x) / self.scale_x
        out[:, 1] = (pts[:, 1] - self.offset_y) / self.scale_y
        return out


def grid_transform(
    shape: tuple[int, int], spacing_mm: tuple[float, float] | None, size: int = WORK_SIZE
) -> GridTransform:
    """Isotropic fit of an image of ``shape`` (rows, cols) into ``size`` pixels.

    Without a spacing the source pixels are taken as square (there is nothing
    better to go on; mm results then carry no calibration).
    """
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 1 or cols < 1:
        raise ValueError(f"empty image shape {shape}")
    row_mm, col_mm = spacing_mm if spacing_mm is not None else (1.0, 1.0)
    height, width = rows * row_mm, cols * col_mm
    work_mm = max(height, width) / size
    content_rows = max(1, min(size, int(round(height / work_mm))))
    content_cols = max(1, min(size, int(round(width / work_mm))))
    scale_y = rows / content_rows
    scale_x = cols / content_cols
    # Pixel centres: work pixel i covers source [i*s, (i+1)*s), centre at (i+0.5)*s - 0.5.
    return GridTransform(
        scale_x=scale_x,
        scale_y=scale_y,
        offset_x=0.5 * scale_x - 0.5,
        offset_y=0.5 * scale_y - 0.5,
        source_shape=(rows, cols),
        content_shape=(content_rows, content_cols),
        size=size,
        work_mm_per_px=None if spacing_mm is None else work_mm,
    )


def normalise(image: np.ndarray, low_pct: float = 5.0, high_pct: float = 95.0) -> np.ndarray:
    """5-95 percentile clipping then min-max to [0, 1]; a flat image becomes zeros."""
    img = np.asarray(image, dtype=np.float32)
    # Percentiles of a strided subsample: same answer to a grey level, far cheaper on 5 Mpx.
    step = max(1, int(np.sqrt(img.size / 250_000)))
    sample = img[::step, ::step]
    lo, hi = np.percentile(sample, [low_pct, high_pct])
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 1e-6 * max(1.0, abs(float(hi))):
        return np.zeros_like(img, dtype=np.float32)
    out = (np.clip(img, lo, hi) - lo) / (hi - lo)
    return out.astype(np.float32)


def to_work_grid(
    image: np.ndarray, spacing_mm: tuple[float, float] | None, size: int = WORK_SIZE
) -> tuple[np.ndarray, GridTransform]:
    """Resample, normalise and pad ``image`` onto a ``size`` x ``size`` float32 canvas."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected a 2D grey-scale image, got shape {img.shape}")
    tf = grid_transform(img.shape, spacing_mm, size)
    rows, cols = tf.content_shape
    small = cv2.resize(img, (cols, rows), interpolation=cv2.INTER_AREA)
    small = normalise(small)
    canvas = np.zeros((size, size), dtype=np.float32)
    canvas[:rows, :cols] = small
    return canvas, tf


def mask_to_work_grid(mask: np.ndarray, tf: GridTransform) -> np.ndarray:
    """Area-resample a boolean source mask to a float working-grid map in [0, 1]."""
    rows, cols = tf.content_shape
    small = cv2.resize(np.asarray(mask, dtype=np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((tf.size, tf.size), dtype=np.float32)
    canvas[:rows, :cols] = small
    return canvas


def map_to_source(work_map: np.ndarray, tf: GridTransform) -> np.ndarray:
    """Bilinearly resample a working-grid float map back onto the source grid."""
    rows, cols = tf.content_shape
    content = np.ascontiguousarray(work_map[:rows, :cols], dtype=np.float32)
    src_rows, src_cols = tf.source_shape
    return cv2.resize(content, (src_cols, src_rows), interpolation=cv2.INTER_LINEAR)
