"""Training augmentation on the working grid (numpy in, numpy out).

Detector-processing looks (unsharp masking from edge enhancement to
large-area equalisation, blur, random tone curves), intensity scale/shift,
gamma, Gaussian noise, horizontal flips WITH side
relabelling (``femur_right`` becomes ``femur_left`` and every ``*_right``
landmark swaps with its ``*_left`` twin), and a small affine (rotation, scale,
translation). All randomness comes from the caller's ``numpy`` Generator, so a
seeded run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from models.inference.preprocess import normalise

COARSE_GRID_MM_PER_PX = 1.45
"""About the coarse models' pixel size on a full AP pelvis film (1.4-1.5 mm): the unit of
:class:`AugmentConfig`'s processing radii."""


def side_swap_index(names: tuple[str, ...]) -> np.ndarray:
    """Index permutation that swaps every ``*_right`` name with its ``*_left`` twin."""
    position = {name: i for i, name in enumerate(names)}
    out = np.arange(len(names))
    for i, name in enumerate(names):
        for a, b in (("_right", "_left"), ("_left", "_right")):
            if name.endswith(a):
                twin = name[: -len(a)] + b
                if twin not in position:
                    raise ValueError(f"{name!r} has no {b} twin in the name list")
                out[i] = position[twin]
    return out


@dataclass
class WorkSample:
    """One training sample on the working grid.

    ``masks``: (C, S, S) float32 in [0, 1]; ``mask_valid``: (C,) 1 = labelled.
    ``landmarks``: (L, 2) working-grid (x, y), NaN where absent or unlabelled;
    ``lm_labelled``/``lm_present``: (L,) in {0, 1}.
    """

    image: np.ndarray
    masks: np.ndarray
    mask_valid: np.ndarray
    landmarks: np.ndarray
    lm_labelled: np.ndarray
    lm_present: np.ndarray
    meta: dict[str, object]


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; ``AugmentConfig.off()`` disables all."""

    flip_p: float = 0.5
    rotate_deg: float = 7.0
    scale: float = 0.08
    translate_frac: float = 0.05
    intensity_scale: float = 0.15
    intensity_shift: float = 0.08
    gamma: float = 0.3
    noise_sigma: float = 0.03
    # Detector processing (vendor look): each applied with probability ``processing_p``.
    processing_p: float = 0.5
    unsharp_amount: float = 1.2  # high-frequency gain in [-amount/3, amount] (negative: softer)
    unsharp_sigma_px: tuple[float, float] = (2.0, 24.0)  # coarse-grid px: edge enhancement .. large-area equalisation
    blur_sigma_px: float = 1.0
    tone_strength: float = 0.35  # how far the random monotone tone curve bends

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, processing_p=0.0)


def hflip(sample: WorkSample, segment_swap: np.ndarray, landmark_swap: np.ndarray) -> WorkSample:
    """Mirror left-right and relabel sides so the labels stay anatomically true."""
    size = sample.image.shape[1]
    lm = sample.landmarks.copy()
    lm[:, 0] = (size - 1) - lm[:, 0]
    return replace(
        sample,
        image=np.ascontiguousarray(sample.image[:, ::-1]),
        masks=np.ascontiguousarray(sample.masks[segment_swap][:, :, ::-1]),
        mask_valid=sample.mask_valid[segment_swap],
        landmarks=lm[landmark_swap],
        lm_labelled=sample.lm_labelled[landmark_swap],
        lm_present=sample.lm_present[landmark_swap],
    )


def affine(sample: WorkSample, angle_deg: float, scale: float, tx: float, ty: float) -> WorkSample:
    """Rotate/scale about the canvas centre and translate (pixels); out-of-canvas landmarks become unlabelled."""
    size = sample.image.shape[0]
    centre = ((size - 1) / 2.0, (size - 1) / 2.0)
    m = cv2.getRotationMatrix2D(centre, angle_deg, scale)
    m[:, 2] += (tx, ty)
    image = cv2.warpAffine(sample.image, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    masks = np.stack(
        [cv2.warpAffine(ch, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0) for ch in sample.masks]
    ) if len(sample.masks) else sample.masks
    lm = sample.landmarks @ m[:, :2].T + m[:, 2]
    labelled = sample.lm_labelled.copy()
    present = sample.lm_present.copy()
    outside = present.astype(bool) & ~np.all((lm >= 0) & (lm <= size - 1), axis=1)
    labelled[outside] = 0
    present[outside] = 0
    lm[~present.astype(bool)] = np.nan
    return replace(sample, image=image, masks=masks.astype(np.float32), landmarks=lm,
                   lm_labelled=labelled, lm_present=present)


def intensity(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Contrast/brightness, gamma and Gaussian noise on a [0, 1] image."""
    img = image * (1.0 + rng.uniform(-cfg.intensity_scale, cfg.intensity_scale))
    img = img + rng.uniform(-cfg.intensity_shift, cfg.intensity_shift)
    img = np.clip(img, 0.0, 1.0)
    if cfg.gamma > 0:
        img = img ** np.exp(rng.uniform(-cfg.gamma, cfg.gamma))
    if cfg.noise_sigma > 0:
        img = img + rng.normal(0.0, rng.uniform(0.0, cfg.noise_sigma), img.shape)
    return img.astype(np.float32)


