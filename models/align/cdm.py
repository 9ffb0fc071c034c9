"""LinAlign's colour difference map (CDM).

The pre-op image is warped onto the post-op grid with the perspective
homography, both are intensity-normalized over the pixels they share, and
the pair becomes one YCbCr
image: luminance ``Y = (I1' + I2) / 2`` shows the anatomy, chrominance
``Cr = Cb = (I2 - I1') / 2`` shows the change (magenta where post-op is
brighter, e.g. new metal; green where pre-op was brighter). It is converted to
8-bit RGB for display. Outside the warped pre-op footprint there is no pre-op
information: there ``I1' := I2``, so the map shows post-op grey with no colour.
"""

from __future__ import annotations

import cv2
import numpy as np

PERCENTILE_SAMPLE = 1_000_000


def normalize_intensity(image: np.ndarray, mask: np.ndarray | None = None, low_pct: float = 1.0,
                        high_pct: float = 99.0) -> np.ndarray:
    """Scale to [0, 1] between robust percentiles taken inside ``mask``; clipped."""
    image = np.asarray(image, dtype=np.float32)
    # Percentiles of a regular subsample (about a million pixels) are as good and
    # several times cheaper than sorting a full-size film.
    step = max(1, int(np.ceil(np.sqrt(image.size / PERCENTILE_SAMPLE))))
    sample = image[::step, ::step]
    if mask is not None and mask[::step, ::step].any():
        values = sample[mask[::step, ::step]]
    else:
        values = sample.ravel()
    low, high = (float(v) for v in np.percentile(values, [low_pct, high_pct]))
    if high - low < 1e-6:
        return np.zeros_like(image)
    out = (image - np.float32(low)) * np.float32(1.0 / (high - low))
    return np.clip(out, 0.0, 1.0, out=out)


def warp_to(image: np.ndarray, h: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Perspective warp of ``image`` by ``h`` (source pixels -> target pixels) onto ``shape``.

    Returns the warped image and the boolean footprint of valid pixels.
    """
    rows, cols = shape
    warped = cv2.warpPerspective(np.asarray(image, dtype=np.float32), np.asarray(h, dtype=np.float64),
                                 (cols, rows), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=0.0)
    footprint = cv2.warpPerspective(np.ones(np.shape(image), dtype=np.uint8), np.asarray(h, dtype=np.float64),
                                    (cols, rows), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                    borderValue=0) > 0
    return warped, footprint


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 full-range YCbCr (Y in [0, 1], Cb/Cr centred on 0) to RGB in [0, 1]."""
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return np.clip(np.stack([r, g, b], axis=-1), 0.0, 1.0)


def colour_difference_map(pre: np.ndarray, post: np.ndarray, h_pre_to_post: np.ndarray) -> np.ndarray:
    """The CDM on the post-op grid as uint8 RGB, shape (rows, cols, 3)."""
    post = np.asarray(post, dtype=np.float32)
    if post.ndim != 2 or np.ndim(pre) != 2:
        raise ValueError("pre and post must be 2-D grey-scale images")
    warped, footprint = warp_to(pre, h_pre_to_post, post.shape)
    if not footprint.any():
        raise ValueError("the homography maps the pre-op image entirely outside the post-op image")
    # Both scaled by percentiles of the same pixels (the overlap): with the post-op
    # image's own full-field percentiles (collimation borders, soft tissue the pre-op
    # never covered) unchanged bone came out magenta (median chroma +0.09 on a
    # synthetic pair; -0.005 with the shared region).
    i1 = normalize_intensity(warped, footprint)
    i2 = normalize_intensity(post, footprint)
    np.copyto(i1, i2, where=~footprint)
    # In 8-bit units, float32 throughout: a full-size film is 5 Mpx.
    y = (i1 + i2) * np.float32(127.5)
    chroma = (i2 - i1) * np.float32(127.5)
    rgb = np.empty((*post.shape, 3), dtype=np.uint8)
    for channel, (cb_weight, cr_weight) in enumerate(_BT601_TO_RGB):
        value = y + chroma * np.float32(cb_weight + cr_weight)
        np.clip(value, 0.0, 255.0, out=value)
        rgb[..., channel] = np.rint(value)
    return rgb


_BT601_TO_RGB = ((0.0, 1.402), (-0.344136, -0.714136), (1.772, 0.0))
"""(Cb, Cr) weights of R, G and B in :func:`ycbcr_to_rgb` (Y's weight is 1)."""
