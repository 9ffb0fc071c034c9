"""The generator's `pubic_symphysis` truth is the pubic joint, found from the hip-bone label, not the sacral midline.

Two of the three pelvic-ref maps have their symphysis 5-6 mm from the sacrum's
mid-plane; a truth picked near the sacral midline sat on one pubic body,
10 mm from the joint on the film.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.synth.anatomy import symphysis_gap_x
from models.synth.volume_io import Volume, VolumeFormatError

SPACING = (1.0, 1.0, 3.0)
ORIGIN = (-100.0, -50.0, 0.0)


def _pubic_bodies(gap_centre_mm: float, gap_mm: float, bridge: bool = False) -> Volume:
    """Hip-bone label: two 30 mm wide pubic bodies facing each other across a gap at ``gap_centre_mm`` (x)."""
    data = np.zeros((200, 100, 40), bool)
    xs = ORIGIN[0] + np.arange(200) * SPACING[0]
    right = (xs >= gap_centre_mm - gap_mm / 2 - 30) & (xs < gap_centre_mm - gap_mm / 2)
    left = (xs > gap_centre_mm + gap_mm / 2) & (xs <= gap_centre_mm + gap_mm / 2 + 30)
    data[right, 20:40, 10:25] = True
    data[left, 20:40, 10:25] = True
    data[:40, 60:90, 15:35] = True  # an ilium far from the midline
    if bridge:  # labels that fuse the joint in one place
        data[(xs > gap_centre_mm - 3) & (xs < gap_centre_mm + 3), 30, 20] = True
    return Volume(data, SPACING, ORIGIN, "phantom")


@pytest.mark.parametrize("offset", [-6.0, 0.0, 6.0])
@pytest.mark.parametrize("bridge", [False, True])
def test_the_gap_is_found_wherever_the_sacral_midline_is(offset: float, bridge: bool) -> None:
    volume = _pubic_bodies(gap_centre_mm=offset, gap_mm=4.0, bridge=bridge)
    assert symphysis_gap_x(volume.data, volume, midline_x=0.0) == pytest.approx(offset, abs=1.0)


def test_no_bone_near_the_midline_is_a_format_error() -> None:
    volume = _pubic_bodies(gap_centre_mm=0.0, gap_mm=4.0)
    empty = np.zeros_like(volume.data)
    with pytest.raises(VolumeFormatError, match="symphysis"):
        symphysis_gap_x(empty, volume, midline_x=0.0)


def test_a_single_pubic_body_is_a_format_error_not_its_edge() -> None:
    volume = _pubic_bodies(gap_centre_mm=0.0, gap_mm=4.0)
    xs = ORIGIN[0] + np.arange(volume.data.shape[0]) * SPACING[0]
    one_side = volume.data.copy()
    one_side[xs > 0] = False
    with pytest.raises(VolumeFormatError, match="no gap between two pubic bodies"):
        symphysis_gap_x(one_side, volume, midline_x=0.0)
