"""A classical stand-in for the segmentation model's pelvis probability.

Used only when no trained segmentation model is installed, and labelled as
such in every output. On an AP pelvis film the pelvic ring fills the upper
centre and the femurs the lower sides, so a broad spatial prior times a
"bone-bright" term down-weights femoral shafts and soft tissue. It is weak:
it cannot follow a pelvis that is off-centre, and it counts the femoral heads
as pelvis. The real weights plug in through ``node.commands.align``.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.align.matching import clahe, downscale, to_uint8


def classical_pelvis_probability(image: np.ndarray) -> np.ndarray:
    """Pelvis probability in [0, 1] on the image grid (spatial prior x smoothed brightness)."""
    image = np.asarray(image, dtype=np.float32)
    rows, cols = image.shape
    small, _ = downscale(image, 256)
    bright = clahe(to_uint8(small)).astype(np.float32) / 255.0
    bright = cv2.GaussianBlur(bright, (0, 0), 4.0)
    bright = cv2.resize(bright, (cols, rows), interpolation=cv2.INTER_LINEAR)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    spatial = np.exp(-0.5 * (((x - 0.5 * cols) / (0.30 * cols)) ** 2 + ((y - 0.42 * rows) / (0.26 * rows)) ** 2))
    likelihood = 1.0 / (1.0 + np.exp(-(bright - 0.35) / 0.08))
    return np.clip(1.3 * spatial * likelihood, 0.0, 1.0).astype(np.float32)
