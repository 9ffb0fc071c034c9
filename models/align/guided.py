"""Matching again after the pre-op film has been warped onto the post-op film by a prior homography.

A pair is hard to match when pose, collimation and exposure all changed
between the exams: the matcher (pretrained on photographs) then finds too
few correct correspondences, and ``ours`` refuses the pair. The pelvis
outline overlay (:func:`models.align.refine.pelvis_map_alignment`) already
brings the two pelvises within a few percent of the diagonal on such pairs.
With PRE warped by it, the two films differ by a small residual motion, which
is what a matcher handles best; the new matches are mapped back to PRE's grid
and fitted by the same checked fit as the first ones. The prior only chooses
where the matcher looks: the matches are the image's evidence, and they must
still pass every check (session 26, docs/align.md).

Pure image geometry: no I/O, no model.
"""

from __future__ import annotations

import inspect

import cv2
import numpy as np

from models.align.homography import apply_homography
from models.align.matching import Matcher, Matches

BORDER_MARGIN_FRACTION = 0.01
"""Matches within this fraction of the post-op diagonal of the warped film's border are dropped: the
border is an edge the warp made, not anatomy (about 6 pixels of the matcher's 512-pixel grid)."""


def warp_onto(image: np.ndarray, homography: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``image`` resampled onto a grid of ``shape`` through ``homography``, and the mask of pixels it covers.

    Uncovered pixels get the image's median, so the warp adds no black frame
    whose corners a matcher could pair with the other film's corners.
    """
    rows, cols = int(shape[0]), int(shape[1])
    source = np.asarray(image, dtype=np.float32)
    fill = float(np.median(source[np.isfinite(source)])) if np.isfinite(source).any() else 0.0
    warped = cv2.warpPerspective(np.nan_to_num(source, nan=fill), homography, (cols, rows), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    covered = cv2.warpPerspective(np.ones(source.shape, np.uint8), homography, (cols, rows), flags=cv2.INTER_NEAREST)
    return warped, covered.astype(bool)


def match_after_warp(
    matcher: Matcher, pre: np.ndarray, post: np.ndarray, homography: np.ndarray, first: Matches | None = None,
    margin_fraction: float = BORDER_MARGIN_FRACTION,
) -> Matches:
    """PRE warped onto POST by ``homography``, matched to POST, the matches mapped back to PRE's grid.

    POST's features from the ``first`` matching are reused when the matcher
    can take them (``post_features``), so only the warped film is detected.
    """
    warped, covered = warp_onto(pre, homography, np.shape(post))
    post_features = first.features[1] if first is not None and first.features is not None else None
    if post_features is not None and "post_features" in inspect.signature(matcher.match).parameters:
        found = matcher.match(warped, post, post_features=post_features)  # type: ignore[call-arg]
    else:
        found = matcher.match(warped, post)
    margin = max(1, round(margin_fraction * float(np.hypot(*np.shape(post)))))
    inner = cv2.erode(covered.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
    rows, cols = inner.shape
    xy = np.rint(found.points_pre).astype(int).reshape(-1, 2)
    keep = np.zeros(len(xy), dtype=bool)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < cols) & (xy[:, 1] >= 0) & (xy[:, 1] < rows)
    keep[inside] = inner[xy[inside, 1], xy[inside, 0]]
    back = apply_homography(np.linalg.inv(homography), found.points_pre[keep]).reshape(-1, 2)
    return Matches(back, found.points_post[keep].reshape(-1, 2), found.scores[keep], dict(found.timings_ms))
