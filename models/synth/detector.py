"""From line integrals to a processed "for presentation" radiograph.

Beer-Lambert attenuation with a heel-effect gradient and collimation,
scatter as a heavily blurred fraction of the primary, quantum (Poisson-like)
noise, detector blur, log conversion, then the vendor-style image processing
(percentile windowing, unsharp masking, gamma) that differs between exams,
quantised to 12-16 bits and stored MONOCHROME1 or MONOCHROME2.
All 2D; everything large is done with OpenCV for speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from models.algorithms.exposed_field import ExposedField


@dataclass(frozen=True)
class Processing:
    """Exposure and processing settings of one exam (sampled per exam)."""

    photons_per_mm2: float
    heel: float  # relative intensity change across the anode-cathode (row) axis
    scatter_fraction: float  # scatter-to-primary ratio at the field centre
    scatter_sigma_mm: float
    blur_sigma_mm: float
    unsharp_sigma_mm: float
    equalize_sigma_mm: float  # large-kernel dynamic range compression (vendor "equalization")
    equalize_amount: float
    unsharp_amount: float
    gamma: float
    bits_stored: int
    photometric: str  # MONOCHROME1 or MONOCHROME2
    collimation: tuple[float, float, float, float]  # fraction of width/height cut: top, bottom, left, right
    marker: str | None  # "R" / "L" lead marker or None


def sample_processing(rng: np.random.Generator) -> Processing:
    """Random but plausible exposure and processing for one exam."""
    return Processing(
        photons_per_mm2=float(rng.uniform(2.0e4, 8.0e4)),
        heel=float(rng.uniform(-0.15, 0.15)),
        scatter_fraction=float(rng.uniform(0.05, 0.2)),  # after an anti-scatter grid
        scatter_sigma_mm=float(rng.uniform(25, 60)),
        blur_sigma_mm=float(rng.uniform(0.06, 0.12)),
        unsharp_sigma_mm=float(rng.uniform(1.5, 6.0)),
        equalize_sigma_mm=float(rng.uniform(15.0, 40.0)),
        equalize_amount=float(rng.uniform(0.4, 0.8)),
        unsharp_amount=float(rng.uniform(0.2, 1.0)),
        gamma=float(rng.uniform(0.75, 1.3)),
        bits_stored=int(rng.choice([12, 14, 16])),
        photometric=str(rng.choice(["MONOCHROME1", "MONOCHROME2"])),
        collimation=tuple(float(v) for v in rng.uniform(0.0, 0.06, 4)) if rng.random() < 0.7 else (0.0, 0.0, 0.0, 0.0),  # type: ignore[arg-type]
        marker=str(rng.choice(["R", "L"])) if rng.random() < 0.5 else None,
    )


def _blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    if sigma_px < 0.2:
        return image
    if sigma_px > 6:
        # large kernels: blur a downsampled copy (scatter, unsharp masks)
        f = int(max(1, sigma_px // 3))
        small = cv2.resize(image, (max(1, image.shape[1] // f), max(1, image.shape[0] // f)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma_px / f, borderType=cv2.BORDER_REFLECT)
        return cv2.resize(small, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(image, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)


def exposed_field(shape: tuple[int, int], proc: Processing) -> ExposedField:
    """(row0, row1, col0, col1), half-open: the rectangle the collimator leaves exposed."""
    rows, cols = shape
    top, bottom, left, right = proc.collimation
    return ExposedField(int(top * rows), rows - int(bottom * rows), int(left * cols), cols - int(right * cols))


def collimation_field(shape: tuple[int, int], proc: Processing, pitch_mm: float) -> np.ndarray:
    """Relative primary fluence: 1 inside the collimated field, ~0 outside, with a penumbra."""
    field = np.zeros(shape, np.float32)
    r0, r1, c0, c1 = exposed_field(shape, proc)
    field[r0:r1, c0:c1] = 1.0
    if any(proc.collimation):
        field = _blur(field, 0.6 / pitch_mm)
    return field


def lead_marker(shape: tuple[int, int], letter: str, at_left: bool, pitch_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Line integral of a lead letter marker (about 12 mm tall) near a top corner."""
    out = np.zeros(shape, np.uint8)
    height_px = 12.0 / pitch_mm
    scale = height_px / 22.0
    thickness = max(1, int(round(2.0 / pitch_mm)))
    (w, h), _ = cv2.getTextSize(letter, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    margin = int(rng.uniform(0.07, 0.12) * shape[1])
    x = margin if at_left else shape[1] - margin - w
    y = int(rng.uniform(0.08, 0.14) * shape[0]) + h
    cv2.putText(out, letter, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
    return out.astype(np.float32) * (6.0 / 255.0)


def expose(
    mu_line: np.ndarray,
    proc: Processing,
    pitch_mm: float,
    rng: np.random.Generator,
    metal: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate detection and processing; returns ``(stored_uint16, presentation_float)``.

    ``presentation_float`` is the processed image in [0, 1], bright = dense
    (MONOCHROME2 sense), before quantisation and photometric inversion.
    ``metal`` (optional mask) is left out of the histogram that sets the
    window, as vendor processing segments metal and collimation; a soft knee
    above 0.8 keeps bone below metal instead of clipping both to white.
    """
    rows, cols = mu_line.shape
    field = collimation_field(mu_line.shape, proc, pitch_mm)
    heel = torch.from_numpy((1.0 + proc.heel * np.linspace(-1, 1, rows, dtype=np.float32))[:, None])
    # pointwise work in torch (vectorised, multi-threaded); blurs in OpenCV
    primary_t = torch.exp(-torch.from_numpy(np.ascontiguousarray(mu_line, np.float32))) * heel * (0.01 + 0.99 * torch.from_numpy(field))
    primary = primary_t.numpy()
    scatter = torch.from_numpy(_blur(primary, proc.scatter_sigma_mm / pitch_mm))
    photons = float(proc.photons_per_mm2 * pitch_mm * pitch_mm)
    counts = photons * (primary_t + proc.scatter_fraction * scatter)
    noise = torch.from_numpy(rng.standard_normal(counts.shape, dtype=np.float32))
    counts = counts + torch.sqrt(torch.clamp(counts, min=0.0)) * noise
    counts_np = _blur(counts.numpy(), proc.blur_sigma_mm / pitch_mm)
    log_t = float(np.log(photons)) - torch.log(torch.clamp(torch.from_numpy(np.ascontiguousarray(counts_np)), min=0.5))
    log_image = log_t.numpy()
    ceiling = float(np.percentile(log_image[::7, ::7], 99))
    background = np.minimum(log_image, ceiling)
    if metal is not None and metal.any():  # metal does not pull its surroundings down
        background[metal] = float(np.median(log_image[::7, ::7]))
    log_t = log_t - proc.equalize_amount * torch.from_numpy(_blur(background, proc.equalize_sigma_mm / pitch_mm))
    log_image = log_t.numpy()
    step = 3
    region = field[::step, ::step] > 0.5
    if metal is not None:
        region &= ~metal[::step, ::step]
    sample = log_image[::step, ::step][region] if region.any() else log_image.ravel()
    lo, hi = np.percentile(sample, [0.5, 99.5])
    x_t = torch.clamp((log_t - float(lo)) / max(float(hi - lo), 1e-6), min=0.0)
    sharp = torch.from_numpy(_blur(x_t.numpy(), proc.unsharp_sigma_mm / pitch_mm))
    x_t = torch.clamp(x_t + proc.unsharp_amount * (x_t - sharp), min=0.0) ** proc.gamma
    knee = 0.8
    x_t = torch.where(x_t < knee, x_t, knee + (1.0 - knee) * torch.tanh((x_t - knee) / (1.0 - knee)))
    x_t = torch.clamp(x_t, 0.0, 1.0)
    top = (1 << proc.bits_stored) - 1
    values_t = torch.round(x_t * top)
    if proc.photometric == "MONOCHROME1":
        values_t = top - values_t
    values = values_t.to(torch.int32).numpy().astype(np.uint16)
    x = x_t.numpy().astype(np.float32, copy=False)
    return values, x
