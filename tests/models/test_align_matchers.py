"""Matchers: SIFT baseline and DISK + LightGlue (onnxruntime) on a real-anatomy pair."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.align.homography import apply_homography
from models.align.matchers.lightglue_onnx import DISK_DIR, GLUE_DIR, WeightsError, _verified_model, mutual_matches
from models.align.matching import get_matcher, to_full_resolution
from tests.models.align_pairs import make_pair


@pytest.fixture(scope="module")
def rigid_pair():
    return make_pair(seed=6, femur_motion=False, implant=False)


@pytest.mark.parametrize("name", ["sift", "disk_lightglue"])
def test_matches_follow_the_true_motion(rigid_pair, name: str) -> None:
    matches = get_matcher(name).match(rigid_pair.pre, rigid_pair.post)
    assert len(matches) >= 15
    error = np.linalg.norm(apply_homography(rigid_pair.h_true, matches.points_pre) - matches.points_post, axis=1)
    assert np.median(error) < 2.0  # pixels
    assert {"features", "matching"} <= set(matches.timings_ms)


def test_matcher_is_cached() -> None:
    assert get_matcher("sift") is get_matcher("sift")
    with pytest.raises(ValueError, match="unknown matcher"):
        get_matcher("loftr")


def test_mutual_filter() -> None:
    log = np.full((1, 4, 4), -10.0)
    log[0, 0, 1] = np.log(0.9)  # mutual, confident
    log[0, 1, 0] = np.log(0.05)  # mutual, below threshold
    log[0, 2, 1] = np.log(0.5)  # not mutual: column 1 prefers row 0
    i0, i1, conf = mutual_matches(log, 0.1)
    assert i0.tolist() == [0] and i1.tolist() == [1] and np.isclose(conf[0], 0.9)


def test_full_resolution_mapping_is_pixel_centre_correct() -> None:
    assert np.allclose(to_full_resolution(np.array([[0.0, 0.0]]), 0.5), [[0.5, 0.5]])
    assert np.allclose(to_full_resolution(np.array([[1.5, 1.5]]), 1.0), [[1.5, 1.5]])


@pytest.mark.parametrize("directory", [DISK_DIR, GLUE_DIR])
def test_weights_manifest(directory: Path) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    assert {"name", "version", "inputs", "outputs", "sha256", "training_data", "licence"} <= set(manifest)
    assert "Apache-2.0" in manifest["licence"]
    _verified_model(directory)  # sha256 matches


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "manifest.json").write_text(json.dumps({"file": "model.onnx", "sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="sha256"):
        _verified_model(tmp_path)
