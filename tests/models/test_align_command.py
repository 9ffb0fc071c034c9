"""``hipnode align`` end to end on DICOM files: success with CDM, and every refusal path."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.align.evaluate import mean_radial_error
from node.cli import main
from tests.models.align_pairs import make_pair, write_dx
from tests.real_images import with_hip_film_header


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("align")
    pair = make_pair(seed=5)
    return {
        "pair": pair,
        "pre": write_dx(root / "pre.dcm", pair.pre),
        "post": write_dx(root / "post.dcm", pair.post),
        "other_patient": write_dx(root / "other.dcm", pair.post, patient_id="SOMEONE-ELSE"),
        "chest": write_dx(root / "chest.dcm", pair.post, body_part="CHEST"),
        "blank": write_dx(root / "blank.dcm", np.zeros_like(pair.post) + np.eye(*pair.post.shape)),
        # the iliac wings only, cut above the hips (as a real CT's upper pelvis was, docs/align.md):
        # hipnode analyze finds no pelvis with a hip, so the model's pelvis map is off its domain
        "upper_pre": write_dx(root / "upper_pre.dcm", pair.pre[: int(0.45 * pair.pre.shape[0])]),
        "upper_post": write_dx(root / "upper_post.dcm", pair.post[: int(0.45 * pair.post.shape[0])]),
        "real_chest": _real_chest_as_pelvis(root / "real_chest.dcm", root / "pre.dcm"),
    }


def _real_chest_as_pelvis(path: Path, same_patient_as: Path) -> Path:
    """A real CR chest film (pydicom-data RG1, MIT) whose header claims the pre-op's patient and a pelvis."""
    from pydicom import dcmread

    ds, pre = with_hip_film_header("RG1_UNCR.dcm"), dcmread(same_patient_as, stop_before_pixels=True)
    ds.PatientID, ds.PatientName = pre.PatientID, pre.PatientName
    ds.save_as(path)
    return path


def _align(tmp_path: Path, pre: Path, post: Path, *extra: str) -> tuple[int, dict[str, object], Path]:
    out = tmp_path / "out.json"
    cdm = tmp_path / "cdm.png"
    status = main(["align", str(pre), str(post), "--json", str(out), "--cdm", str(cdm), *extra])
    return status, json.loads(out.read_text()), cdm


def test_align_writes_homography_and_cdm(files, tmp_path: Path) -> None:
    status, result, cdm = _align(tmp_path, files["pre"], files["post"], "--method", "weighted")
    assert status == 0, result.get("failure")
    assert result["method"] == "weighted" and "failure" not in result
    assert result["pelvis_probability_source"] in ("classical_stand_in", "segmentation_model")
    assert result["inliers"] >= 12 and result["matches"] >= result["inliers"]
    assert {"match", "homography", "total"} <= set(result["timings_ms"])
    h = np.asarray(result["homography"])
    pair = files["pair"]
    diagonal = float(np.hypot(*pair.post.shape))
    assert mean_radial_error(h, pair.points_pre, pair.points_post) / diagonal < 0.02
    image = cv2.imread(str(cdm), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.shape == (*pair.post.shape, 3)
    assert image.std() > 5  # not a flat picture


@pytest.mark.parametrize(
    ("pre_key", "post_key", "reason"),
    [
        ("pre", "other_patient", "different patients"),
        ("pre", "chest", "not a pelvis or hip"),
        ("blank", "post", "pre-op image: no pelvis found"),
        ("upper_pre", "upper_post", "pre-op image: no femoral head or hip implant found"),
        # the segmentation "finds" a pelvis in it and takes a humerus for an implant (docs/models.md)
        ("pre", "real_chest", "post-op image: no femoral head or hip implant found"),
    ],
)
def test_refused_pairs_write_reason_and_no_cdm(files, tmp_path: Path, pre_key: str, post_key: str, reason: str) -> None:
    stale = tmp_path / "cdm.png"
    stale.write_bytes(b"old map")
    status, result, cdm = _align(tmp_path, files[pre_key], files[post_key], "--matcher", "sift")
    assert status == 3
    assert reason in result["failure"]
    assert result["homography"] is None
    assert not cdm.exists()


def test_unreadable_input_is_a_failure_not_a_crash(files, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.dcm"
    bogus.write_bytes(b"not dicom at all")
    status, result, cdm = _align(tmp_path, bogus, files["post"])
    assert status == 3 and result["failure"].startswith("unreadable image")
    assert not cdm.exists()


def test_missing_input_exits_1(files, tmp_path: Path) -> None:
    assert main(["align", str(tmp_path / "nope.dcm"), str(files["post"]), "--json", str(tmp_path / "o.json")]) == 1
