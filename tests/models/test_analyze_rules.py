"""The analyzer's decisions, from tables: header and pixel checks, content checks, null landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from models.algorithms.vocabulary import LANDMARKS, SEGMENTS
from models.inference.analyzer import (
    Header,
    content_problem,
    decide_landmarks,
    header_problem,
    hip_joints,
    measure,
    operated_sides,
    pixel_problem,
)
from models.inference.landmarks import LandmarkOutput
from models.inference.preprocess import grid_transform
from models.inference.segmentation import SegmentationOutput

HEADERS = [
    (Header("DX", "PELVIS", "AP"), None),
    (Header("CR", "", ""), None),
    (Header("DX", "HIP", "PA"), None),
    (Header("DX", "CHEST", "PA"), "body part"),
    (Header("CR", "KNEE", "AP"), "body part"),
    (Header("DX", "PELVIS", "LL"), "lateral"),
    (Header("DX", "HIP", "LATERAL"), "lateral"),
    (Header("MR", "PELVIS", ""), "modality"),
    # ViewPosition empty, the view coded instead (DX, CID 4010)
    (Header("DX", "HIP", "", "ANTERO-POSTERIOR"), None),
    (Header("DX", "PELVIS", "", "POSTERO-ANTERIOR"), None),
    (Header("DX", "HIP", "", "MEDIO-LATERAL"), "medio-lateral view (ViewCodeSequence)"),
    (Header("DX", "HIP", "", "RIGHT LATERAL"), "right lateral view"),
    (Header("DX", "PELVIS", "", "LEFT OBLIQUE"), "oblique"),
    (Header("CR", "HIP", "AP", "AXIAL"), "axial"),
    # ViewPosition and the view code empty, the view named only in free text (CR menus, series descriptions)
    (Header("CR", "HIP", "", "", ("HIP LAT",)), "'HIP LAT'"),
    (Header("CR", "PELVIS", "", "", ("PELVIS AP", "Huefte axial".upper())), "'HUEFTE AXIAL'"),
    (Header("DX", "PELVIS", "", "", ("", "BECKEN/HUEFTE LAUENSTEIN LI")), "LAUENSTEIN"),
    (Header("DX", "HIP", "", "", ("Frog-leg lateral R".upper(),)), "FROG-LEG"),
    (Header("DX", "PELVIS", "", "", ("PELVIS JUDET (OBTURATOR OBLIQUE)",)), "JUDET"),
    (Header("DX", "PELVIS", "", "", ("PELVIS A.P.", "BILATERAL HIPS")), None),  # BILATERAL is not LAT
    (Header("CR", "HIP", "", "", ("HIP AP/LAT",)), None),  # names both: the pixels decide
    (Header("DX", "PELVIS", "", "", ("AP pelvis post-op (synthetic)".upper(),)), None),
    (Header("DX", "PELVIS", "", "", ("LATERALITY CHECK", "PLATE 2")), None),  # words, not substrings
]


@pytest.mark.parametrize(("header", "reason"), HEADERS)
def test_header_table(header: Header, reason: str | None):
    got = header_problem(header)
    assert (got is None) if reason is None else (reason in got)


def test_pixel_checks():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:400, 0:500]
    ok = (np.sin(xx / 40.0) * np.cos(yy / 55.0) + 0.05 * rng.random((400, 500))).astype(np.float32)
    assert pixel_problem(ok, (0.5, 0.5)) is None
    assert "noise" in pixel_problem(rng.random((400, 500)).astype(np.float32), (0.5, 0.5))
    assert "too small" in pixel_problem(ok[:100], (0.5, 0.5))
    assert "field of view" in pixel_problem(ok, (0.2, 0.2))
    assert "blank" in pixel_problem(np.full((400, 500), 3.0, np.float32), None)
    nan = ok.copy()
    nan[0, 0] = np.nan
    assert "non-finite" in pixel_problem(nan, None)


def _seg(maps: dict[str, np.ndarray], size: int = 64) -> SegmentationOutput:
    probs = np.zeros((len(SEGMENTS), size, size), np.float32)
    for name, m in maps.items():
        probs[SEGMENTS.index(name)] = m
    return SegmentationOutput(probs, grid_transform((size, size), (1.0, 1.0), size), SEGMENTS)


def _box(y0: int, y1: int, x0: int, x1: int, size: int = 64) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    m[y0:y1, x0:x1] = 1.0
    return m


def test_content_needs_a_pelvis_and_a_hip():
    assert "no pelvis" in content_problem(_seg({}))
    assert "femoral head" in content_problem(_seg({"pelvis": _box(5, 40, 5, 60)}))
    head, roof = _box(40, 46, 40, 46), _box(37, 39, 39, 47)
    assert content_problem(_seg({"pelvis": _box(5, 40, 5, 60), "femoral_head_left": head,
                                 "acetabular_roof_left": roof})) is None
    assert content_problem(_seg({"pelvis": _box(5, 40, 5, 60), "implant_right": _box(40, 50, 10, 16)})) is None
    assert "implausible" in content_problem(_seg({"pelvis": _box(0, 64, 0, 64)}))


def test_a_femoral_head_is_a_hip_only_under_its_roof():
    """A head-sized blob with no acetabular roof beside it (what the network found in an
    ultrasound frame) is no hip joint; a roof far from the head does not count either."""
    pelvis, head = _box(5, 40, 5, 60), _box(40, 46, 40, 46)
    alone = content_problem(_seg({"pelvis": pelvis, "femoral_head_left": head}))
    assert "without an acetabular roof on the left" in alone
    far_roof = _box(10, 12, 10, 18)
    assert content_problem(_seg({"pelvis": pelvis, "femoral_head_left": head, "acetabular_roof_left": far_roof})) is not None
    assert hip_joints(_seg({"pelvis": pelvis, "femoral_head_left": head, "acetabular_roof_left": _box(37, 39, 39, 47)})) == {
        "right": False, "left": True}


def test_a_strip_of_metal_is_no_hip_implant():
    """A hip implant holds a round head; a long thin strip (a humerus the network took for
    metal in a real chest film) is no implant, however large."""
    pelvis = _box(5, 40, 5, 60)
    strip = _box(2, 62, 2, 5)  # 60 x 3 px: 4.4% of the image, elongation far above 12
    assert operated_sides(_seg({"pelvis": pelvis, "implant_right": strip}))["right"] is False
    assert "shaped like a bone shaft" in content_problem(_seg({"pelvis": pelvis, "implant_right": strip}))
    stem_with_head = np.maximum(_box(30, 62, 8, 11), _box(28, 38, 4, 14))  # head 10 x 10 on a 32 px stem
    assert operated_sides(_seg({"pelvis": pelvis, "implant_right": stem_with_head}))["right"] is True


def test_an_implant_counts_by_its_largest_piece():
    """Thin bright structures mistaken for metal come in many pieces; an implant is one.

    12 separate 1 x 4 strips cover 1.2% of the image (over the 1% that calls a side
    operated) but none alone does: no implant. One 6 x 6 block (0.9%) plus the strips:
    still none. One 10 x 8 block (2%): operated.
    """
    pelvis = _box(5, 40, 5, 60)
    strips = np.zeros((64, 64), np.float32)
    for k in range(12):
        strips[4 + 5 * k, 2:6] = 1.0
    assert "femoral head" in content_problem(_seg({"pelvis": pelvis, "implant_right": strips}))
    assert operated_sides(_seg({"pelvis": pelvis, "implant_right": strips}))["right"] is False
    assert operated_sides(_seg({"pelvis": pelvis, "implant_right": np.maximum(strips, _box(40, 46, 40, 46))}))["right"] is False
    assert operated_sides(_seg({"pelvis": pelvis, "implant_right": np.maximum(strips, _box(40, 50, 10, 18))}))["right"] is True


def _landmarks(presence: float = 0.9) -> LandmarkOutput:
    xy = {n: (10.0 + i, 20.0) for i, n in enumerate(LANDMARKS)}
    return LandmarkOutput(xy, xy, {n: presence for n in LANDMARKS})


def test_implant_points_are_null_without_an_implant():
    seg = _seg({"pelvis": _box(5, 40, 5, 60), "implant_left": _box(40, 60, 40, 48),
                "femoral_head_right": _box(38, 44, 12, 18), "femur_right": _box(38, 62, 8, 20)})
    out = decide_landmarks(_landmarks(), seg)
    assert set(out) == set(LANDMARKS)
    for name in ("cup_rim_lateral", "cup_rim_medial", "stem_tip"):
        assert out[f"{name}_right"] is None
        assert out[f"{name}_left"] is not None
    assert out["femoral_head_centre_right"] == (10.0 + LANDMARKS.index("femoral_head_centre_right"), 20.0)
    assert out["femoral_head_centre_left"] is not None  # the prosthetic head's centre


def test_presence_comes_from_the_segmentation_not_the_disc_peak():
    """Weak discs do not hide a segmented structure; a missing structure hides its points."""
    pelvis_only = _seg({"pelvis": _box(5, 40, 5, 60)})
    out = decide_landmarks(_landmarks(0.01), pelvis_only)
    assert out["pubic_symphysis"] is not None and out["ischial_tuberosity_left"] is not None
    per_side = ("femoral_head_centre", "greater_trochanter", "lesser_trochanter",
                "femoral_shaft_proximal", "femoral_shaft_distal", "cup_rim_lateral", "stem_tip")
    assert all(out[f"{name}_{side}"] is None for name in per_side for side in ("right", "left"))
    with_femur = _seg({"pelvis": _box(5, 40, 5, 60), "femur_left": _box(38, 62, 44, 56)})
    out = decide_landmarks(_landmarks(0.01), with_femur)
    assert out["lesser_trochanter_left"] is not None and out["femoral_head_centre_left"] is None
    assert out["lesser_trochanter_right"] is None


def test_out_of_field_points_are_null():
    seg = _seg({"pelvis": _box(5, 40, 5, 60)})
    far = _landmarks()
    far.source_xy["pubic_symphysis"] = (200.0, 20.0)
    assert decide_landmarks(far, seg)["pubic_symphysis"] is None


def test_measure_without_calibration_keeps_angles_only():
    lm = {n: None for n in LANDMARKS}
    lm.update({"ischial_tuberosity_right": (10.0, 100.0), "ischial_tuberosity_left": (90.0, 100.0),
               "femoral_head_centre_right": (20.0, 60.0), "acetabular_lateral_edge_right": (12.0, 45.0),
               "lesser_trochanter_right": (25.0, 110.0), "lesser_trochanter_left": (75.0, 112.0)})
    no_cal = measure(lm, None, {})
    assert no_cal["lateral_centre_edge_angle_right"] is not None
    assert no_cal["hip_centre_height_right"] is None and no_cal["leg_length_discrepancy"] is None
    cal = measure(lm, (0.5, 0.5), {})
    assert cal["hip_centre_height_right"] == pytest.approx(20.0)
    assert cal["leg_length_discrepancy"] == pytest.approx(-1.0)
