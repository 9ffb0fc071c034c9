"""Detector-processing augmentation: a different look, same anatomy, padding untouched."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from models.inference.preprocess import normalise
from models.training.augment import AugmentConfig, processing, tone_curve


def _film(rows: int = 96, cols: int = 128, size: int = 128) -> np.ndarray:
    """A normalised 'radiograph' (smooth background, a bright bony disc) on a zero-padded canvas."""
    yy, xx = np.mgrid[:rows, :cols].astype(np.float32)
    content = 0.3 + 0.002 * xx + 0.5 * ((xx - 64) ** 2 + (yy - 48) ** 2 < 20**2)
    canvas = np.zeros((size, size), np.float32)
    canvas[:rows, :cols] = normalise(cv2.GaussianBlur(content, (0, 0), 1.0))
    return canvas


def test_tone_curve_is_increasing_and_keeps_the_ends() -> None:
    ramp = np.linspace(0.0, 1.0, 1001, dtype=np.float32)
    for seed in range(20):
        out = tone_curve(ramp, np.random.default_rng(seed), 0.35)
        assert out[0] == 0.0 and out[-1] == 1.0
        assert np.all(np.diff(out) >= 0.0)
    bent = tone_curve(ramp, np.random.default_rng(3), 0.35)
    assert np.abs(bent - ramp).max() > 0.01  # it does change the look


def test_processing_changes_the_look_not_the_anatomy_nor_the_padding() -> None:
    film = _film()
    cfg = replace(AugmentConfig(), processing_p=1.0)
    looks = [processing(film, np.random.default_rng(seed), cfg, content_shape=(96, 128)) for seed in range(8)]
    for look in looks:
        assert look.dtype == np.float32 and look.min() >= 0.0 and look.max() <= 1.0
        assert not look[96:].any() and not look[:, 128:].any()
        assert not np.allclose(look, film, atol=0.02)
        disc = film[:96, :128] > 0.6
        # The bone stays the brightest structure: its mean is above the background's.
        assert look[:96, :128][disc].mean() > look[:96, :128][~disc].mean() + 0.2
    assert not np.array_equal(looks[0], looks[1])


def test_processing_is_reproducible_and_off_means_off() -> None:
    film = _film()
    cfg = replace(AugmentConfig(), processing_p=1.0)
    a = processing(film, np.random.default_rng(5), cfg, content_shape=(96, 128))
    b = processing(film, np.random.default_rng(5), cfg, content_shape=(96, 128))
    assert np.array_equal(a, b)
    assert np.array_equal(processing(film, np.random.default_rng(5), AugmentConfig.off(), (96, 128)), film)


def test_unsharp_masking_sharpens_edges() -> None:
    film = _film()
    sharpen = replace(AugmentConfig(), processing_p=1.0, blur_sigma_px=0.0, tone_strength=0.0,
                      unsharp_sigma_px=(4.0, 4.0))
    gains = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        out = processing(film, rng, sharpen, content_shape=(96, 128))
        edge = np.abs(np.diff(out[48, :128])).max() / (out[:96, :128].std() + 1e-6)
        gains.append(edge / (np.abs(np.diff(film[48, :128])).max() / film[:96, :128].std()))
    # Amounts are drawn from [-0.4, 1.2]: most draws sharpen, a few soften.
    assert max(gains) > 1.15 and min(gains) < 1.0


def test_processing_look_for_evaluation_scales_to_the_source_pixels() -> None:
    from models.training.evaluate import processing_look

    raw = 1000.0 + 3000.0 * _film(size=128)  # detector values, not [0, 1]
    a = processing_look(raw, (0.145, 0.145), np.random.default_rng(1))
    b = processing_look(raw, (0.145, 0.145), np.random.default_rng(1))
    c = processing_look(raw, (0.145, 0.145), np.random.default_rng(2))
    assert a.shape == raw.shape and a.min() >= 0.0 and a.max() <= 1.0
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_negative_look_seed_is_refused_before_any_film_is_read(tmp_path, capsys) -> None:
    import pytest

    from node.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "analyze", "--data", str(tmp_path / "missing"), "--weights", str(tmp_path),
              "--processing-look", "-1"])
    assert exit_info.value.code == 2
    assert "--processing-look: must be >= 0" in capsys.readouterr().err
