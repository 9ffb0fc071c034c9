"""Burn landmarks, measurement lines and values into an RGB picture (pure drawing).

For viewers that do not render SR: the picture shows what the SR says. It
takes grey-scale pixels and plain dicts, never a dataset. OpenCV's Hershey
fonts are ASCII only, hence ``deg`` instead of a degree sign.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from models.algorithms.vocabulary import MEASUREMENT_UNITS
from node.results import geometry

Point = tuple[float, float]

SIDE_COLOURS: dict[str | None, tuple[int, int, int]] = {
    "right": (255, 80, 80),  # RGB
    "left": (80, 160, 255),
    None: (255, 220, 0),
}
REFERENCE_COLOUR = (0, 230, 120)
TEXT_COLOUR = (255, 255, 255)


@dataclass
class Panel:
    """One radiograph to draw: grey pixels (bright = dense), its landmarks and a title."""

    pixels: np.ndarray
    landmarks: Mapping[str, Point | None]
    title: str
    spacing_mm: tuple[float, float] | None = None  # (row, col): perpendiculars in mm


def to_display_grey(pixels: np.ndarray) -> np.ndarray:
    """Stretch to uint8 between the 1st and 99th percentiles (a robust window)."""
    values = np.asarray(pixels, dtype=np.float32)
    lo, hi = np.percentile(values, [1.0, 99.0])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def _side(name: str) -> str | None:
    for side in ("right", "left"):
        if name.endswith(f"_{side}"):
            return side
    return None


def _xy(p: Point, scale: float) -> tuple[int, int]:
    return int(round(p[0] * scale)), int(round(p[1] * scale))


def _draw_panel(panel: Panel, height: int) -> np.ndarray:
    grey = to_display_grey(panel.pixels)
    scale = height / grey.shape[0]
    width = max(1, int(round(grey.shape[1] * scale)))
    grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    rgb = np.repeat(grey[:, :, None], 3, axis=2).copy()
    thickness = max(1, height // 400)
    lm = panel.landmarks
    rows, cols = panel.pixels.shape[:2]
    line = geometry.reference_line(lm)
    if line is not None:
        clipped = geometry.clip_line(line[0], line[1], cols, rows)
        if clipped is not None:
            cv2.line(rgb, _xy(clipped[0], scale), _xy(clipped[1], scale), REFERENCE_COLOUR, thickness)
    for side in ("right", "left"):
        axis = geometry.shaft_axis(lm, side)
        if axis is not None:
            clipped = geometry.clip_line(axis[0], axis[1], cols, rows)
            if clipped is not None:
                cv2.line(rgb, _xy(clipped[0], scale), _xy(clipped[1], scale), SIDE_COLOURS[side], thickness)
    for name in MEASUREMENT_UNITS:
        polyline = geometry.measurement_polyline(name, lm, panel.spacing_mm)
        if polyline is None:
            continue
        pts = np.array([_xy(p, scale) for p in polyline], dtype=np.int32)
        cv2.polylines(rgb, [pts], False, SIDE_COLOURS[_side(name)], thickness, cv2.LINE_AA)
    radius = max(2, height // 150)
    for name, point in lm.items():
        if point is None:
            continue
        cv2.circle(rgb, _xy(point, scale), radius, SIDE_COLOURS[_side(name)], -1, cv2.LINE_AA)
    font_scale = max(0.4, height / 700)
    cv2.putText(rgb, panel.title, (8, int(24 * font_scale)), cv2.FONT_HERSHEY_SIMPLEX,
                font_scale, TEXT_COLOUR, max(1, thickness), cv2.LINE_AA)
    return rgb


def format_value(name: str, value: float) -> str:
    """``femoral_offset_right: 38.4 mm`` (ASCII units)."""
    unit = MEASUREMENT_UNITS.get(name, "mm")
    return f"{name}: {value:+.1f} {unit}" if name.startswith("delta_") else f"{name}: {value:.1f} {unit}"


def render_overlay(
    panels: Sequence[Panel],
    text_lines: Sequence[str],
    *,
    height: int = 768,
) -> np.ndarray:
    """Panels side by side at ``height`` rows, with ``text_lines`` in a band below.

    Returns an RGB uint8 array (rows, columns, 3).
    """
    if not panels:
        raise ValueError("at least one panel is needed")
    drawn = [_draw_panel(p, height) for p in panels]
    gap = np.zeros((height, max(2, height // 100), 3), np.uint8)
    row: list[np.ndarray] = []
    for i, image in enumerate(drawn):
        if i:
            row.append(gap)
        row.append(image)
    top = np.concatenate(row, axis=1)
    font_scale = max(0.4, height / 1000)
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(t, font, font_scale, 1)[0] for t in text_lines]
    line_height = max((h for _, h in sizes), default=10) + 8
    col_width = max((w for w, _ in sizes), default=1) + 24
    columns = max(1, top.shape[1] // col_width)
    n_rows = -(-len(text_lines) // columns) if text_lines else 0
    band = np.zeros((n_rows * line_height + (8 if n_rows else 0), top.shape[1], 3), np.uint8)
    for i, text in enumerate(text_lines):
        c, r = divmod(i, n_rows)  # fill each column top to bottom
        cv2.putText(band, text, (6 + c * col_width, (r + 1) * line_height), font,
                    font_scale, TEXT_COLOUR, 1, cv2.LINE_AA)
    return np.ascontiguousarray(np.concatenate([top, band], axis=0))
