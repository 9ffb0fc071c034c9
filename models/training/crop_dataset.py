"""Training crops for the fine stage, read from the training-data folder format.

Each sample is loaded once at full resolution, resampled to the fine model's
mm grid (:func:`models.inference.crops.make_level`) and kept in memory as
float16, with the masks a fine segmentation task reads packed into the bits of one uint8 map. Crops are
cut per epoch around the true landmark or head centre *plus a random offset*
(the coarse stage's error at inference), with a small rotation/scale, the
left side mirrored, and the processing and intensity augmentation of the coarse models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch.utils.data import Dataset

from models.algorithms.vocabulary import SIDES
from models.inference.crops import (
    FINE_LANDMARK_TYPES,
    FINE_SEGMENTATION,
    Crop,
    FineSegmentation,
    landmark_type,
    make_level,
    resample_mask,
)
from models.training.augment import AugmentConfig, disc_targets, intensity, processing
from models.training.dataset import DatasetError, SampleRef, parallel_map

MAX_MASK_BITS = 8
"""Source masks packed into :attr:`FineSample.mask_bits` (a uint8 map): mask k in bit k."""


@dataclass
class FineSample:
    """One radiograph on the fine grid: image, labelled landmarks (level px, None = absent), packed masks."""

    name: str
    anatomy: str
    image: np.ndarray  # float16 (rows, cols)
    landmarks: dict[str, tuple[float, float] | None]
    mask_bits: np.ndarray | None  # uint8 (rows, cols), bit k = mask_keys[k]
    mask_labelled: tuple[bool, ...]  # per mask_keys: the sample has that mask
    mask_keys: tuple[str, ...] = ()

    def has_mask(self, key: str) -> bool:
        return key in self.mask_keys and self.mask_labelled[self.mask_keys.index(key)]

    def mask(self, crop: Crop, key: str) -> np.ndarray:
        """Source mask ``key`` cut by ``crop`` (nearest), 0/1 float32."""
        bits = crop.cut(self.mask_bits, nearest=True)  # type: ignore[arg-type]
        return ((bits >> self.mask_keys.index(key)) & 1).astype(np.float32)


def load_fine_sample(ref: SampleRef, mm_per_px: float, mask_keys: tuple[str, ...] = ()) -> FineSample:
    """Read one sample at full resolution and bring it and its ``mask_keys`` masks onto the ``mm_per_px`` grid."""
    if len(mask_keys) > MAX_MASK_BITS:
        raise ValueError(f"at most {MAX_MASK_BITS} masks per fine sample, got {len(mask_keys)}")
    spacing = ref.meta.get("pixel_spacing_mm")
    if not spacing:
        raise DatasetError(f"{ref.name}.json has no pixel_spacing_mm: the fine stage works in mm")
    spacing_t = (float(spacing[0]), float(spacing[1]))  # type: ignore[index]
    with np.load(ref.npz) as data:
        if "image" not in data:
            raise DatasetError(f"{ref.npz.name} has no 'image' array")
        level = make_level(data["image"], spacing_t, mm_per_px)
        bits, labelled = None, []
        if mask_keys:
            bits = np.zeros(level.image.shape, np.uint8)
            for k, key in enumerate(mask_keys):
                labelled.append(key in data)
                if key in data:
                    bits |= resample_mask(data[key], level.image.shape).astype(np.uint8) << k
    marks = ref.meta.get("landmarks") or {}
    landmarks: dict[str, tuple[float, float] | None] = {}
    for name, value in dict(marks).items():  # type: ignore[arg-type]
        if value is None:
            landmarks[name] = None
            continue
        x, y = float(value[0]), float(value[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DatasetError(f"{ref.name}.json: landmark {name} is not finite")
        lx, ly = level.from_source(np.array([[x, y]]))[0]
        landmarks[name] = (float(lx), float(ly))
    return FineSample(ref.name, str(ref.meta.get("anatomy", "")), level.image.astype(np.float16), landmarks,
                      bits, tuple(labelled), tuple(mask_keys))


def load_fine_folder(refs: list[SampleRef], task: str, mm_per_px: float,
                     exclude_anatomy: set[str] | None = None, workers: int = 0) -> list[FineSample]:
    """The samples of ``refs`` (minus excluded anatomies) on the fine grid, with the masks ``task`` reads."""
    excluded = exclude_anatomy or set()
    kept = [r for r in refs if str(r.meta.get("anatomy", "")) not in excluded]
    keys = FINE_SEGMENTATION[task].source_keys if task in FINE_SEGMENTATION else ()
    return parallel_map(partial(load_fine_sample, mm_per_px=mm_per_px, mask_keys=keys), kept, workers)


@dataclass(frozen=True)
class CropAugment:
    """Where the crop centre lands around the truth (the coarse error) and how the crop is transformed."""

    jitter_mm: float = 6.0
    rotate_deg: float = 8.0
    scale: float = 0.08
    intensity: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def off(cls) -> CropAugment:
        return cls(0.0, 0.0, 0.0, AugmentConfig.off())


def _random_crop(rng: np.random.Generator, centre: tuple[float, float], size: int, mirror: bool,
                 aug: CropAugment, mm_per_px: float) -> Crop:
    sigma = aug.jitter_mm / mm_per_px
    offset = np.clip(rng.normal(0.0, sigma, 2), -3 * sigma, 3 * sigma) if sigma > 0 else np.zeros(2)
    angle = rng.uniform(-aug.rotate_deg, aug.rotate_deg) if aug.rotate_deg else 0.0
    scale = 1.0 + rng.uniform(-aug.scale, aug.scale) if aug.scale else 1.0
    return Crop.around(np.asarray(centre) + offset, size, mirror=mirror, angle_deg=angle, scale=scale)


def _image_tensor(crop: Crop, sample: FineSample, rng: np.random.Generator, aug: CropAugment) -> torch.Tensor:
    image = crop.cut(sample.image.astype(np.float32))
    cfg = aug.intensity
    if cfg.processing_p > 0:
        image = processing(image, rng, cfg, renormalise=False)
    if cfg.intensity_scale > 0 or cfg.gamma > 0 or cfg.noise_sigma > 0:
        image = intensity(image, rng, cfg)
    return torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32))


class LandmarkCropSet(Dataset):
    """One item per present landmark: a crop around it (jittered) with every landmark type it shows.

    Channels follow :data:`FINE_LANDMARK_TYPES`; a crop of one side supervises
    that side's landmarks (and the symphysis) that fall inside it, so each crop
    teaches several channels while inference reads only the channel it was cut for.
    """

    def __init__(self, samples: list[FineSample], size: int, mm_per_px: float, seed: int,
                 aug: CropAugment, disc_radius_px: float = 3.0) -> None:
        self.samples, self.size, self.mm_per_px, self.seed, self.aug = samples, size, mm_per_px, seed, aug
        self.disc_radius_px = disc_radius_px
        self.epoch = 0
        self.items = [(i, name) for i, s in enumerate(samples) for name, xy in sorted(s.landmarks.items())
                      if xy is not None and landmark_type(name)[0] in FINE_LANDMARK_TYPES]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        sample_index, name = self.items[index]
        sample = self.samples[sample_index]
        _, side = landmark_type(name)
        mirror = side == "left" if side else bool(rng.random() < 0.5)
        crop = _random_crop(rng, sample.landmarks[name], self.size, mirror, self.aug, self.mm_per_px)  # type: ignore[arg-type]
        n = len(FINE_LANDMARK_TYPES)
        coords = np.zeros((n, 2), np.float32)
        labelled = np.zeros(n, np.float32)
        present = np.zeros(n, np.float32)
        for t, base in enumerate(FINE_LANDMARK_TYPES):
            key = f"{base}_{side}" if side and base != "pubic_symphysis" else base
            if key not in sample.landmarks or (side is None and key != name):
                continue
            labelled[t] = 1.0
            xy = sample.landmarks[key]
            if xy is None:
                continue
            uv = crop.from_level(np.array([xy]))[0]
            if np.all((uv >= 0) & (uv <= self.size - 1)):
                coords[t], present[t] = uv, 1.0
        return {
            "image": _image_tensor(crop, sample, rng, self.aug),
            "discs": torch.from_numpy(disc_targets(coords, present, self.size, self.disc_radius_px)),
            "coords": torch.from_numpy(coords),
            "lm_labelled": torch.from_numpy(labelled),
            "lm_present": torch.from_numpy(present),
        }


class SegmentCropSet(Dataset):
    """One item per side whose ``task.centre`` landmark is present and that has at least one of the task's
    masks: a crop around it (jittered) with the task's segments (a hip's head, roof, joint space, implant;
    or the pelvis around a tuberosity). A side with no mask would teach nothing (its loss weight is 0)."""

    def __init__(self, samples: list[FineSample], task: FineSegmentation, size: int, mm_per_px: float, seed: int,
                 aug: CropAugment) -> None:
        self.samples, self.task, self.size, self.mm_per_px = samples, task, size, mm_per_px
        self.seed, self.aug = seed, aug
        self.epoch = 0
        self.items = [(i, side) for i, s in enumerate(samples) for side in SIDES
                      if s.landmarks.get(f"{task.centre}_{side}") is not None
                      and any(s.has_mask(task.source_key(seg, side)) for seg in task.segments)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        sample_index, side = self.items[index]
        sample = self.samples[sample_index]
        centre = sample.landmarks[f"{self.task.centre}_{side}"]
        crop = _random_crop(rng, centre, self.size, side == "left", self.aug, self.mm_per_px)  # type: ignore[arg-type]
        masks = np.zeros((len(self.task.segments), self.size, self.size), np.float32)
        valid = np.zeros(len(self.task.segments), np.float32)
        for c, seg in enumerate(self.task.segments):
            key = self.task.source_key(seg, side)
            if sample.has_mask(key):
                masks[c] = sample.mask(crop, key)
                valid[c] = 1.0
        return {
            "image": _image_tensor(crop, sample, rng, self.aug),
            "masks": torch.from_numpy(masks),
            "mask_valid": torch.from_numpy(valid),
        }
