"""The exposed field of a radiograph: the rectangle the collimator let the beam through.

Radiographers collimate: strips along the film's edges are under the
collimator's shutters and show no anatomy, only a flat band (bright where
unexposed, black where the vendor masks it). The spec's landmarks and
segments are what is visible, so anatomy under a shutter is out of field:
its landmarks are null, its masks end at the shutter's edge, and a structure
that reaches the edge may go on beyond it.

A shutter is found per side as a band from the film's edge inwards that
ends in a grey step at the same line along most of the edge: a straight
line parallel to it. Straightness is what tells a shutter from air beside
the patient (also flat, but bounded by the body's curved outline). Found on
a coarse copy, then placed at full resolution on the steepest step of the
lines' medians.

Pure array code: no I/O, no model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

Point = tuple[float, float]

COARSE_SIDE_PX = 320
"""Longest side of the coarse copy the bands are sought on (about 1.1 mm pixels on a 35 cm film)."""
MAX_SHUTTER_FRACTION = 0.25
"""A shutter covers at most this fraction of the film's extent on its side."""
STEP = 0.15
"""Grey step (image range 0-1, over two coarse lines) at a shutter's edge, at most positions along it."""
SHARP_STEP = 0.3
"""Median step that makes an edge a shutter's whatever the band's grey. A weaker one counts only when
the band is at an end of the grey range (unexposed or masked): a processing ramp at the film's border is not."""
EXTREME_GREY = 0.1
"""How close to black or white (image range 0-1) a band must be for a weaker step to count."""
STRAIGHTNESS = 0.6
"""Fraction of positions along the edge that must step at the same line."""
EDGE_MARGIN_MM = 2.0
"""A mask pixel this close to the field's edge counts as cut by it: the structure may go on beyond it."""
PLACED_BY_MASKS = ("greater_trochanter", "stem_tip", "ischial_tuberosity", "femoral_shaft_distal")
"""Landmarks whose network point only says which one is meant; the outline rules place them on the masks.
A network point beyond the field is clamped into it for the rule to place, not nulled at once. Placed
within :data:`EDGE_MARGIN_MM` of the edge, such a point is null: an extreme (trochanter top, stem tip,
tuberosity) may go on beyond the edge, a distal shaft level is kept off it (as the generator's truth), and a
clamped point the rule could not place stays on the edge."""


