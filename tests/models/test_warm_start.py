"""Fine-tuning from an exported model (``hipnode train --init``): the ONNX weights come back into torch exactly.

The exporter folds BatchNorm into the convs, so a wrong mapping (order, which
conv takes which fold, a BatchNorm left live) shows as a different output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.training.dataset import load_folder
from models.training.export import export_model
from models.training.toydata import write_toy_dataset
from models.training.train import TrainConfig, build_model, train
from models.training.warm_start import WarmStartError, warm_start
from node.cli import main

SIZE = 32


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toy"), 4, seed=2, shape=(96, 112))


def _cfg(task: str, **overrides: object) -> TrainConfig:
    settings: dict = {"epochs": 2, "batch_size": 2, "size": SIZE, "base_channels": 4, "depth": 3, **overrides}
    return TrainConfig(task=task, **settings)


@pytest.fixture(scope="module")
def exported(toy: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained (non-trivial BatchNorm statistics) segment and landmark model, exported."""
    torch.set_num_threads(1)
    samples = load_folder(toy, SIZE)
    out = {}
    for task in ("segment", "landmarks"):
        model, summary = train(samples, _cfg(task))
        folder = tmp_path_factory.mktemp(task)
        export_model(model, task, folder, SIZE, "0.0.1-toy", {"run": summary})
        out[task] = folder
    return out


@pytest.mark.parametrize("task", ["segment", "landmarks"])
def test_exported_weights_come_back_into_the_network(exported: dict[str, Path], task: str):
    torch.manual_seed(123)  # a differently initialised network: only the loading can make it agree
    model = build_model(_cfg(task))
    assert warm_start(model, exported[task], SIZE) < 1e-4


def test_a_different_architecture_is_refused(exported: dict[str, Path]):
    with pytest.raises(WarmStartError, match="width"):
        warm_start(build_model(TrainConfig(task="segment", size=SIZE, base_channels=8, depth=3)), exported["segment"], SIZE)
    with pytest.raises(WarmStartError, match="depth"):
        warm_start(build_model(TrainConfig(task="segment", size=SIZE, base_channels=4, depth=2)), exported["segment"], SIZE)
    with pytest.raises(WarmStartError, match="no model.onnx"):
        warm_start(build_model(_cfg("segment")), exported["segment"] / "missing", SIZE)


def test_fine_tuning_keeps_the_loaded_batch_norm_statistics(toy: Path, exported: dict[str, Path]):
    """Batch statistics would overwrite the folded identities: they stay as loaded through training."""
    model, summary = train(load_folder(toy, SIZE), _cfg("landmarks", epochs=1, init=str(exported["landmarks"])))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and summary["steps"] > 0
    for norm in norms:
        assert torch.all(norm.running_mean == 0) and torch.allclose(norm.running_var, torch.full_like(norm.running_var, 1 - norm.eps))


def test_train_command_takes_the_architecture_from_the_starting_model(toy: Path, exported: dict[str, Path], tmp_path: Path):
    rc = main(["train", "landmarks", "--data", str(toy), "--out", str(tmp_path / "tuned"), "--init", str(exported["landmarks"]),
               "--epochs", "1", "--batch-size", "2", "--threads", "1", "--lr", "1e-4"])
    assert rc == 0
    start = json.loads((exported["landmarks"] / "manifest.json").read_text())
    tuned = json.loads((tmp_path / "tuned" / "manifest.json").read_text())
    assert tuned["training"]["initialised_from"] == {"name": start["name"], "version": start["version"], "sha256": start["sha256"]}
    config = tuned["training"]["run"]["config"]
    assert (config["size"], config["base_channels"], config["depth"]) == (SIZE, 4, 3)
    # a model of another task is refused with exit status 2 before anything is written
    assert main(["train", "segment", "--data", str(toy), "--out", str(tmp_path / "wrong"),
                 "--init", str(exported["landmarks"])]) == 2
    assert not (tmp_path / "wrong").exists()
    # weights that are not the file their manifest describes are refused too
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in ("manifest.json", "model.onnx"):
        (tampered / name).write_bytes((exported["landmarks"] / name).read_bytes())
    with open(tampered / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    assert main(["train", "landmarks", "--data", str(toy), "--out", str(tmp_path / "t"), "--init", str(tampered)]) == 2
    assert not (tmp_path / "t").exists()
