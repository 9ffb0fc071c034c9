"""Per-image analysis artifacts (masks, pelvis probability) kept for the pair stage.

A cache, not a record: the catalogue holds the analysis JSON; these arrays
save running the segmentation again when a pair is aligned later. A missing
or unreadable file just means the model runs again.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

from storage.filestore import clean_uid


def probability_to_u8(probability: np.ndarray) -> np.ndarray:
    """The stored form of a probability map: 8-bit levels."""
    return np.round(np.clip(probability, 0, 1) * 255).astype(np.uint8)


def quantise_probability(probability: np.ndarray | None) -> np.ndarray | None:
    """A probability map as it reads back from the cache (float32 multiples of 1/255).

    The pair stage aligns with the cached map; ``hipnode process`` and the study
    stage use this same quantised map, so both align identically and write
    byte-identical objects under the same deterministic UIDs.
    """
    if probability is None:
        return None
    return probability_to_u8(probability).astype(np.float32) / 255.0


def artifact_path(sop_instance_uid: str) -> str:
    """Path relative to the storage directory."""
    return f"analysis/{clean_uid(sop_instance_uid)}.npz"


def save_artifacts(root: Path, relative: str, masks: dict[str, np.ndarray], pelvis: np.ndarray | None) -> None:
    """Write masks (bit-packed) and the pelvis probability (quantised to 8 bits) atomically.

    Packing the bits first makes zlib's work 8x smaller: a full-size film's eleven
    masks save in 0.04 s instead of 0.2 s and load in 0.02 s instead of 0.15 s, both
    on the pair's critical path (study job, then pair job).
    """
    final = root / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.parent / f".{uuid.uuid4().hex}.tmp.npz"
    arrays: dict[str, np.ndarray] = {}
    for name, mask in masks.items():
        mask = np.asarray(mask, bool)
        arrays[f"packed_{name}"] = np.packbits(mask, axis=None)
        arrays[f"shape_{name}"] = np.asarray(mask.shape, np.int64)
    if pelvis is not None:
        arrays["pelvis_probability_u8"] = probability_to_u8(pelvis)
    np.savez_compressed(temp, **arrays)
    os.replace(temp, final)


def load_artifacts(root: Path, relative: str | None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Masks and pelvis probability, or ({}, None) when the cache is missing."""
    if not relative:
        return {}, None
    try:
        with np.load(root / relative) as data:
            masks = {k[len("mask_"):]: data[k] for k in data.files if k.startswith("mask_")}  # before packing
            for key in data.files:
                if key.startswith("packed_"):
                    name = key[len("packed_"):]
                    masks[name] = _unpack(data[key], tuple(int(n) for n in data[f"shape_{name}"]))
            pelvis = data["pelvis_probability_u8"].astype(np.float32) / 255.0 if "pelvis_probability_u8" in data.files else None
    except (OSError, ValueError, KeyError):
        return {}, None
    return masks, pelvis


def _unpack(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A bool mask from its ``np.packbits`` form."""
    return np.unpackbits(packed, count=int(np.prod(shape))).reshape(shape).view(bool)
