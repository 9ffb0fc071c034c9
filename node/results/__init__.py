"""DICOM result encoders: SEG, TID 1500 SR and Secondary Captures (highdicom).

The pipeline and ``hipnode process`` call the two functions below; both are
pure (datasets in, datasets out, no I/O) and deterministic in their UIDs, so
a re-run produces the same SOP Instance UIDs (see :mod:`node.results.uids`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydicom.dataset import Dataset

from models.algorithms.results import ImageAnalysis, PairAlignment
from node.results.common import DEFAULT_IDENTITY, EncodingError, NodeIdentity
from node.results.sc import encode_cdm_sc, encode_overlay_sc
from node.results.seg import encode_seg
from node.results.sr import encode_image_sr, encode_pair_sr

__all__ = [
    "EncodingError",
    "NodeIdentity",
    "encode_image_results",
    "encode_pair_results",
    "encode_seg",
    "encode_image_sr",
    "encode_pair_sr",
    "encode_cdm_sc",
    "encode_overlay_sc",
    "result_kind",
]

_KIND_BY_SERIES_NUMBER = {9101: "seg", 9102: "sr", 9103: "sr_pair", 9104: "cdm_sc", 9105: "overlay_sc"}


def result_kind(ds: Dataset) -> str | None:
    """The catalogue ``result.kind`` of an object these encoders wrote, else None."""
    try:
        return _KIND_BY_SERIES_NUMBER.get(int(ds.get("SeriesNumber")))
    except (TypeError, ValueError):
        return None


def encode_image_results(
    source_ds: Dataset,
    analysis: ImageAnalysis,
    *,
    overlay: bool = False,
    pixels: np.ndarray | None = None,
    identity: NodeIdentity = DEFAULT_IDENTITY,
) -> list[Dataset]:
    """[SEG, SR] (and an overlay SC when asked) for one analysed image.

    ``pixels``: the decoded grey image (bright = dense) for the overlay, if
    the caller has it; otherwise the overlay decodes ``source_ds``.

    Raises :class:`EncodingError` for an image marked not analysable or inputs
    that cannot make valid objects.
    """
    if analysis.not_analysable is not None:
        raise EncodingError(f"image is not analysable: {analysis.not_analysable}")
    seg = encode_seg(source_ds, analysis, identity=identity)
    sr = encode_image_sr(source_ds, analysis, seg, identity=identity)
    out: list[Dataset] = [seg, sr]
    if overlay:
        out.append(encode_overlay_sc([(source_ds, analysis)], pixels=[pixels], identity=identity))
    return out


def encode_pair_results(
    pre_ds: Dataset,
    post_ds: Dataset,
    pre_analysis: ImageAnalysis,
    post_analysis: ImageAnalysis,
    alignment: PairAlignment,
    cdm_rgb: np.ndarray | None,
    deltas: Mapping[str, float | None],
    *,
    pre_pixels: np.ndarray | None = None,
    post_pixels: np.ndarray | None = None,
    identity: NodeIdentity = DEFAULT_IDENTITY,
) -> list[Dataset]:
    """[pair SR, colour difference map SC, overlay SC], all in the post-op study.

    ``pre_pixels``/``post_pixels``: decoded grey images (bright = dense) for
    the overlay when the caller has them (saves decoding twice).

    Without an alignment (``alignment.homography is None``) or a map
    (``cdm_rgb is None``) there is no difference map SC; the SR and overlay
    are still written, the SR without deltas it cannot have.
    """
    for label, analysis in (("pre-op", pre_analysis), ("post-op", post_analysis)):
        if analysis.not_analysable is not None:
            raise EncodingError(f"{label} image is not analysable: {analysis.not_analysable}")
    out: list[Dataset] = [
        encode_pair_sr(pre_ds, post_ds, pre_analysis, post_analysis, alignment, deltas, identity=identity)
    ]
    if alignment.homography is not None and cdm_rgb is not None:
        out.append(encode_cdm_sc(pre_ds, post_ds, cdm_rgb, alignment, identity=identity))
    out.append(
        encode_overlay_sc(
            [(pre_ds, pre_analysis), (post_ds, post_analysis)],
            deltas,
            alignment.algorithms,
            pixels=[pre_pixels, post_pixels],
            identity=identity,
        )
    )
    return out
