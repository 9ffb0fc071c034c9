"""Fine-stage crops: a square window of fixed size in mm around a point, on a fixed mm grid.

The coarse networks see the whole radiograph at about 3 mm per pixel, which
is too coarse for 1-2 mm landmarks or a 4 mm joint space. The fine stage cuts
a window around each coarse estimate out of the same radiograph resampled to
a finer isotropic grid (a :class:`Level`), mirrored for the left side so one
network serves both hips. Training (``models/training/crop_dataset.py``) and
inference (``models/inference/refine.py``) cut crops with these functions, so
both see the same pixels.

Pure numpy/OpenCV, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.algorithms.vocabulary import MIDLINE_LANDMARKS, PER_SIDE_LANDMARKS, SIDES
from models.inference.preprocess import normalise

FINE_LANDMARK_TYPES: tuple[str, ...] = (*PER_SIDE_LANDMARKS, *MIDLINE_LANDMARKS)
"""Output channels of the fine landmark model: one per landmark *type*. A left-side
crop is mirrored, so ``greater_trochanter_left`` is read from the ``greater_trochanter`` channel."""

FINE_HIP_SEGMENTS: tuple[str, ...] = ("femoral_head", "acetabular_roof", "joint_space", "implant")
"""Output channels of the fine hip segmentation model (of the crop's side; left crops mirrored)."""

FINE_PELVIS_SEGMENTS: tuple[str, ...] = ("pelvis",)
"""Output channel of the fine pelvis model, cut around each ischial tuberosity: the coarse pelvis mask,
about 1.4 mm per pixel, loses the thin bottom of the ischium whose extreme is the tuberosity."""


@dataclass(frozen=True)
class FineSegmentation:
    """A fine segmentation task: crops centred on one per-side landmark, these segments as channels."""

    centre: str  # per-side landmark stem the crop is centred on
    segments: tuple[str, ...]
    sided: bool  # the source masks are per side (``femoral_head_right``), not one (``pelvis``)

    def source_key(self, segment: str, side: str) -> str:
        """The training-data mask a channel of a ``side`` crop is read from."""
        return f"{segment}_{side}" if self.sided else segment

    @property
    def source_keys(self) -> tuple[str, ...]:
        """Every source mask the task reads, each once."""
        return tuple(dict.fromkeys(self.source_key(seg, side) for seg in self.segments for side in SIDES))


FINE_SEGMENTATION: dict[str, FineSegmentation] = {
    "hip-fine": FineSegmentation("femoral_head_centre", FINE_HIP_SEGMENTS, sided=True),
    "pelvis-fine": FineSegmentation("ischial_tuberosity", FINE_PELVIS_SEGMENTS, sided=False),
}
"""The fine segmentation tasks by name (training, export and inference read their crops from here)."""


def landmark_type(name: str) -> tuple[str, str | None]:
    """``greater_trochanter_left`` -> (``greater_trochanter``, ``left``); midline -> (name, None)."""
    base, _, side = name.rpartition("_")
    return (base, side) if side in ("right", "left") and base in PER_SIDE_LANDMARKS else (name, None)


@dataclass(frozen=True)
class Level:
    """The radiograph normalised and area-resampled to ``mm_per_px`` (isotropic).

    ``fx``/``fy``: source pixels per level pixel along x / y (pixel-centre exact).
    """

    image: np.ndarray
    fx: float
    fy: float
    mm_per_px: float

    def from_source(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return np.stack([(pts[:, 0] + 0.5) / self.fx - 0.5, (pts[:, 1] + 0.5) / self.fy - 0.5], axis=1)

    def to_source(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return np.stack([(pts[:, 0] + 0.5) * self.fx - 0.5, (pts[:, 1] + 0.5) * self.fy - 0.5], axis=1)


def level_shape(shape: tuple[int, int], spacing_mm: tuple[float, float], mm_per_px: float) -> tuple[int, int]:
    """(rows, cols) of an image of ``shape`` resampled to ``mm_per_px``."""
    rows, cols = shape
    return max(1, round(rows * spacing_mm[0] / mm_per_px)), max(1, round(cols * spacing_mm[1] / mm_per_px))


def make_level(pixels: np.ndarray, spacing_mm: tuple[float, float], mm_per_px: float) -> Level:
    """Area-resample (no aliasing when shrinking) and normalise as the coarse grid does (5-95 %, min-max)."""
    img = np.asarray(pixels, dtype=np.float32)
    rows, cols = level_shape(img.shape, spacing_mm, mm_per_px)
    small = cv2.resize(img, (cols, rows), interpolation=cv2.INTER_AREA)
    return Level(normalise(small), img.shape[1] / cols, img.shape[0] / rows, mm_per_px)


def resample_mask(mask: np.ndarray, level_rows_cols: tuple[int, int]) -> np.ndarray:
    """A boolean source mask on the level grid (area fraction >= 0.5)."""
    rows, cols = level_rows_cols
    return cv2.resize(np.asarray(mask, np.float32), (cols, rows), interpolation=cv2.INTER_AREA) >= 0.5


@dataclass(frozen=True)
class Crop:
    """Crop pixel (u, v) -> level pixel: ``centre + linear @ ((u, v) - (size - 1) / 2)``.

    ``linear`` holds the mirror (x negated for the left side) and, in training,
    a small rotation and scale.
    """

    centre: tuple[float, float]
    linear: np.ndarray  # (2, 2)
    size: int

    @classmethod
    def around(cls, centre_level: np.ndarray, size: int, mirror: bool = False,
               angle_deg: float = 0.0, scale: float = 1.0) -> Crop:
        a = np.deg2rad(angle_deg)
        rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        flip = np.diag([-1.0 if mirror else 1.0, 1.0])
        c = np.asarray(centre_level, np.float64).reshape(2)
        return cls((float(c[0]), float(c[1])), rot @ flip, size)

    @property
    def matrix(self) -> np.ndarray:
        """2x3 crop -> level affine (for ``cv2.warpAffine`` with ``WARP_INVERSE_MAP``)."""
        half = (self.size - 1) / 2.0
        offset = np.asarray(self.centre) - self.linear @ np.array([half, half])
        return np.hstack([self.linear, offset[:, None]])

    def to_level(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        m = self.matrix
        return pts @ m[:, :2].T + m[:, 2]

    def from_level(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        m = self.matrix
        return (pts - m[:, 2]) @ np.linalg.inv(m[:, :2]).T

    def cut(self, image: np.ndarray, nearest: bool = False) -> np.ndarray:
        """The crop of a level-grid ``image`` (zeros outside it)."""
        flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
        return cv2.warpAffine(image, self.matrix, (self.size, self.size), flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def source_window(self, level: Level, source_shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1), end-exclusive: the source pixels the crop covers, or None if it misses the image."""
        half = self.size - 0.5
        corners = level.to_source(self.to_level(np.array([[-0.5, -0.5], [half, -0.5], [-0.5, half], [half, half]])))
        rows, cols = source_shape
        x0, y0 = (max(0, int(np.floor(v))) for v in corners.min(axis=0))
        x1, y1 = min(cols, int(np.ceil(corners[:, 0].max())) + 1), min(rows, int(np.ceil(corners[:, 1].max())) + 1)
        return None if x0 >= x1 or y0 >= y1 else (x0, y0, x1, y1)

    def paste_on_source(self, crop_maps: np.ndarray, level: Level, window: tuple[int, int, int, int]) -> np.ndarray:
        """(C, S, S) crop-grid float maps bilinearly resampled onto the source ``window``; 0 outside the crop."""
        x0, y0, x1, y1 = window
        # window pixel (x, y) -> source (x + x0, y + y0) -> level -> crop
        to_level = np.array([[1 / level.fx, 0, (x0 + 0.5) / level.fx - 0.5],
                             [0, 1 / level.fy, (y0 + 0.5) / level.fy - 0.5], [0, 0, 1]])
        inverse = np.vstack([cv2.invertAffineTransform(self.matrix), [0, 0, 1]])
        window_to_crop = (inverse @ to_level)[:2]
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        return np.stack([cv2.warpAffine(np.asarray(m, np.float32), window_to_crop, (x1 - x0, y1 - y0), flags=flags,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=0) for m in crop_maps])
