"""The view model: AP films analysed, lateral and frog-leg films refused from the pixels.

The header-based refusals (ViewPosition, View Code Sequence, series words) are
tested in ``test_analyze_cli.py``; here the header says AP and lies. Units
first (poses, dataset, training and export wiring on a separable toy), then
the committed weights through the real ``hipnode analyze`` on generator films
of Pelvic-Ref-002, the anatomy held out of the reference models' training.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.inference.analyzer import HipAnalyzer
from models.inference.preprocess import grid_transform, to_work_grid
from models.inference.runtime import WEIGHTS_ROOT, ModelUnavailable
from models.inference.segmentation import SegmentationModel, SegmentationOutput
from models.inference.view import (
    VIEW_CHANNELS,
    VIEWS,
    ViewModel,
    ViewVerdict,
    view_channels,
    view_problem,
)
from models.synth.generator import SIDES
from models.synth.views import AP_TURN_DEG, LATERAL_TURN_DEG, build_view_dataset, view_pose
from models.training.export import export_model
from models.training.train import TrainConfig, train_view
from models.training.view_dataset import fit_to_grid, load_view_folders, reframe
from node.cli import main
from node.commands.analyze import EXIT_NOT_ANALYSABLE, EXIT_OK

SEGMENT_DIR = WEIGHTS_ROOT / "segment"


def test_view_poses_fall_in_their_class():
    rng = np.random.default_rng(3)
    for _ in range(200):
        ap, lateral, frog = view_pose("ap", rng), view_pose("lateral", rng), view_pose("frog_leg", rng)
        assert abs(ap.pelvis_deg[2]) <= AP_TURN_DEG
        assert max(abs(a) for f in ap.femur_deg.values() for a in f[:2]) <= 8.0
        assert LATERAL_TURN_DEG[0] <= abs(lateral.pelvis_deg[2]) <= LATERAL_TURN_DEG[1]
        assert abs(frog.pelvis_deg[2]) <= 8.0
        posed = [s for s in SIDES if frog.femur_deg[s][0] >= 20 and frog.femur_deg[s][1] >= 25]
        assert posed, frog.femur_deg
    with pytest.raises(ValueError, match="unknown view"):
        view_pose("oblique", rng)


def test_view_dataset_is_labelled_and_loads(tmp_path: Path):
    n = build_view_dataset([str(p) for p in _label_maps("Pelvic-Ref-001")], tmp_path, 6, 160, seed=4)
    assert n == 6 and json.loads((tmp_path / "dataset.json").read_text())["views"] == list(VIEWS)
    metas = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("view_*.json"))]
    assert len(metas) == 6 and all(m["view"] in VIEWS and m["anatomy"] == "Pelvic-Ref-001" for m in metas)
    samples = load_view_folders([tmp_path], "maps", 128, SEGMENT_DIR)
    assert [VIEWS[label] for _, label in samples] == [m["view"] for m in metas]
    for maps, _ in samples:  # the segmentation's maps, content only, on its 256 px grid
        assert maps.shape[0] == len(VIEW_CHANNELS) and max(maps.shape[1:]) == 256
        assert 0.0 <= maps.min() and maps.max() <= 1.0 and maps[0].max() > 0.5  # a pelvis in every film
    films = load_view_folders([tmp_path], "image", 128, SEGMENT_DIR)
    assert [label for _, label in films] == [label for _, label in samples]
    assert all(f.shape[0] == 1 and max(f.shape[1:]) == 256 and f.max() == 1.0 for f, _ in films)
    assert load_view_folders([tmp_path], "maps", 128, SEGMENT_DIR, exclude_anatomy={"Pelvic-Ref-001"}) == []
    with pytest.raises(ValueError, match="half the segmentation"):
        load_view_folders([tmp_path], "maps", 64, SEGMENT_DIR)


def test_reframing_keeps_a_window_at_the_films_edges_and_fits_it_like_inference():
    content = np.arange(120 * 200, dtype=np.float32).reshape(120, 200)
    rng = np.random.default_rng(0)
    assert reframe(content, rng, on=False).shape == (120, 200)
    cuts = {"bottom": 0, "top": 0, "side": 0}
    for _ in range(300):
        crop = reframe(content[None], rng)[0]
        r0, c0 = divmod(int(crop[0, 0]), 200)
        np.testing.assert_array_equal(crop, content[r0:r0 + crop.shape[0], c0:c0 + crop.shape[1]])
        assert crop.shape[0] >= 0.6 * 0.85 * 120 - 1 and crop.shape[1] >= 0.55 * 200 - 1
        assert c0 == 0 or c0 + crop.shape[1] == 200  # a side cut keeps the other edge
        cuts["bottom"] += r0 + crop.shape[0] < 120
        cuts["top"] += r0 > 0
        cuts["side"] += crop.shape[1] < 200
    assert all(n > 20 for n in cuts.values()), cuts
    maps = np.random.default_rng(1).uniform(0, 1, (2, 120, 100)).astype(np.float32)
    canvas, shape = fit_to_grid(maps, 64)
    assert canvas.shape == (2, 64, 64) and shape == (64, 53) and not canvas[:, :, 53:].any()
    np.testing.assert_allclose(canvas[1, :, :53], cv2.resize(maps[1], (53, 64), interpolation=cv2.INTER_AREA))
    film = np.random.default_rng(2).uniform(0, 1, (300, 500)).astype(np.float32)  # a film: as inference puts it
    np.testing.assert_allclose(fit_to_grid(film[None], 64, renormalise=True)[0][0], to_work_grid(film, None, 64)[0],
                               atol=1e-6)


def test_view_channels_merge_sides_and_halve_the_segmentation_grid():
    labels = SegmentationModel.labels
    probs = np.zeros((len(labels), 256, 256), np.float32)
    probs[labels.index("femur_right"), 100:200, 20:60] = 1.0
    probs[labels.index("femur_left"), 100:200, 180:220] = 1.0
    probs[labels.index("pelvis"), 0:100, 0:256] = 0.8
    tf = grid_transform((400, 500), (0.5, 0.5), 256)
    channels = view_channels(SegmentationOutput(probs, tf, labels), 128)
    assert channels.shape == (len(VIEW_CHANNELS), 128, 128)
    femur = channels[VIEW_CHANNELS.index("femur")]
    assert femur[55:95, 12:28].min() == 1.0 and femur[55:95, 92:108].min() == 1.0  # both sides, half scale
    assert femur[:45].max() == 0.0 and femur[55:95, 35:85].max() == 0.0
    assert not channels[:, tf.content_shape[0] // 2 + 1:].any()  # padding below the content stays zero
    assert channels[VIEW_CHANNELS.index("pelvis"), :50].max() == pytest.approx(0.8)


def _label_maps(*names: str) -> list[Path]:
    from models.synth.reference_data import label_map

    return [label_map(n) for n in names]


def _toy_view(label: int, rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, int]:
    """Maps with a bar whose direction is the class: separable, so a wiring bug shows as failure to learn."""
    maps = rng.uniform(0.0, 0.2, (len(VIEW_CHANNELS), size, size)).astype(np.float32)
    offset = int(rng.integers(8, size - 8))
    if label == 0:
        maps[1, offset - 2:offset + 2] = 1.0
    elif label == 1:
        maps[1, :, offset - 2:offset + 2] = 1.0
    else:
        maps[1, np.abs(np.subtract.outer(np.arange(size), np.arange(size))) < 3] = 1.0
    return maps, label


def test_training_learns_the_labels_and_exports_probabilities(tmp_path: Path):
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    samples = [_toy_view(i % 3, rng) for i in range(48)]
    cfg = TrainConfig(task="view", epochs=12, batch_size=8, size=32, base_channels=4, depth=3, lr=5e-3, augment=False)
    model, summary = train_view(samples, cfg)
    assert summary["loss_per_epoch"][-1] < 0.5 * summary["loss_per_epoch"][0]
    segmentation = {"name": "hipnode-segment", "version": "toy"}
    export_model(model, "view", tmp_path / "view", 32, "toy", {"run": summary}, segmentation=segmentation)
    view_model = ViewModel(tmp_path / "view")
    assert view_model.manifest.labels == VIEWS and view_model.segmentation == segmentation
    assert view_model.source == "maps" and view_model.manifest.name == "hipnode-view-maps"
    test = [_toy_view(i % 3, np.random.default_rng(100 + i)) for i in range(12)]
    probabilities = view_model.predict(np.stack([maps for maps, _ in test]))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == [label for _, label in test]).mean() >= 0.9
    view_model.check_segmentation("hipnode-segment", "toy")
    with pytest.raises(ModelUnavailable, match="retrain"):
        view_model.check_segmentation("hipnode-segment", "0.3.0-fold002")


def test_analyzer_refuses_a_view_model_trained_behind_another_segmentation(tmp_path: Path):
    root = tmp_path / "weights"
    root.mkdir()
    for folder in ("segment", "landmarks"):
        (root / folder).symlink_to(WEIGHTS_ROOT / folder)
    shutil.copytree(WEIGHTS_ROOT / "view_maps", root / "view_maps")
    manifest = json.loads((root / "view_maps" / "manifest.json").read_text())
    manifest["inputs"][0]["segmentation"]["version"] = "0.2.0"
    (root / "view_maps" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelUnavailable, match="0.2.0"):
        HipAnalyzer.from_weights(root)


def test_training_needs_every_view():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="frog_leg"):
        train_view([_toy_view(i % 2, rng) for i in range(8)], TrainConfig(task="view", epochs=1, size=32, depth=3))


def test_a_film_is_refused_only_when_every_view_model_says_it_is_not_ap():
    frog_film = ViewVerdict({"ap": 0.1, "lateral": 0.05, "frog_leg": 0.85}, "image")
    frog_maps = ViewVerdict({"ap": 0.02, "lateral": 0.0, "frog_leg": 0.98}, "maps")
    unsure = ViewVerdict({"ap": 0.3, "lateral": 0.6, "frog_leg": 0.1}, "maps")  # refused only when sure
    reason = view_problem([frog_film, frog_maps])
    assert reason is not None and "frog-leg lateral view" in reason
    assert "film: frog-leg lateral 0.85, AP 0.10" in reason and "segmentation maps: frog-leg lateral 0.98" in reason
    assert view_problem([frog_film, unsure]) is None and view_problem([unsure]) is None and view_problem([]) is None
    lateral = ViewVerdict({"ap": 0.1, "lateral": 0.8, "frog_leg": 0.1}, "image")
    assert "a lateral view" in (view_problem([lateral]) or "")
    assert view_problem([unsure], min_ap_probability=0.5) is not None


# --- the committed weights, through the real command, on the held-out anatomy -------------------------------

def _film(tmp_path: Path, view: str, size: int, seed: int) -> Path:
    """A Pelvic-Ref-002 film of ``view`` written as DX with the generator's header, which says AP."""
    from models.synth.anatomy import load_anatomy
    from models.synth.dicom_writer import exam_dataset, identity_for
    from models.synth.generator import render_exam, sample_patient, sample_pose

    rng = np.random.default_rng([seed, 11])
    anatomy = load_anatomy(str(_label_maps("Pelvic-Ref-002")[0]))
    patient = sample_patient(anatomy, rng, ("left",))
    pose = sample_pose(rng)
    if view == "lateral":
        pose = replace(pose, pelvis_deg=(pose.pelvis_deg[0], pose.pelvis_deg[1], 75.0))
    elif view == "frog_leg":
        pose = replace(pose, femur_deg={s: (35.0, 40.0, 40.0) for s in SIDES})
    exam = render_exam(patient, pose, "post", size, rng, truth=view == "ap")
    who = identity_for(["view", view, str(size)], "VIEW1", "View^Test", "19500101", "M", dt.datetime(2023, 1, 1),
                       "AP pelvis")
    path = tmp_path / f"{view}.dcm"
    ds = exam_dataset(exam, who)
    assert ds.ViewPosition == "AP"  # the header lies for the lateral and the frog-leg film
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(("view", "size", "seed", "expected"), [
    ("ap", 512, 512, None), ("ap", 1000, 1000, None),
    # a lateral the segmentation's content check lets through (most are refused there: "no femoral head")
    ("lateral", 512, 3, "lateral view"),
    ("frog_leg", 512, 512, "frog-leg lateral view"), ("frog_leg", 1000, 1000, "frog-leg lateral view"),
])
def test_analyze_refuses_a_lateral_or_frog_leg_film_whose_header_says_ap(tmp_path: Path, view: str, size: int,
                                                                      seed: int, expected: str | None):
    out = tmp_path / "out.json"
    rc = main(["analyze", str(_film(tmp_path, view, size, seed)), "--json", str(out)])
    result = json.loads(out.read_text())
    if expected is None:
        assert rc == EXIT_OK, result.get("not_analysable")
        assert {"hipnode-view-image", "hipnode-view-maps"} <= {a["name"] for a in result["algorithms"]}
    else:
        assert rc == EXIT_NOT_ANALYSABLE, result
        assert expected in result["not_analysable"] and "view model" in result["not_analysable"]
        assert result["landmarks"] == {} and result["measurements"] == {}


