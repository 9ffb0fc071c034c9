"""The colour difference map follows LinAlign's definition exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.align.cdm import colour_difference_map, normalize_intensity, warp_to, ycbcr_to_rgb


def test_identical_images_give_grey_map() -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 100, size=(40, 50)).astype(np.float32)
    rgb = colour_difference_map(image, image, np.eye(3)).astype(int)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 1 and np.abs(rgb[..., 1] - rgb[..., 2]).max() <= 1


def test_formula_y_and_chroma() -> None:
    """Y = (I1' + I2)/2 and Cr = Cb = (I2 - I1')/2, converted with BT.601."""
    pre = np.zeros((20, 20), np.float32)
    post = np.zeros((20, 20), np.float32)
    pre[5:, :10], post[5:, :10] = 1.0, 1.0  # left: same in both; top rows black in both
    pre[5:, 10:], post[5:, 10:] = 0.2, 0.6  # right: brighter after surgery
    rgb = colour_difference_map(pre, post, np.eye(3)).astype(float) / 255.0
    i1 = normalize_intensity(pre)
    i2 = normalize_intensity(post)
    y, c = (i1 + i2) / 2, (i2 - i1) / 2
    expected = ycbcr_to_rgb(y, c, c)
    assert np.allclose(rgb, expected, atol=1 / 255 + 1e-6)
    right = rgb[10, 15]
    assert right[0] > right[1] and right[2] > right[1]  # post brighter -> magenta


def test_ycbcr_round_numbers() -> None:
    assert np.allclose(ycbcr_to_rgb(np.array(0.5), np.array(0.0), np.array(0.0)), [0.5, 0.5, 0.5])
    assert np.allclose(ycbcr_to_rgb(np.array(0.5), np.array(0.1), np.array(0.1)), [0.6402, 0.394173, 0.6772], atol=1e-4)


def test_warp_is_perspective_pre_onto_post_grid() -> None:
    pre = np.zeros((30, 40), np.float32)
    pre[10, 12] = 1.0
    h = np.array([[1, 0, 5.0], [0, 1, 3.0], [0, 0, 1]])
    warped, footprint = warp_to(pre, h, (30, 40))
    assert np.unravel_index(np.argmax(warped), warped.shape) == (13, 17)
    assert not footprint[:, :5].any() and footprint[3:, 5:].all()


def test_outside_footprint_is_colourless() -> None:
    pre = np.full((30, 40), 7.0, np.float32)
    post = np.linspace(0, 1, 30 * 40, dtype=np.float32).reshape(30, 40)
    rgb = colour_difference_map(pre, post, np.array([[1, 0, 20.0], [0, 1, 0], [0, 0, 1]])).astype(int)
    left = rgb[:, :19]
    assert np.abs(left[..., 0] - left[..., 2]).max() <= 1


def test_map_entirely_outside_is_an_error() -> None:
    image = np.ones((10, 10), np.float32)
    with pytest.raises(ValueError, match="outside"):
        colour_difference_map(image, image, np.array([[1, 0, 500.0], [0, 1, 0], [0, 0, 1]]))


def test_unchanged_anatomy_stays_grey_whatever_lies_outside_the_overlap() -> None:
    """Post-op has a bright strip the pre-op never covered: it must not tint the overlap."""
    rng = np.random.default_rng(1)
    pre = cv2.GaussianBlur(rng.uniform(0, 100, size=(60, 80)).astype(np.float32), (0, 0), 3)
    shift = np.array([[1, 0, 20.0], [0, 1, 0], [0, 0, 1]])
    post, footprint = warp_to(pre, shift, pre.shape)
    post[~footprint] = 400.0  # e.g. an uncollimated, overexposed margin
    rgb = colour_difference_map(pre, post, shift).astype(int)
    inside = rgb[:, 25:]
    assert np.median(np.abs(inside[..., 0] - inside[..., 1])) <= 2  # no magenta or green cast