class ExposedField(NamedTuple):
    """Half-open pixel rectangle ``[row0, row1) x [col0, col1)``: the film's exposed part."""

    row0: int
    row1: int
    col0: int
    col1: int

    @classmethod
    def whole(cls, shape: tuple[int, int]) -> ExposedField:
        """No collimation seen: the whole film is exposed."""
        return cls(0, int(shape[0]), 0, int(shape[1]))

    def contains(self, xy: tuple[float, float]) -> bool:
        """Whether pixel point ``(x, y)`` lies on an exposed pixel (pixel centres at integers)."""
        x, y = xy
        return self.col0 - 0.5 <= x <= self.col1 - 0.5 and self.row0 - 0.5 <= y <= self.row1 - 0.5

    def near_edge(self, points_xy: np.ndarray, spacing_xy: tuple[float, float] | np.ndarray,
                  margin_mm: float = EDGE_MARGIN_MM) -> bool:
        """Whether any of ``points_xy`` (pixels) lies within ``margin_mm`` of the field's edge.

        A structure's extreme point that close to the edge may be cut by it: the
        structure may go on beyond the edge, and its true extreme with it.
        """
        points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        mx, my = margin_mm / spacing_xy[0], margin_mm / spacing_xy[1]
        return bool(((points[:, 0] < self.col0 + mx) | (points[:, 0] > self.col1 - 1 - mx)
                     | (points[:, 1] < self.row0 + my) | (points[:, 1] > self.row1 - 1 - my)).any())

    def clamp(self, xy: Point) -> Point:
        """The exposed point nearest to ``xy``."""
        return (min(max(xy[0], self.col0), self.col1 - 1.0), min(max(xy[1], self.row0), self.row1 - 1.0))

    def clip(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` with everything outside the field cleared (a copy)."""
        out = np.zeros_like(mask)
        out[self.row0:self.row1, self.col0:self.col1] = mask[self.row0:self.row1, self.col0:self.col1]
        return out

    def intersect(self, other: ExposedField) -> ExposedField:
        """The part exposed in both (an empty overlap leaves ``self``: the two cannot both be right)."""
        box = ExposedField(max(self.row0, other.row0), min(self.row1, other.row1),
                           max(self.col0, other.col0), min(self.col1, other.col1))
        return box if box.row0 < box.row1 and box.col0 < box.col1 else self

    def is_whole(self, shape: tuple[int, int]) -> bool:
        """Whether no collimation was seen on a film of ``shape``."""
        return self == ExposedField.whole(shape)


def _coarse(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """Block-mean copy with longest side about :data:`COARSE_SIDE_PX`, scaled to 0-1 (1st-99th percentile)."""
    image = np.asarray(pixels, dtype=np.float32)
    factor = max(1, int(np.ceil(max(image.shape) / COARSE_SIDE_PX)))
    rows, cols = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor).mean(axis=(1, 3))
    lo, hi = np.percentile(blocks, [1, 99])
    return np.clip((blocks - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0), factor


def band_depth(lines: np.ndarray) -> int:
    """How many of ``lines`` (outermost first, shape ``(depth, along)``) lie under a shutter; 0 when none.

    The band's grey drifts along the edge (the processing's equalization), so
    the test is local: at the band's end most positions step the same way by at
    least :data:`STEP`, at the same line; of several such lines the steepest wins.
    Bone next to a bright shutter makes a weak step, so a weak one counts
    where the band is white or black.
    """
    depth_max, _ = lines.shape
    if depth_max < 4:
        return 0
    steps = lines[:-2] - lines[2:]  # step centred on line k + 1 (an edge may straddle two coarse lines)
    sign = np.where((steps > 0).mean(axis=1) >= 0.5, 1.0, -1.0)[:, None]
    share = (sign * steps > STEP).mean(axis=1)
    candidates = np.flatnonzero(share >= STRAIGHTNESS)
    if len(candidates) == 0:
        return 0
    strength = np.median(sign * steps, axis=1)
    k = int(candidates[np.argmax(strength[candidates])])
    depth = k + 1  # lines 0 .. depth - 1 are (at least partly) under the shutter
    grey = float(np.median(lines[:depth]))
    if strength[k] < SHARP_STEP and EXTREME_GREY < grey < 1.0 - EXTREME_GREY:
        return 0
    return depth


def _edge_line(lines: np.ndarray, lo: int, hi: int) -> int:
    """First line past the steepest step of the lines' medians within ``[lo, hi]`` (``lines`` outermost first)."""
    lo, hi = max(lo, 0), min(hi, len(lines) - 1)
    if hi <= lo:
        return max(lo, 1)
    profile = np.median(lines[lo: hi + 1], axis=1)
    return lo + int(np.argmax(np.abs(np.diff(profile)))) + 1


def detect_exposed_field(pixels: np.ndarray) -> ExposedField:
    """The exposed rectangle of ``pixels`` (any grey scale, bright or dark shutters); the whole film if none."""
    image = np.asarray(pixels, dtype=np.float32)
    rows, cols = image.shape
    coarse, factor = _coarse(image)
    crows, ccols = coarse.shape
    views = {  # each side's lines, outermost first, as (depth, along) arrays
        "top": coarse[: int(MAX_SHUTTER_FRACTION * crows)],
        "bottom": coarse[::-1][: int(MAX_SHUTTER_FRACTION * crows)],
        "left": coarse.T[: int(MAX_SHUTTER_FRACTION * ccols)],
        "right": coarse.T[::-1][: int(MAX_SHUTTER_FRACTION * ccols)],
    }
    depth = {side: band_depth(lines) if len(lines) > 2 else 0 for side, lines in views.items()}
    # full-resolution lines across each edge, over the span the other sides' shutters leave exposed
    r_span = slice(depth["top"] * factor, rows - depth["bottom"] * factor)
    c_span = slice(depth["left"] * factor, cols - depth["right"] * factor)
    full = {"top": image[:, c_span], "bottom": image[::-1, c_span],
            "left": image[r_span, :].T, "right": image[r_span, ::-1].T}
    inset = {side: _edge_line(full[side], (d - 2) * factor, (d + 2) * factor) if d else 0 for side, d in depth.items()}
    return ExposedField(inset["top"], rows - inset["bottom"], inset["left"], cols - inset["right"])


def network_point_in_field(name: str, xy: Point, field: ExposedField) -> Point | None:
    """A network's landmark point, or None when out of field; :data:`PLACED_BY_MASKS` are clamped in instead."""
    if name.rpartition("_")[0] in PLACED_BY_MASKS:
        xy = field.clamp(xy)
    return xy if field.contains(xy) else None


def null_out_of_field(landmarks: Mapping[str, Point | None], field: ExposedField,
                      spacing_mm: tuple[float, float] | None) -> dict[str, Point | None]:
    """``landmarks`` with those outside ``field`` null, and those :data:`PLACED_BY_MASKS` at its edge null too.

    Without a spacing the edge margin is taken as :data:`EDGE_MARGIN_MM` pixels' worth at 1 mm per pixel.
    """
    spacing_xy = (1.0, 1.0) if spacing_mm is None else (spacing_mm[1], spacing_mm[0])
    out: dict[str, Point | None] = {}
    for name, point in landmarks.items():
        if point is not None and (not field.contains(point) or (
                name.rpartition("_")[0] in PLACED_BY_MASKS and field.near_edge(point, spacing_xy))):
            point = None
        out[name] = point
    return out
