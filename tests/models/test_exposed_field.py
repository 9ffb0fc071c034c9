"""Collimator shutters: found in the pixels, and out of field in the generator's truth and in the analysis.

The detector is checked on the generator's own films (real exposure and
processing, the exposed rectangle known exactly) and on drawn images that
must not count as shutters: air beside a curved body, a processing ramp.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.algorithms.exposed_field import ExposedField, detect_exposed_field, null_out_of_field
from models.synth.anatomy import load_anatomy
from models.synth.dataset import render_sample
from models.synth.detector import exposed_field, sample_processing
from models.synth.generator import Exam, render_exam, sample_patient, sample_pose
from models.synth.reference_data import PELVIC_REF_DIR

LABELS = [str(PELVIC_REF_DIR / name / "label.mhd") for name in ("Pelvic-Ref-001", "Pelvic-Ref-002", "Pelvic-Ref-004")]


@pytest.mark.parametrize("index", range(10))
def test_the_detector_finds_the_generators_exposed_field(index: int) -> None:
    """Every side within 2 px at 512 px (collimated or not; 80 films of another seed: at most 1 px, none missed)."""
    exam, _ = render_sample(LABELS, seed=41, index=index, size_px=512)
    truth = exposed_field(exam.presentation.shape, exam.processing)
    found = detect_exposed_field(exam.presentation)
    assert np.abs(np.subtract(found, truth)).max() <= 2, (found, truth)


def test_a_black_masked_shutter_and_a_bright_one_are_both_found() -> None:
    rng = np.random.default_rng(0)
    rows, cols = 600, 800
    y, x = np.mgrid[:rows, :cols]
    image = 0.5 + 0.2 * np.sin(x / 37.0) * np.cos(y / 23.0) + 0.02 * rng.standard_normal((rows, cols))
    image[:70] = 0.0  # vendor-masked (black) shutter at the top
    image[:, 690:] = 1.0 + 0.02 * rng.standard_normal((rows, 110))  # unexposed (white) shutter on the right
    assert detect_exposed_field(image.astype(np.float32)) == ExposedField(70, rows, 0, 690)


def test_air_beside_a_curved_body_is_not_a_shutter() -> None:
    """Air is flat too, but the body's outline is not a straight line along the film's edge."""
    rows, cols = 600, 800
    y, x = np.mgrid[:rows, :cols]
    half_width = 300 + 60 * np.cos(y / rows * np.pi)  # hips wider than the waist and thighs
    body = np.abs(x - cols / 2) < half_width
    image = np.where(body, 0.55 + 0.1 * np.sin(x / 19.0), 0.02).astype(np.float32)
    assert detect_exposed_field(image).is_whole((rows, cols))


def test_a_processing_ramp_at_the_films_edge_is_not_a_shutter() -> None:
    """An uncollimated film whose processing darkens its top 15 rows: a weak step on a mid-grey band."""
    exam, _ = render_sample(LABELS, seed=31, index=77, size_px=1000)
    assert not any(exam.processing.collimation)
    assert detect_exposed_field(exam.presentation).is_whole(exam.presentation.shape)


def test_out_of_field_landmarks_and_cut_extremes_are_null() -> None:
    field = ExposedField(10, 400, 20, 500)
    landmarks = {
        "femoral_head_centre_right": (100.0, 200.0),  # inside
        "lesser_trochanter_right": (15.0, 200.0),  # under the left shutter
        "greater_trochanter_right": (22.0, 150.0),  # an extreme 1 mm from the edge: cut
        "femoral_shaft_distal_right": (22.0, 390.0),  # placed by the masks off the edge: at it, unplaced
        "acetabular_lateral_edge_right": (21.0, 100.0),  # not placed by a mask extreme: kept at the edge
        "stem_tip_left": (300.0, 398.5),  # an extreme at the bottom edge: cut
        "stem_tip_right": None,
    }
    out = null_out_of_field(landmarks, field, (0.5, 0.5))
    assert out == {**landmarks, "lesser_trochanter_right": None, "greater_trochanter_right": None,
                   "stem_tip_left": None, "femoral_shaft_distal_right": None}


def _post_op_exam(collimation: tuple[float, float, float, float]) -> Exam:
    """One right-implanted exam at 512 px; only the collimation varies between calls."""
    anatomy = load_anatomy(LABELS[0])
    rng = np.random.default_rng(3)
    patient, pose = sample_patient(anatomy, rng, ("right",)), sample_pose(rng)
    processing = dataclasses.replace(sample_processing(np.random.default_rng(1)), collimation=collimation)
    return render_exam(patient, pose, "post", 512, np.random.default_rng(2), processing)


def test_the_generator_calls_anatomy_under_a_shutter_out_of_field() -> None:
    open_film, shuttered = _post_op_exam((0.0, 0.0, 0.0, 0.0)), _post_op_exam((0.0, 0.15, 0.0, 0.0))
    row1 = exposed_field(shuttered.presentation.shape, shuttered.processing).row1
    assert open_film.landmarks["stem_tip_right"][1] > row1  # the stem ends under the bottom shutter...
    assert shuttered.landmarks["stem_tip_right"] is None  # ...so its tip is out of field
    for name, point in shuttered.landmarks.items():
        assert point is None or point[1] <= row1 - 0.5, name
    distal_open, distal = open_film.landmarks["femoral_shaft_distal_left"], shuttered.landmarks["femoral_shaft_distal_left"]
    assert distal_open[1] > row1 - 5 and distal is not None and distal[1] < row1 - 5  # highest visible level instead
    for name, mask in shuttered.masks.items():
        assert not mask[row1:].any(), name
        assert np.array_equal(mask[:row1], open_film.masks[name][:row1]), name


@dataclasses.dataclass
class _Film:
    """What the analyzer reads of a radiograph (``node.imaging.Radiograph``'s fields)."""

    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    calibration: str = "magnification_corrected"
    dataset: object = None


def test_the_analysis_calls_what_lies_under_a_shutter_out_of_field() -> None:
    """Reference weights on the shuttered film above: the stem tip under the shutter is null, not invented."""
    from models.inference.analyzer import HipAnalyzer

    exam = _post_op_exam((0.0, 0.15, 0.0, 0.0))
    truth = exposed_field(exam.presentation.shape, exam.processing)
    result = HipAnalyzer.from_weights()(_Film(exam.presentation, exam.pixel_spacing_mm))
    assert result.not_analysable is None
    assert np.abs(np.subtract(result.exposed_field_px, truth)).max() <= 2
    assert result.landmarks["stem_tip_right"] is None
    row1 = result.exposed_field_px[1]
    assert all(p is None or p[1] <= row1 - 0.5 for p in result.landmarks.values())
    assert all(not mask[row1:].any() for mask in result.masks.values())
    assert result.to_json()["exposed_field_px"] == list(result.exposed_field_px)


def test_a_dicom_display_shutter_narrows_the_field() -> None:
    """The header's rectangle (1-based, edges shown) and the pixels' shutters: the part exposed in both."""
    from pydicom.dataset import Dataset

    from models.inference.analyzer import display_shutter

    ds = Dataset()
    ds.ShutterShape = "RECTANGULAR"
    ds.ShutterLeftVerticalEdge, ds.ShutterRightVerticalEdge = 31, 470
    ds.ShutterUpperHorizontalEdge, ds.ShutterLowerHorizontalEdge = 11, 380
    shutter = display_shutter(ds, (400, 500))
    assert shutter == ExposedField(10, 380, 30, 470)
    assert ExposedField(20, 400, 0, 500).intersect(shutter) == ExposedField(20, 380, 30, 470)
    ds.ShutterRightVerticalEdge = 900  # beyond the image: not usable
    assert display_shutter(ds, (400, 500)) is None
    ds.ShutterShape = "CIRCULAR"
    assert display_shutter(ds, (400, 500)) is None and display_shutter(None, (400, 500)) is None
    assert ExposedField(0, 10, 0, 10).intersect(ExposedField(20, 30, 20, 30)) == ExposedField(0, 10, 0, 10)
