"""The fine stage: crop geometry, training crops, and the refined analysis end to end (toy data, tiny nets).

Geometry is checked with exact points (a bright pixel must land where the
transform says); the training sets with the toy dataset's known landmarks and
masks; the end-to-end test trains all five models on the toy data, exports
them to ONNX and runs ``HipAnalyzer.from_weights`` on a toy image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.inference.analyzer import HipAnalyzer
from models.inference.crops import (
    FINE_HIP_SEGMENTS,
    FINE_LANDMARK_TYPES,
    FINE_SEGMENTATION,
    Crop,
    landmark_type,
    make_level,
)
from models.inference.refine import FineLandmarkModel, FinePelvisModel
from models.training.crop_dataset import (
    CropAugment,
    LandmarkCropSet,
    SegmentCropSet,
    load_fine_sample,
)
from models.training.dataset import list_samples, load_folder
from models.training.export import export_model
from models.training.toydata import toy_sample, write_toy_dataset
from models.training.train import TrainConfig, train
from node.cli import main


def test_landmark_type_reads_side_and_midline():
    assert landmark_type("greater_trochanter_left") == ("greater_trochanter", "left")
    assert landmark_type("femoral_head_centre_right") == ("femoral_head_centre", "right")
    assert landmark_type("pubic_symphysis") == ("pubic_symphysis", None)
    assert set(FINE_LANDMARK_TYPES) >= {"stem_tip", "pubic_symphysis"} and len(FINE_LANDMARK_TYPES) == 11


def _spot_image() -> np.ndarray:
    image = np.zeros((400, 300), np.float32)
    image[200:204, 120:124] = 10.0  # a bright 4x4 block centred on source (121.5, 201.5)
    image += np.linspace(0, 1, 300, dtype=np.float32)[None]  # some contrast for the normalisation
    return image


@pytest.mark.parametrize("mirror", [False, True])
def test_crop_cuts_where_the_transform_says_and_pastes_back(mirror: bool):
    level = make_level(_spot_image(), (0.2, 0.2), 0.4)  # 2 source px per level px
    assert level.image.shape == (200, 150) and level.fx == level.fy == 2.0
    spot_level = level.from_source(np.array([[121.5, 201.5]]))[0]
    crop = Crop.around(spot_level + [3.0, -2.0], 32, mirror=mirror)
    cut = crop.cut(level.image)
    v, u = np.unravel_index(np.argmax(cut), cut.shape)
    expected = crop.from_level(spot_level[None])[0]
    assert abs(u - expected[0]) <= 1 and abs(v - expected[1]) <= 1
    # mirrored: the spot, 3 level px left of the crop centre, appears right of it
    assert (expected[0] > 15.5) == mirror
    assert np.allclose(crop.to_level(crop.from_level(spot_level[None])), spot_level[None])
    window = crop.source_window(level, (400, 300))
    assert window is not None
    pasted = crop.paste_on_source(cut[None], level, window)[0]
    y, x = np.unravel_index(np.argmax(pasted), pasted.shape)
    assert abs(x + window[0] - 121.5) <= 2.5 and abs(y + window[1] - 201.5) <= 2.5


def test_rotated_crop_inverts_exactly():
    crop = Crop.around(np.array([50.0, 40.0]), 48, mirror=True, angle_deg=7.0, scale=1.05)
    pts = np.array([[0.0, 0.0], [47.0, 12.5], [23.5, 23.5]])
    assert np.allclose(crop.from_level(crop.to_level(pts)), pts)
    assert np.allclose(crop.to_level(np.array([[23.5, 23.5]])), [[50.0, 40.0]])


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toy_fine"), 6, seed=3)


def test_landmark_crops_centre_the_landmark_and_mirror_the_left_side(toy: Path):
    samples = [load_fine_sample(r, 1.0) for r in list_samples(toy)]
    data = LandmarkCropSet(samples, 96, 1.0, seed=0, aug=CropAugment.off())
    centre = (96 - 1) / 2
    head, trochanter = FINE_LANDMARK_TYPES.index("femoral_head_centre"), FINE_LANDMARK_TYPES.index("greater_trochanter")
    seen = set()
    for index, (_, name) in enumerate(data.items):
        if landmark_type(name)[0] != "femoral_head_centre":
            continue
        item = data[index]
        assert np.allclose(item["coords"][head].numpy(), [centre, centre], atol=1e-3)
        assert item["lm_present"][head] == 1 and item["discs"][head].max() > 0.9
        # the greater trochanter is lateral: on the crop's left for both sides (the left crop is mirrored)
        assert item["lm_present"][trochanter] == 1 and item["coords"][trochanter][0] < centre - 10
        seen.add(landmark_type(name)[1])
    assert seen == {"right", "left"}


def test_hip_crops_hold_the_head_at_their_centre(toy: Path):
    task = FINE_SEGMENTATION["hip-fine"]
    samples = [load_fine_sample(r, 1.0, task.source_keys) for r in list_samples(toy)]
    data = SegmentCropSet(samples, task, 48, 1.0, seed=0, aug=CropAugment.off())
    assert len(data) == 2 * len(samples)
    item = data[1]
    head = item["masks"][FINE_HIP_SEGMENTS.index("femoral_head")]
    assert head[24, 24] == 1 and head[0, 0] == 0
    assert item["mask_valid"].tolist() == [1.0] * len(FINE_HIP_SEGMENTS)


def test_pelvis_crops_sit_on_the_tuberosity_with_bone_above_it(toy: Path):
    """Crops around each tuberosity carry the one pelvis mask, both sides (left mirrored) alike."""
    task = FINE_SEGMENTATION["pelvis-fine"]
    assert task.source_keys == ("pelvis",)
    refs = list_samples(toy)
    samples = [load_fine_sample(r, 1.0, task.source_keys) for r in refs]
    data = SegmentCropSet(samples, task, 48, 1.0, seed=0, aug=CropAugment.off())
    assert len(data) == 2 * len(samples)
    with np.load(refs[0].npz) as z:
        truth = z["pelvis"]
    for index in range(2):  # sample 0, right then left
        item = data[index]
        assert item["masks"].shape == (1, 48, 48) and item["mask_valid"].tolist() == [1.0]
        _, side = data.items[index]
        x, y = samples[0].landmarks[f"ischial_tuberosity_{side}"]  # type: ignore[misc]
        # the crop's centre pixel is the source mask at the tuberosity (nearest), and 8 px above it
        for dy in (0, -8):
            assert item["masks"][0, 24 + dy, 24] == truth[round(y) + dy, round(x)]


def test_pelvis_fine_without_pelvis_masks_is_refused_not_trained_on_nothing(toy: Path, tmp_path: Path):
    """A folder whose samples lack the task's masks gives a clear error (exit 2), not a model trained at zero loss."""
    data = tmp_path / "no_pelvis"
    data.mkdir()
    (data / "dataset.json").write_text((toy / "dataset.json").read_text())
    for ref in list_samples(toy)[:3]:
        with np.load(ref.npz) as z:
            np.savez(data / ref.npz.name, **{k: z[k] for k in z.files if k != "pelvis"})
        (data / f"{ref.name}.json").write_text(json.dumps(ref.meta))
    task = FINE_SEGMENTATION["pelvis-fine"]
    samples = [load_fine_sample(r, 1.0, task.source_keys) for r in list_samples(data)]
    assert len(SegmentCropSet(samples, task, 48, 1.0, seed=0, aug=CropAugment.off())) == 0
    rc = main(["train", "pelvis-fine", "--data", str(data), "--out", str(tmp_path / "w"), "--epochs", "1",
               "--size", "32", "--mm-per-px", "2.0", "--threads", "1"])
    assert rc == 2 and not (tmp_path / "w" / "model.onnx").exists()


