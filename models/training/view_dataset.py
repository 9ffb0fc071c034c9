"""Training samples of the view models: films labelled ``"view"`` in their JSON (``docs/training-data.md``).

Each film is read once and kept in memory at twice the view grid (256 px):
for a film model (``image``) the film itself, resampled and normalised as
inference does; for a maps model (``maps``) the merged probability maps of the
segmentation model it will run behind (``models/inference/view.py``). Per
epoch the content is first **reframed**: the bottom, top or one side cut off
at random, as a collimator or a smaller detector would, then brought onto the
view grid as inference does (area resampling, a film also re-normalised,
zero padding). The first film model (session 24), trained without it, called
9 of 201 held-out AP films frog-leg views, most of them films ending high on
the femurs, whose flexed femurs also look short; with it, 7. Then a flip (the
maps' sides are merged and a view has no side, so nothing to relabel) and a
small affine; a film also gets the segmentation task's processing look and
intensity changes.
"""

from __future__ import annotations

from functools import lru_cache, partial
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from models.inference.preprocess import to_work_grid
from models.inference.segmentation import SegmentationModel
from models.inference.view import VIEW_SOURCES, VIEWS, channel_maps, fit_to_grid
from models.training.augment import AugmentConfig, WorkSample, augment
from models.training.dataset import DatasetError, SampleRef, list_samples, parallel_map, read_image

NO_SWAP = np.zeros(0, dtype=np.int64)
LOAD_SCALE = 2  # content kept at this multiple of the view grid: a reframed crop is resampled down, not up
BOTTOM_CUT_P, BOTTOM_KEEP = 0.5, (0.6, 1.0)  # fraction of rows kept from the top
TOP_CUT_P, TOP_CUT = 0.2, (0.0, 0.15)
SIDE_CUT_P, SIDE_KEEP = 0.2, (0.55, 1.0)  # one side cut: a single-hip field


def reframe(content: np.ndarray, rng: np.random.Generator, on: bool = True) -> np.ndarray:
    """A random sub-window of a film's content, ``(..., rows, cols)``, kept from the film's own edges."""
    rows, cols = content.shape[-2:]
    r0, r1, c0, c1 = 0, rows, 0, cols
    if on and rng.random() < BOTTOM_CUT_P:
        r1 = max(8, round(rows * rng.uniform(*BOTTOM_KEEP)))
    if on and rng.random() < TOP_CUT_P:
        r0 = round(r1 * rng.uniform(*TOP_CUT))
    if on and rng.random() < SIDE_CUT_P:
        keep = max(8, round(cols * rng.uniform(*SIDE_KEEP)))
        c0, c1 = (0, keep) if rng.random() < 0.5 else (cols - keep, cols)
    return content[..., r0:r1, c0:c1]


def load_view_sample(ref: SampleRef, source: str, size: int, segmentation_dir: Path) -> tuple[np.ndarray, int]:
    """One labelled film's content (C, rows, cols), longer side ``LOAD_SCALE * size``, and its class.

    ``source`` "image": the film, resampled and normalised; "maps": the merged maps of the segmentation
    in ``segmentation_dir``, on its own grid (which must be ``LOAD_SCALE * size``).
    """
    view = ref.meta.get("view")
    if view not in VIEWS:
        raise DatasetError(f"{ref.name}.json: 'view' must be one of {VIEWS}, got {view!r}")
    with np.load(ref.npz) as data:
        image, spacing = read_image(data, ref)
    if source == "image":
        work, tf = to_work_grid(image, spacing, LOAD_SCALE * size)
        rows, cols = tf.content_shape
        return np.ascontiguousarray(work[None, :rows, :cols]), VIEWS.index(str(view))
    seg = _segmentation(segmentation_dir)(image, spacing)
    if seg.transform.size != LOAD_SCALE * size:
        raise ValueError(f"a maps view model's grid is half the segmentation's ({seg.transform.size} px): "
                         f"--size {seg.transform.size // LOAD_SCALE}, not {size}")
    rows, cols = seg.transform.content_shape
    return np.ascontiguousarray(channel_maps(seg)[:, :rows, :cols]), VIEWS.index(str(view))


@lru_cache(maxsize=4)
def _segmentation(weights_dir: Path) -> SegmentationModel:
    """One model object per folder and process (its manifest read once, its session cached by the runtime)."""
    return SegmentationModel(weights_dir)


def load_view_folders(folders: list[Path], source: str, size: int, segmentation_dir: Path,
                      exclude_anatomy: set[str] | None = None, workers: int = 0) -> list[tuple[np.ndarray, int]]:
    """Every film with a ``"view"`` label in ``folders`` (others are skipped), minus excluded anatomies."""
    if source not in VIEW_SOURCES:
        raise ValueError(f"view model input must be one of {tuple(VIEW_SOURCES)}, got {source!r}")
    refs = [ref for folder in folders for ref in list_samples(folder)
            if "view" in ref.meta and str(ref.meta.get("anatomy", "")) not in (exclude_anatomy or set())]
    return parallel_map(partial(load_view_sample, source=source, size=size,
                                segmentation_dir=Path(segmentation_dir)), refs, workers)


class ViewSet(Dataset):
    """Torch view of in-memory view samples with per-item seeded reframing and augmentation:
    ``image`` (C,S,S), ``view`` ()."""

    def __init__(self, samples: list[tuple[np.ndarray, int]], cfg: AugmentConfig, seed: int, size: int,
                 source: str = "maps", reframing: bool = True) -> None:
        self.samples = samples
        self.cfg = cfg
        self.seed = seed
        self.size = size
        self.source = source
        self.reframing = reframing
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        content, label = self.samples[index]
        canvas, shape = fit_to_grid(reframe(content, rng, self.reframing), self.size, self.source == "image")
        if self.source == "image":  # the segmentation task's augmentation, processing look included
            empty = np.zeros(0, dtype=np.float32)
            placed = WorkSample(canvas[0], np.zeros((0, self.size, self.size), np.float32), empty,
                                np.zeros((0, 2)), empty, empty, {"transform": SimpleNamespace(content_shape=shape)})
            canvas = augment(placed, rng, self.cfg, NO_SWAP, NO_SWAP).image[None]
        else:
            canvas = self._flip_and_affine(canvas, rng)
        return {"image": torch.from_numpy(np.ascontiguousarray(canvas, dtype=np.float32)),
                "view": torch.tensor(label, dtype=torch.long)}

    def _flip_and_affine(self, canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.cfg.flip_p > 0 and rng.random() < self.cfg.flip_p:
            canvas = canvas[:, :, ::-1]
        if self.cfg.rotate_deg > 0 or self.cfg.scale > 0 or self.cfg.translate_frac > 0:
            centre = ((self.size - 1) / 2.0, (self.size - 1) / 2.0)
            m = cv2.getRotationMatrix2D(centre, rng.uniform(-self.cfg.rotate_deg, self.cfg.rotate_deg),
                                        1.0 + rng.uniform(-self.cfg.scale, self.cfg.scale))
            m[:, 2] += rng.uniform(-self.cfg.translate_frac, self.cfg.translate_frac, 2) * self.size
            canvas = np.stack([cv2.warpAffine(np.ascontiguousarray(c), m, (self.size, self.size),
                                              flags=cv2.INTER_LINEAR, borderValue=0.0) for c in canvas])
        return canvas
