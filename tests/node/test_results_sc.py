"""Secondary Capture encoders: colour difference map and burned-in overlay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from models.algorithms.results import PairAlignment
from node.results import EncodingError, encode_cdm_sc, encode_overlay_sc
from node.results.overlay import Panel, render_overlay
from tests.node.results_sources import ALIGN_ALGO, make_alignment, make_analysis, make_cdm, make_dx
from tests.node.results_validate import dciodvfy, require_tools


@pytest.fixture(scope="module")
def pair():
    pre = make_dx(study_date="20240105", seed=1)
    post = make_dx(charset="ISO_IR 100", study_date="20240610", seed=2, with_pixel_spacing=True)
    return pre, post


def _source_uids(ds: pydicom.Dataset) -> set[str]:
    return {item.ReferencedSOPInstanceUID for item in ds.SourceImageSequence}


def test_cdm_round_trip_and_header(pair, tmp_path: Path) -> None:
    pre, post = pair
    cdm = make_cdm()
    path = tmp_path / "cdm.dcm"
    encode_cdm_sc(pre, post, cdm, make_alignment()).save_as(path, enforce_file_format=True)
    ds = pydicom.dcmread(path)
    assert np.array_equal(ds.pixel_array, cdm)  # lossless, exact
    assert ds.PhotometricInterpretation == "RGB" and int(ds.BitsAllocated) == 8
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] and ds.ConversionType == "WSD"
    assert _source_uids(ds) == {pre.SOPInstanceUID, post.SOPInstanceUID}
    assert ds.StudyInstanceUID == post.StudyInstanceUID
    assert ds.SpecificCharacterSet == "ISO_IR 100" and str(ds.PatientName) == "Müller^Jürgen"
    assert ds.SeriesDescription == "HipNode AI colour difference map"
    assert ds.BurnedInAnnotation == "NO"
    assert any(e.get("ManufacturerModelName") == ALIGN_ALGO.name for e in ds.ContributingEquipmentSequence)
    require_tools()
    verdict = dciodvfy(path)
    assert verdict.errors == [], verdict.output


def _cdm_header(pre: pydicom.Dataset, post: pydicom.Dataset, tmp_path: Path) -> pydicom.Dataset:
    path = tmp_path / "cdm.dcm"
    encode_cdm_sc(pre, post, make_cdm(), make_alignment()).save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def test_cdm_carries_the_post_op_spacing_where_it_is_in_the_patients_plane(tmp_path: Path) -> None:
    """On the post-op grid the map measures like the post-op image: in mm where that image's mm are the patient's."""
    pre = make_dx(seed=1)
    calibrated = _cdm_header(pre, make_dx(seed=2, with_pixel_spacing=True), tmp_path)
    assert [float(v) for v in calibrated.PixelSpacing] == [0.61, 0.61]
    assert calibrated.PixelSpacingCalibrationType == "GEOMETRY"  # the source's own calibration, carried
    assert calibrated.PixelSpacingCalibrationDescription == "magnification at the table"

    magnified = _cdm_header(pre, make_dx(seed=3), tmp_path)  # ImagerPixelSpacing 0.7, ERMF 1.15
    assert [float(v) for v in magnified.PixelSpacing] == pytest.approx([0.7 / 1.15] * 2, abs=1e-5)
    assert magnified.PixelSpacingCalibrationType == "GEOMETRY"
    assert "Magnification Factor" in magnified.PixelSpacingCalibrationDescription
    require_tools()
    verdict = dciodvfy(tmp_path / "cdm.dcm")
    other_warnings = [line for line in verdict.output.splitlines() if line.startswith("Warning") and "99HIPNODE" not in line]
    assert verdict.errors == [] and other_warnings == [], verdict.output  # the spacing attributes belong to SC


def test_cdm_carries_no_spacing_at_the_detector_plane_or_off_the_post_op_grid(tmp_path: Path) -> None:
    pre, post = make_dx(seed=1), make_dx(seed=2)
    del post.EstimatedRadiographicMagnificationFactor  # detector-plane mm would be magnified ones
    assert "PixelSpacing" not in _cdm_header(pre, post, tmp_path)
    path = tmp_path / "scaled.dcm"
    encode_cdm_sc(pre, make_dx(seed=2, with_pixel_spacing=True), make_cdm(scale=2), make_alignment()).save_as(
        path, enforce_file_format=True)
    assert "PixelSpacing" not in pydicom.dcmread(path)  # not the post-op grid: its spacing would be wrong


def test_overlay_pair_is_drawn_and_valid(pair, tmp_path: Path) -> None:
    pre, post = pair
    pre_a, post_a = make_analysis(), make_analysis(post_op=True)
    sc = encode_overlay_sc([(pre, pre_a), (post, post_a)], {"delta_leg_length_discrepancy": 1.5})
    path = tmp_path / "overlay.dcm"
    sc.save_as(path, enforce_file_format=True)
    ds = pydicom.dcmread(path)
    rgb = ds.pixel_array
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.shape[1] > rgb.shape[0]  # two panels side by side
    assert ds.BurnedInAnnotation == "YES"
    assert _source_uids(ds) == {pre.SOPInstanceUID, post.SOPInstanceUID}
    # Coloured pixels exist (lines, points): a grey image has R == G == B everywhere.
    coloured = (rgb[..., 0].astype(int) - rgb[..., 2].astype(int)) != 0
    assert coloured.sum() > 500
    require_tools()
    verdict = dciodvfy(path)
    assert verdict.errors == [], verdict.output


def test_overlay_marks_the_landmarks_where_they_are() -> None:
    pixels = np.zeros((200, 200), np.float32)
    lm = {"femoral_head_centre_left": (150.0, 50.0), "femoral_head_centre_right": None}
    rgb = render_overlay([Panel(pixels, lm, "t")], [], height=200)
    assert rgb.shape == (200, 200, 3)
    assert tuple(rgb[50, 150]) == (80, 160, 255)  # the left-side colour at the point
    assert tuple(rgb[150, 50]) == (0, 0, 0)  # nothing drawn for a missing landmark


def test_overlay_uses_given_pixels(pair) -> None:
    pre, post = pair
    analysis = make_analysis()
    flat = np.full((int(post.Rows), int(post.Columns)), 7.0, np.float32)
    given = encode_overlay_sc([(post, analysis)], pixels=[flat]).pixel_array
    decoded = encode_overlay_sc([(post, analysis)]).pixel_array
    assert not np.array_equal(given, decoded)  # the flat image was drawn, not the file's
    with pytest.raises(EncodingError, match="do not match"):
        encode_overlay_sc([(post, analysis)], pixels=[flat[:10]])


def test_refusals() -> None:
    pre, post = make_dx(), make_dx()
    failed = PairAlignment(homography=None, method="weighted", matcher="orb", failure="too few inliers")
    with pytest.raises(EncodingError, match="too few inliers"):
        encode_cdm_sc(pre, post, make_cdm(), failed)
    with pytest.raises(EncodingError, match="uint8"):
        encode_cdm_sc(pre, post, make_cdm().astype(np.float32), make_alignment())
    with pytest.raises(EncodingError, match="one or two"):
        encode_overlay_sc([])
    broken = make_dx()
    broken.PhotometricInterpretation = "RGB"
    with pytest.raises(EncodingError, match="overlay"):
        encode_overlay_sc([(broken, make_analysis())])
