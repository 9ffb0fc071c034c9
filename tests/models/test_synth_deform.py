"""The patients' smooth bone deformation: hips stay seated, no folding, and local shape waves are opt-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.synth.deform import LOCAL_WAVES, sample_deformation
from node.cli import main

HIPS = np.array([[-95.0, 0.0, 0.0], [95.0, 0.0, 0.0]])


def _jacobian_determinants(deform, points: np.ndarray, step: float = 0.5) -> np.ndarray:
    columns = [(deform(points + step * e) - deform(points - step * e)) / (2 * step) for e in np.eye(3)]
    return np.linalg.det(np.stack(columns, axis=2))


@pytest.mark.parametrize("local_mm", [0.0, 1.0, 2.0])
def test_deformation_keeps_hips_seated_and_never_folds(local_mm: float) -> None:
    grid = np.stack(np.meshgrid(*[np.linspace(-160, 160, 17)] * 2, np.linspace(-120, 120, 13), indexing="ij"),
                    -1).reshape(-1, 3)
    for seed in range(20):
        deform = sample_deformation(np.random.default_rng(seed), HIPS, local_amplitude_mm=local_mm)
        assert np.allclose(deform(HIPS), HIPS, atol=1e-9)  # a femoral head stays in its socket
        shift = np.linalg.norm(deform(grid) - grid, axis=1)
        assert shift.max() <= np.sqrt(3) * (3 * 3.0 + LOCAL_WAVES * local_mm)
        assert _jacobian_determinants(deform, grid).min() > 0.2  # no bone turned inside out


def test_local_waves_are_drawn_after_the_others() -> None:
    """A zero amplitude draws nothing more, so datasets written before the option are reproduced exactly."""
    plain = sample_deformation(np.random.default_rng(4), HIPS)
    local = sample_deformation(np.random.default_rng(4), HIPS, local_amplitude_mm=2.0)
    assert len(plain.waves) == 3 and len(local.waves) == 3 + LOCAL_WAVES
    assert np.array_equal(local.waves[:3], plain.waves) and np.array_equal(local.amplitudes_mm[:3], plain.amplitudes_mm)
    wavelengths = 2 * np.pi / np.linalg.norm(local.waves[3:], axis=1)
    assert wavelengths.min() >= 40.0 and wavelengths.max() <= 80.0


def test_shape_variation_option_is_checked(tmp_path: Path) -> None:
    assert main(["synth", "--out", str(tmp_path / "p"), "--shape-variation", "2"]) == 2  # pairs: not supported
    assert main(["synth", "--dataset", str(tmp_path / "d"), "--shape-variation", "3"]) == 2  # crushes bone locally
    assert main(["synth", "--dataset", str(tmp_path / "d"), "--samples", "1", "--size", "256", "--seed", "3",
                 "--shape-variation", "2"]) == 0
    assert '"local_shape_mm": 2.0' in (tmp_path / "d" / "dataset.json").read_text()