def test_eval_view_prints_the_confusion_and_both_error_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    build_view_dataset([str(p) for p in _label_maps("Pelvic-Ref-002")], tmp_path / "views", 6, 400, seed=9)
    assert main(["eval", "view", "--data", str(tmp_path / "views")]) == 0
    printed = capsys.readouterr().out
    assert "confusion" in printed and "AP films refused" in printed and "lateral / frog-leg films analysed" in printed
    assert main(["eval", "view", "--data", str(tmp_path / "views"), "--anatomy", "Pelvic-Ref-001"]) == 2


def test_synth_and_train_commands_make_a_view_model(tmp_path: Path):
    """``hipnode synth --dataset --views`` then ``hipnode train view`` for each input: manifests say what they read."""
    data = tmp_path / "views"
    assert main(["synth", "--dataset", str(data), "--views", "--samples", "9", "--size", "160", "--seed", "2",
                 "--labels", str(_label_maps("Pelvic-Ref-004")[0])]) == 0
    assert {json.loads(p.read_text())["view"] for p in data.glob("view_*.json")} == set(VIEWS)
    assert main(["synth", "--out", str(tmp_path / "pairs"), "--views"]) == 2  # --views builds a dataset only
    for source in ("maps", "image"):
        out = tmp_path / f"view_{source}"
        assert main(["train", "view", "--view-input", source, "--data", str(data), "--out", str(out),
                     "--epochs", "1", "--batch-size", "4", "--threads", "2"]) == 0
        model = ViewModel(out)
        assert model.source == source and model.manifest.work_size == 128
        assert model.manifest.raw["training"]["anatomies"] == ["Pelvic-Ref-004"]
        if source == "maps":
            segment = SegmentationModel(SEGMENT_DIR).manifest
            assert model.segmentation == {"name": segment.name, "version": segment.version}
    assert main(["train", "view", "--data", str(data), "--out", str(tmp_path / "x"),
                 "--exclude-anatomy", "Pelvic-Ref-004"]) == 2  # nothing left to train on
