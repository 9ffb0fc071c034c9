"""The per-image analysis cache the pair stage reads: bit-packed masks round-trip exactly, old files still load."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from node.pipeline.artifacts import load_artifacts, quantise_probability, save_artifacts


def _masks() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "pelvis": rng.random((37, 53)) > 0.4,  # sizes that are not multiples of 8
        "implant_left": np.zeros((37, 53), bool),
        "femur_right": rng.random((37, 53)) > 0.9,
    }


def test_masks_and_probability_round_trip(tmp_path: Path) -> None:
    masks = _masks()
    pelvis = quantise_probability(np.random.default_rng(4).random((37, 53)).astype(np.float32))
    save_artifacts(tmp_path, "analysis/a.npz", masks, pelvis)
    loaded, probability = load_artifacts(tmp_path, "analysis/a.npz")
    assert list(loaded) == list(masks)
    for name, mask in masks.items():
        assert loaded[name].dtype == bool and loaded[name].shape == mask.shape
        assert np.array_equal(loaded[name], mask)
    assert probability is not None and np.array_equal(probability, pelvis)


def test_a_cache_written_before_packing_still_loads(tmp_path: Path) -> None:
    masks = _masks()
    np.savez_compressed(tmp_path / "old.npz", **{f"mask_{k}": v for k, v in masks.items()})
    loaded, probability = load_artifacts(tmp_path, "old.npz")
    assert probability is None
    assert all(np.array_equal(loaded[k], v) for k, v in masks.items())


def test_a_missing_cache_is_empty(tmp_path: Path) -> None:
    assert load_artifacts(tmp_path, "analysis/none.npz") == ({}, None)
    assert load_artifacts(tmp_path, None) == ({}, None)
