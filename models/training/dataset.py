"""Reader of the training-data folder format (``docs/training-data.md``).

Each sample is brought onto the working grid with the same preprocessing as
inference (``models/inference/preprocess.py``) once, then kept in memory;
augmentation is applied per epoch by :class:`AugmentedSet`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from models.algorithms.vocabulary import LANDMARKS, SEGMENTS
from models.inference.preprocess import WORK_SIZE, mask_to_work_grid, to_work_grid
from models.training.augment import (
    AugmentConfig,
    WorkSample,
    augment,
    disc_targets,
    side_swap_index,
)

FORMAT = "hipnode-train/1"
T = TypeVar("T")
R = TypeVar("R")


class DatasetError(ValueError):
    """The folder is not in the training-data format; ``str()`` says what is wrong."""


@dataclass(frozen=True)
class SampleRef:
    """Where one sample lives and what its JSON says about it."""

    name: str
    npz: Path
    meta: dict[str, object]


def list_samples(folder: str | Path) -> list[SampleRef]:
    """Check ``dataset.json`` and list ``NAME.npz`` + ``NAME.json`` pairs, sorted by name."""
    root = Path(folder)
    header = root / "dataset.json"
    if not header.is_file():
        raise DatasetError(f"{root} has no dataset.json (see docs/training-data.md)")
    try:
        info = json.loads(header.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{header} is not valid JSON: {exc}") from exc
    if info.get("format") != FORMAT:
        raise DatasetError(f"{header}: format {info.get('format')!r}, expected {FORMAT!r}")
    refs = []
    for npz in sorted(root.glob("*.npz")):
        side = npz.with_suffix(".json")
        if not side.is_file():
            raise DatasetError(f"{npz.name} has no {side.name}")
        refs.append(SampleRef(npz.stem, npz, json.loads(side.read_text())))
    if not refs:
        raise DatasetError(f"{root} holds no NAME.npz samples")
    return refs


def read_image(data: Mapping[str, np.ndarray], ref: SampleRef) -> tuple[np.ndarray, tuple[float, float] | None]:
    """A sample's 2D ``image`` (from its open NPZ) and its JSON's pixel spacing, None when it gives none."""
    if "image" not in data:
        raise DatasetError(f"{ref.npz.name} has no 'image' array")
    image = np.asarray(data["image"], dtype=np.float32)
    if image.ndim != 2:
        raise DatasetError(f"{ref.npz.name}: image must be 2D, got {image.shape}")
    spacing = ref.meta.get("pixel_spacing_mm")
    return image, ((float(spacing[0]), float(spacing[1])) if spacing else None)  # type: ignore[index]


def load_work_sample(ref: SampleRef, size: int = WORK_SIZE) -> WorkSample:
    """Read one sample and resample image, masks and landmarks onto the working grid."""
    with np.load(ref.npz) as data:
        image, spacing_t = read_image(data, ref)
        work, tf = to_work_grid(image, spacing_t, size)
        masks = np.zeros((len(SEGMENTS), size, size), dtype=np.float32)
        valid = np.zeros(len(SEGMENTS), dtype=np.float32)
        for i, name in enumerate(SEGMENTS):
            if name in data:
                m = data[name]
                if m.shape != image.shape:
                    raise DatasetError(f"{ref.npz.name}: mask {name} shape {m.shape} != image {image.shape}")
                masks[i] = mask_to_work_grid(m, tf)
                valid[i] = 1.0
    marks = ref.meta.get("landmarks") or {}
    if not isinstance(marks, dict):
        raise DatasetError(f"{ref.name}.json: 'landmarks' must be an object")
    lm = np.full((len(LANDMARKS), 2), np.nan, dtype=np.float64)
    labelled = np.zeros(len(LANDMARKS), dtype=np.float32)
    present = np.zeros(len(LANDMARKS), dtype=np.float32)
    for i, name in enumerate(LANDMARKS):
        if name not in marks:
            continue
        labelled[i] = 1.0
        value = marks[name]
        if value is not None:
            x, y = float(value[0]), float(value[1])
            if not (math.isfinite(x) and math.isfinite(y)):
                raise DatasetError(f"{ref.name}.json: landmark {name} is not finite")
            lm[i] = tf.to_work(np.array([[x, y]]))[0]
            present[i] = 1.0
    meta = {**ref.meta, "name": ref.name, "work_mm_per_px": tf.work_mm_per_px, "transform": tf}
    return WorkSample(work, masks, valid, lm, labelled, present, meta)


def load_folder(folder: str | Path, size: int = WORK_SIZE, anatomy: set[str] | None = None,
                exclude_anatomy: set[str] | None = None, workers: int = 0) -> list[WorkSample]:
    """All samples of ``folder`` on the working grid, optionally filtered by ``anatomy``.

    ``workers`` > 0 loads in that many processes: a full-size sample takes about
    0.3 s to read and resample, so hundreds of them dominate a short GPU run.
    """
    refs = []
    for ref in list_samples(folder):
        a = str(ref.meta.get("anatomy", ""))
        if anatomy is not None and a not in anatomy:
            continue
        if exclude_anatomy is not None and a in exclude_anatomy:
            continue
        refs.append(ref)
    return parallel_map(partial(load_work_sample, size=size), refs, workers)


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[fn(x) for x in items]``, in ``workers`` processes when ``workers`` > 0 (order kept)."""
    if workers <= 0 or len(items) < 2:
        return [fn(x) for x in items]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items, chunksize=4))


SEGMENT_SWAP = side_swap_index(SEGMENTS)
LANDMARK_SWAP = side_swap_index(LANDMARKS)


class AugmentedSet(Dataset):
    """Torch view of in-memory samples with per-item seeded augmentation.

    Items: dict of tensors ``image`` (1,S,S), ``masks`` (C,S,S), ``mask_valid``
    (C,), ``discs`` (L,S,S), ``coords`` (L,2), ``lm_labelled``/``lm_present`` (L,).
    """

    def __init__(self, samples: list[WorkSample], cfg: AugmentConfig, seed: int, disc_radius_px: float = 3.0,
                 with_discs: bool = True) -> None:
        self.samples = samples
        self.cfg = cfg
        self.seed = seed
        self.epoch = 0
        self.disc_radius_px = disc_radius_px
        self.with_discs = with_discs

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        s = augment(self.samples[index], rng, self.cfg, SEGMENT_SWAP, LANDMARK_SWAP)
        size = s.image.shape[0]
        coords = np.nan_to_num(s.landmarks, nan=0.0).astype(np.float32)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(s.image[None], dtype=np.float32)),
            "masks": torch.from_numpy(np.ascontiguousarray(s.masks, dtype=np.float32)),
            "mask_valid": torch.from_numpy(s.mask_valid.astype(np.float32)),
            "coords": torch.from_numpy(coords),
            "lm_labelled": torch.from_numpy(s.lm_labelled.astype(np.float32)),
            "lm_present": torch.from_numpy(s.lm_present.astype(np.float32)),
        }
        if self.with_discs:
            item["discs"] = torch.from_numpy(disc_targets(coords, s.lm_present, size, self.disc_radius_px))
        return item