def processing(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
               content_shape: tuple[int, int] | None = None, renormalise: bool = True) -> np.ndarray:
    """A random detector-processing look on a [0, 1] image: unsharp masking, blur, tone curve.

    DX vendors ship films through multi-scale edge enhancement, dynamic-range
    equalisation and their own tone curves; weights that saw one look lose
    accuracy on others (docs/models.md, "Robustness to processing"), so each
    training image gets a different look. Each step is drawn with probability ``processing_p``;
    the result is re-normalised the way inference normalises (5-95 percentile,
    min-max), so only the look changes, not the input range. Only the image
    content (top-left ``content_shape`` of the canvas) is processed; the
    padding stays as inference pads. A crop of an already normalised image
    (the fine stage) is clipped to [0, 1] instead (``renormalise=False``).
    """
    out = np.array(image, dtype=np.float32)
    rows, cols = content_shape if content_shape is not None else out.shape
    img = out[:rows, :cols]
    changed = False
    if rng.random() < cfg.processing_p and cfg.unsharp_amount > 0:
        low, high = cfg.unsharp_sigma_px
        sigma = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        amount = float(rng.uniform(-cfg.unsharp_amount / 3.0, cfg.unsharp_amount))
        img = img + amount * (img - cv2.GaussianBlur(img, (0, 0), sigma))
        changed = True
    if rng.random() < cfg.processing_p and cfg.blur_sigma_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, cfg.blur_sigma_px)))
        changed = True
    if changed:
        img = normalise(img) if renormalise else np.clip(img, 0.0, 1.0)
    if rng.random() < cfg.processing_p and cfg.tone_strength > 0:
        img = tone_curve(img, rng, cfg.tone_strength)
    out[:rows, :cols] = img
    return out


def tone_curve(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A random increasing curve through (0, 0) and (1, 1): knots jittered by ``strength``, then sorted."""
    knots_x = np.linspace(0.0, 1.0, 6)
    inner = knots_x[1:-1] + rng.uniform(-strength, strength, 4) / 4.0
    knots_y = np.concatenate([[0.0], np.sort(np.clip(inner, 0.02, 0.98)), [1.0]])
    return np.interp(np.clip(image, 0.0, 1.0), knots_x, knots_y).astype(np.float32)


def augment(
    sample: WorkSample,
    rng: np.random.Generator,
    cfg: AugmentConfig,
    segment_swap: np.ndarray,
    landmark_swap: np.ndarray,
) -> WorkSample:
    """Apply a random processing look, flip, affine and intensity change drawn from ``rng``."""
    if cfg.processing_p > 0:
        transform = sample.meta.get("transform")
        content = getattr(transform, "content_shape", None)
        sample = replace(sample, image=processing(sample.image, rng, cfg, content))
    if cfg.flip_p > 0 and rng.random() < cfg.flip_p:
        sample = hflip(sample, segment_swap, landmark_swap)
    if cfg.rotate_deg > 0 or cfg.scale > 0 or cfg.translate_frac > 0:
        size = sample.image.shape[0]
        sample = affine(
            sample,
            rng.uniform(-cfg.rotate_deg, cfg.rotate_deg),
            1.0 + rng.uniform(-cfg.scale, cfg.scale),
            rng.uniform(-cfg.translate_frac, cfg.translate_frac) * size,
            rng.uniform(-cfg.translate_frac, cfg.translate_frac) * size,
        )
    if cfg.intensity_scale > 0 or cfg.gamma > 0 or cfg.noise_sigma > 0:
        sample = replace(sample, image=intensity(sample.image, rng, cfg))
    return sample


def disc_targets(landmarks: np.ndarray, present: np.ndarray, size: int, radius_px: float) -> np.ndarray:
    """(L, S, S) float32 discs of ``radius_px`` around each present landmark (anti-aliased edge)."""
    out = np.zeros((len(landmarks), size, size), dtype=np.float32)
    reach = int(np.ceil(radius_px + 1))
    for i, (pt, on) in enumerate(zip(landmarks, present)):
        if not on:
            continue
        cx, cy = int(round(float(pt[0]))), int(round(float(pt[1])))
        x0, x1 = max(0, cx - reach), min(size, cx + reach + 1)
        y0, y1 = max(0, cy - reach), min(size, cy + reach + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        d = np.sqrt((xx - pt[0]) ** 2 + (yy - pt[1]) ** 2)
        out[i, y0:y1, x0:x1] = np.clip(radius_px + 0.5 - d, 0.0, 1.0)
    return out