def test_fine_sample_refuses_more_masks_than_its_bit_map_holds(toy: Path):
    with pytest.raises(ValueError, match="at most 8"):
        load_fine_sample(list_samples(toy)[0], 1.0, tuple(f"m{k}" for k in range(9)))


def _train(task: str, toy: Path, out: Path, *extra: str) -> None:
    rc = main(["train", task, "--data", str(toy), "--out", str(out), "--epochs", "2", "--base-channels", "4",
               "--batch-size", "4", "--threads", "1", *extra])
    assert rc == 0, task


@pytest.fixture(scope="module")
def toy12(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toy_fine12"), 12, seed=7)


def test_fine_stage_trains_exports_and_refines_the_analysis(toy12: Path, tmp_path: Path):
    torch.set_num_threads(1)
    toy = toy12
    weights = tmp_path / "weights"
    samples = load_folder(toy, 64)  # coarse models good enough for the content check (as in test_analyze_cli)
    for task, epochs in (("segment", 20), ("landmarks", 4)):
        cfg = TrainConfig(task=task, epochs=epochs, batch_size=4, size=64, base_channels=8, depth=3, lr=5e-3)
        model, summary = train(samples, cfg)
        export_model(model, task, weights / task, 64, "toy", {"run": summary})
    coarse = HipAnalyzer.from_weights(weights)
    assert coarse.fine_landmarks is None and coarse.fine_hips is None
    _train("landmarks-fine", toy, weights / "landmarks_fine", "--size", "32", "--mm-per-px", "2.0")
    _train("hip-fine", toy, weights / "hip_fine", "--size", "32", "--mm-per-px", "2.0")
    _train("pelvis-fine", toy, weights / "pelvis_fine", "--size", "32", "--mm-per-px", "2.0")
    manifest = json.loads((weights / "landmarks_fine" / "manifest.json").read_text())
    assert manifest["crop"]["mm_per_px"] == 2.0 and manifest["outputs"][0]["labels"] == list(FINE_LANDMARK_TYPES)

    analyzer = HipAnalyzer.from_weights(weights)
    assert isinstance(analyzer.fine_landmarks, FineLandmarkModel) and analyzer.fine_hips is not None
    assert isinstance(analyzer.fine_pelvis, FinePelvisModel)
    assert json.loads((weights / "pelvis_fine" / "manifest.json").read_text())["outputs"][0]["labels"] == ["pelvis"]
    assert len(analyzer.models) == 5  # coarse and fine models (algorithms also lists the outline rule)

    class Radiograph:
        pixels = toy_sample(np.random.default_rng(5))[0] * 1000
        pixel_spacing_mm = (1.0, 1.0)
        calibration = "detector_plane"
        dataset = None

    fine, plain = analyzer(Radiograph()), coarse(Radiograph())
    assert plain.not_analysable is None and fine.not_analysable is None, plain.not_analysable
    assert {"fine_landmarks", "fine_hips", "fine_pelvis"} <= set(fine.timings_ms)
    present = {n for n, xy in plain.landmarks.items() if xy is not None}
    assert {n for n, xy in fine.landmarks.items() if xy is not None} <= present
    moved = [n for n in present if fine.landmarks[n] is not None and fine.landmarks[n] != plain.landmarks[n]]
    assert moved, "the fine model re-read no landmark"
    assert any((fine.masks[k] != plain.masks[k]).any() for k in ("femoral_head_right", "femoral_head_left")), \
        "the fine hip model changed no head mask"
    assert (fine.masks["pelvis"] != plain.masks["pelvis"]).any(), "the fine pelvis model changed no pelvis pixel"
    # without a pixel spacing the crops cannot be cut in mm: the coarse result stands
    Radiograph.pixel_spacing_mm = None
    assert analyzer(Radiograph()).landmarks == coarse(Radiograph()).landmarks


def test_fine_model_without_its_crop_grid_is_refused(tmp_path: Path):
    """A manifest without ``crop.mm_per_px`` is not a fine model: a clear ModelUnavailable, not a KeyError."""
    from models.inference.runtime import ModelUnavailable

    manifest = {"name": "x", "version": "0", "task": "landmarks-fine", "file": "model.onnx", "sha256": "0",
                "work_size": 32, "outputs": [{"labels": list(FINE_LANDMARK_TYPES)}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelUnavailable, match="crop"):
        FineLandmarkModel(tmp_path).level(np.zeros((64, 64), np.float32), (1.0, 1.0))
