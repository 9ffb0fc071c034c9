"""Calibrated head and roof mask thresholds: the manifest field, and ``hipnode eval hip-threshold``.

The command runs the committed reference weights on generator films of a
training anatomy (new seed), as a user would calibrate; what is asserted can
fail: the threshold must reach the masks (a lower one narrows every measured
joint space), the chosen one must be the least biased, and ``--write`` must
leave a manifest the analysis reads.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.inference.refine import DEFAULT_MASK_THRESHOLD, FineHipModel, manifest_mask_thresholds
from models.inference.runtime import WEIGHTS_ROOT, ModelUnavailable
from models.training.calibrate_hip import (
    CALIBRATED_SEGMENTS,
    ThresholdScore,
    best_threshold,
    score_thresholds,
    unbiased_threshold,
)
from node.cli import main

LABELS = ("femoral_head", "acetabular_roof", "joint_space", "implant")


@pytest.mark.parametrize("raw, match", [
    ({"femur": 0.4}, "names 'femur'"),
    ({"femoral_head": "high"}, "not a number"),
    ({"acetabular_roof": 1.0}, r"not in \(0, 1\)"),
    ([0.4], "not an object"),
])
def test_a_bad_mask_threshold_in_the_manifest_is_refused_by_name(raw: object, match: str):
    with pytest.raises(ModelUnavailable, match=match):
        manifest_mask_thresholds({"mask_thresholds": raw}, LABELS, Path("w"))


def test_segments_without_a_calibrated_threshold_start_at_one_half():
    assert manifest_mask_thresholds({}, LABELS, Path("w")) == {}
    model = FineHipModel(WEIGHTS_ROOT / "hip_fine")
    assert model.threshold("joint_space") == DEFAULT_MASK_THRESHOLD == 0.5
    assert model.threshold("implant") == 0.5


def test_the_committed_hip_model_carries_the_threshold_it_was_calibrated_with():
    manifest = json.loads((WEIGHTS_ROOT / "hip_fine" / "manifest.json").read_text())
    calibration = manifest["mask_thresholds_calibration"]
    assert set(manifest["mask_thresholds"]) == set(CALIBRATED_SEGMENTS)
    assert abs(calibration["mean_signed_error_mm"]) < 0.1
    assert "Pelvic-Ref-002" not in json.dumps(calibration["data_header"])  # not the anatomy it is evaluated on
    model = FineHipModel(WEIGHTS_ROOT / "hip_fine")
    assert [model.threshold(s) for s in CALIBRATED_SEGMENTS] == [manifest["mask_thresholds"][s] for s in CALIBRATED_SEGMENTS]


def test_the_zero_crossing_is_interpolated_between_the_candidates_that_bracket_it():
    scores = [ThresholdScore(0.3, (-0.1,), {}), ThresholdScore(0.4, (0.1,), {}), ThresholdScore(0.5, (0.3,), {})]
    assert unbiased_threshold(scores) == 0.35
    assert unbiased_threshold(scores[1:]) is None  # biased the same way everywhere: no crossing to offer


def test_the_least_biased_threshold_is_chosen_and_ties_go_to_one_half():
    scores = [ThresholdScore(0.3, (-0.3, -0.1), {}), ThresholdScore(0.4, (0.05, -0.01), {}),
              ThresholdScore(0.5, (0.2, 0.1), {})]
    assert best_threshold(scores).threshold == 0.4
    tied = [ThresholdScore(0.4, (0.1,), {}), ThresholdScore(0.5, (-0.1,), {}), ThresholdScore(0.6, (0.1,), {})]
    assert best_threshold(tied).threshold == 0.5
    with pytest.raises(ValueError, match="nothing to calibrate"):
        best_threshold([ThresholdScore(0.4, (), {})])


def test_eval_hip_threshold_measures_each_candidate_and_writes_the_choice(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]):
    data = tmp_path / "films"
    assert main(["synth", "--dataset", str(data), "--labels", "models/synth/pelvic_ref/Pelvic-Ref-001",
                 "--samples", "3", "--size", "1000", "--seed", "4242"]) == 0
    weights = tmp_path / "weights"
    weights.mkdir()
    for folder in WEIGHTS_ROOT.iterdir():
        if folder.is_dir() and folder.name != "hip_fine":
            (weights / folder.name).symlink_to(folder.resolve())
    (weights / "hip_fine").mkdir()
    for name in ("manifest.json", "model.onnx"):
        shutil.copy(WEIGHTS_ROOT / "hip_fine" / name, weights / "hip_fine" / name)
    capsys.readouterr()

    assert main(["eval", "hip-threshold", "--data", str(data), "--weights", str(weights),
                 "--thresholds", "0.25", "0.5", "0.75", "--write"]) == 0
    out = capsys.readouterr().out
    rows = {float(line.split()[0]): line.split() for line in out.splitlines() if line.strip()[:1].isdigit()}
    assert {0.25, 0.5, 0.75} <= set(rows) and len(rows) <= 4, out  # plus the zero crossing, when bracketed
    assert sum("<- chosen" in line for line in out.splitlines()) == 1
    n = {int(r[1]) for r in rows.values()}
    mean_error = {t: float(r[2]) for t, r in rows.items()}
    assert len(n) == 1 and n.pop() >= 3, out  # the same native hips at every threshold
    # larger head and roof masks leave a narrower gap: the threshold reaches the masks the width is measured on
    ordered = [mean_error[t] for t in sorted(mean_error)]
    assert ordered == sorted(ordered) and ordered[0] < ordered[-1], out
    chosen = min(mean_error, key=lambda t: abs(mean_error[t]))
    assert "<- chosen" in " ".join(rows[chosen])
    manifest = json.loads((weights / "hip_fine" / "manifest.json").read_text())
    assert manifest["mask_thresholds"] == {s: chosen for s in CALIBRATED_SEGMENTS}
    assert manifest["mask_thresholds_calibration"]["data_header"]["seed"] == 4242
    assert FineHipModel(weights / "hip_fine").threshold("acetabular_roof") == chosen
    assert np.isclose(manifest["mask_thresholds_calibration"]["mean_signed_error_mm"], mean_error[chosen], atol=1e-3)


def test_eval_hip_threshold_refuses_a_threshold_outside_zero_to_one(tmp_path: Path):
    assert main(["eval", "hip-threshold", "--data", str(tmp_path), "--thresholds", "0.4", "1.5"]) == 2


def test_a_film_the_analysis_refuses_is_named_and_left_out(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """A calibration set the analysis cannot read gives a logged reason per film and no threshold, not a guess."""
    from models.inference.analyzer import HipAnalyzer

    data = tmp_path / "films"
    assert main(["synth", "--dataset", str(data), "--labels", "models/synth/pelvic_ref/Pelvic-Ref-001",
                 "--samples", "1", "--size", "512", "--seed", "4243"]) == 0
    (npz,) = data.glob("*.npz")
    with np.load(npz) as film:
        arrays = {k: film[k] for k in film.files}
    arrays["image"] = np.zeros_like(arrays["image"])  # blank: not analysable
    np.savez_compressed(npz, **arrays)
    logging.getLogger().addHandler(caplog.handler)  # the CLI's logging set-up replaced the root's handlers
    try:
        caplog.set_level("WARNING", logger="models.training.calibrate_hip")
        scores = score_thresholds(HipAnalyzer.from_weights(WEIGHTS_ROOT), data, [0.4, 0.5])
    finally:
        logging.getLogger().removeHandler(caplog.handler)
    assert [len(s.signed_errors_mm) for s in scores] == [0, 0]
    refused = [r for r in caplog.records if "not analysable" in r.getMessage()]
    assert len(refused) == 1 and refused[0].film == npz.stem and refused[0].reason
    with pytest.raises(ValueError, match="nothing to calibrate"):
        best_threshold(scores)
