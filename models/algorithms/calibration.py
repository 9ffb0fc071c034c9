"""Pixel spacing in millimetres and where it came from (spec "Conventions").

Pure: takes the attribute values, not a dataset, so it is testable from tables.
"""

from __future__ import annotations

from collections.abc import Sequence


def resolve_pixel_spacing(
    pixel_spacing: Sequence[float] | None,
    imager_pixel_spacing: Sequence[float] | None,
    magnification_factor: float | None,
) -> tuple[tuple[float, float] | None, str | None]:
    """Return ``((row_mm, col_mm), calibration)`` by the spec's precedence.

    PixelSpacing (calibrated) wins; else ImagerPixelSpacing divided by
    EstimatedRadiographicMagnificationFactor; else ImagerPixelSpacing at the
    detector plane. ``(None, None)`` when no spacing is known.

    >>> resolve_pixel_spacing(None, [0.14, 0.14], 1.15)[1]
    'magnification_corrected'
    >>> resolve_pixel_spacing([0.12, 0.12], [0.14, 0.14], 1.15)
    ((0.12, 0.12), 'pixel_spacing')
    """
    if pixel_spacing is not None and len(pixel_spacing) == 2 and min(pixel_spacing) > 0:
        return (float(pixel_spacing[0]), float(pixel_spacing[1])), "pixel_spacing"
    if imager_pixel_spacing is not None and len(imager_pixel_spacing) == 2 and min(imager_pixel_spacing) > 0:
        row, col = float(imager_pixel_spacing[0]), float(imager_pixel_spacing[1])
        if magnification_factor is not None and magnification_factor > 0:
            m = float(magnification_factor)
            return (row / m, col / m), "magnification_corrected"
        return (row, col), "detector_plane"
    return None, None
