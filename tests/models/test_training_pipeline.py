"""Train -> export -> onnxruntime, end to end on a toy dataset (seconds, tiny networks).

Checks that a seeded run is reproducible, that the ONNX model computes what
the torch model computes, that the manifest describes the file it sits next
to, and that ``hipnode train`` turns a bad folder into a clear exit status.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.algorithms.vocabulary import LANDMARKS, SEGMENTS
from models.inference.landmarks import LandmarkModel
from models.inference.runtime import Manifest, ModelUnavailable, session_for
from models.inference.segmentation import SegmentationModel
from models.training.dataset import load_folder
from models.training.export import export_model, sha256_file
from models.training.toydata import write_toy_dataset
from models.training.train import TrainConfig, train
from node.cli import main

SIZE = 32


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toy"), 4, seed=1, shape=(96, 112))


def _cfg(task: str) -> TrainConfig:
    return TrainConfig(task=task, epochs=2, batch_size=2, size=SIZE, base_channels=4, depth=3)


def test_seeded_training_is_reproducible(toy: Path):
    torch.set_num_threads(1)
    samples = load_folder(toy, SIZE)
    a, _ = train(samples, _cfg("segment"))
    b, summary = train(samples, _cfg("segment"))
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    assert summary["epochs_done"] == 2 and np.isfinite(summary["final_loss"])


def test_workers_change_neither_the_samples_nor_the_weights(toy: Path):
    """``--workers`` only spreads the work: parallel loading and DataLoader workers give the same model."""
    torch.set_num_threads(1)
    serial = load_folder(toy, SIZE)
    parallel = load_folder(toy, SIZE, workers=2)
    assert [s.meta for s in parallel] == [s.meta for s in serial]
    for a, b in zip(serial, parallel):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
        assert np.array_equal(a.landmarks, b.landmarks, equal_nan=True)
    plain, _ = train(serial, _cfg("landmarks"))
    cfg = _cfg("landmarks")
    cfg.workers = 2
    spread, summary = train(parallel, cfg)
    for pa, pb in zip(plain.state_dict().values(), spread.state_dict().values()):
        assert torch.equal(pa, pb)
    assert summary["hardware"].startswith("cpu") and summary["torch"] == torch.__version__


@pytest.mark.parametrize("task", ["segment", "landmarks"])
def test_onnx_matches_torch_and_manifest(toy: Path, tmp_path: Path, task: str):
    torch.set_num_threads(1)
    samples = load_folder(toy, SIZE)
    model, summary = train(samples, _cfg(task))
    path = export_model(model, task, tmp_path / task, SIZE, "test", {"run": summary})
    manifest = json.loads(path.read_text())
    assert manifest["sha256"] == sha256_file(tmp_path / task / "model.onnx")
    assert manifest["outputs"][0]["labels"] == list(SEGMENTS if task == "segment" else LANDMARKS)
    assert "MIT" in manifest["licences"]["training_anatomy"]
    x = samples[0].image
    with torch.no_grad():
        out = model(torch.from_numpy(x)[None, None])
    if task == "segment":
        ort_probs = SegmentationModel(tmp_path / task).predict(x)
        assert np.allclose(ort_probs, torch.sigmoid(out)[0].numpy(), atol=1e-4)
    else:
        discs, coords = LandmarkModel(tmp_path / task).predict(x)
        assert np.allclose(discs, torch.sigmoid(out[0])[0].numpy(), atol=1e-4)
        assert np.allclose(coords, out[1][0].numpy(), atol=1e-2)
        assert coords.shape == (len(LANDMARKS), 2)


def test_tampered_weights_are_refused(toy: Path, tmp_path: Path):
    model, summary = train(load_folder(toy, SIZE), _cfg("segment"))
    export_model(model, "segment", tmp_path, SIZE, "test", {})
    with open(tmp_path / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelUnavailable, match="sha256"):
        session_for(Manifest.read(tmp_path))
    with pytest.raises(ModelUnavailable, match="manifest"):
        Manifest.read(tmp_path / "missing")


def test_train_command_writes_weights_and_rejects_bad_data(toy: Path, tmp_path: Path):
    rc = main(["train", "landmarks", "--data", str(toy), "--out", str(tmp_path / "w"), "--epochs", "1",
               "--size", str(SIZE), "--base-channels", "4", "--batch-size", "2", "--threads", "1"])
    assert rc == 0
    assert Manifest.read(tmp_path / "w").task == "landmarks"
    assert main(["train", "segment", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    assert main(["train", "segment", "--data", str(toy), "--out", str(tmp_path / "y"), "--workers", "-1"]) == 2
    assert not (tmp_path / "y").exists()


def test_eval_rotation_holds_each_anatomy_out(toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """The rotation trains per fold without the held-out anatomy and scores only that anatomy."""
    rc = main(["eval", "analyze", "--data", str(toy), "--out", str(tmp_path), "--epochs", "1", "--size", str(SIZE),
               "--base-channels", "4", "--batch-size", "2", "--threads", "1", "--fine"])
    assert rc == 0
    report = json.loads((tmp_path / "eval_analyze.json").read_text())
    assert set(report["folds"]) == {"Toy-A", "Toy-B", "Toy-C"}
    assert sum(f["summary"]["images"] for f in report["folds"].values()) == 4 == report["all_folds"]["images"]
    for held in report["folds"]:
        for folder in ("segment", "landmarks_fine", "hip_fine"):
            manifest = json.loads((tmp_path / f"fold_{held}" / folder / "manifest.json").read_text())
            assert held not in manifest["training"]["anatomies"]
    assert "all folds (held-out anatomy)" in capsys.readouterr().out


@pytest.mark.parametrize("task", ["segment", "landmarks"])
def test_committed_reference_weights_load_and_match_their_manifest(task: str):
    """The weights in models/weights are intact (sha256) and produce the declared outputs."""
    from models.inference.runtime import WEIGHTS_ROOT

    model = SegmentationModel(WEIGHTS_ROOT / task) if task == "segment" else LandmarkModel(WEIGHTS_ROOT / task)
    size = model.manifest.work_size
    outputs = model.predict(np.zeros((size, size), np.float32))
    first = outputs if task == "segment" else outputs[0]
    assert first.shape == (len(model.manifest.labels), size, size)
    assert "Pelvic-Ref-002" not in model.manifest.raw["training"]["anatomies"]
