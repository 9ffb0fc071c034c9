"""What one analysis produces, independent of DICOM and of the model that made it.

The generator's ground truth, the models' predictions and the result encoders
all use these types, so a prediction can be compared with the truth and encoded
without translation. Coordinates follow the spec: pixel (x, y) = (column, row).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Point = tuple[float, float]


@dataclass(frozen=True)
class AlgorithmInfo:
    """Name and version of the model or algorithm that produced a result."""

    name: str
    version: str
    manufacturer: str = "HipNode"


@dataclass
class ImageAnalysis:
    """Segments, landmarks and measurements of one radiograph.

    ``not_analysable`` holds a reason when the image could not be analysed; the
    other fields are then empty. ``masks`` are boolean arrays on the source
    pixel grid keyed by spec segment name; ``probabilities`` (optional) are
    float32 maps in [0, 1] on the same grid.
    """

    landmarks: dict[str, Point | None] = field(default_factory=dict)
    measurements: dict[str, float | None] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    calibration: str | None = None  # one of vocabulary.CALIBRATIONS
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, col)
    not_analysable: str | None = None
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    algorithms: tuple[AlgorithmInfo, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    # [row0, row1, col0, col1), half-open: the part of the film the collimator exposed
    exposed_field_px: tuple[int, int, int, int] | None = None

    def to_json(self) -> dict[str, object]:
        """The spec's JSON shape (``landmarks``, ``measurements``, ``calibration``...)."""
        out: dict[str, object] = {
            "landmarks": {k: (None if v is None else [float(v[0]), float(v[1])]) for k, v in self.landmarks.items()},
            "measurements": {k: (None if v is None else float(v)) for k, v in self.measurements.items()},
            "calibration": self.calibration,
            "pixel_spacing_mm": None if self.pixel_spacing_mm is None else list(self.pixel_spacing_mm),
            "timings_ms": dict(self.timings_ms),
        }
        if self.not_analysable is not None:
            out["not_analysable"] = self.not_analysable
        if self.algorithms:
            out["algorithms"] = [{"name": a.name, "version": a.version} for a in self.algorithms]
        if self.exposed_field_px is not None:
            out["exposed_field_px"] = [int(v) for v in self.exposed_field_px]
        return out

    @classmethod
    def from_json(cls, data: dict[str, object], masks: dict[str, np.ndarray] | None = None) -> ImageAnalysis:
        """Inverse of :meth:`to_json` (masks and probabilities travel separately)."""
        landmarks = {k: (None if v is None else (float(v[0]), float(v[1])))  # type: ignore[index]
                     for k, v in dict(data.get("landmarks") or {}).items()}
        measurements = {k: (None if v is None else float(v))  # type: ignore[arg-type]
                        for k, v in dict(data.get("measurements") or {}).items()}
        spacing = data.get("pixel_spacing_mm")
        algorithms = tuple(AlgorithmInfo(str(a["name"]), str(a["version"]))  # type: ignore[index]
                           for a in list(data.get("algorithms") or []))  # type: ignore[call-overload]
        return cls(
            landmarks=landmarks,
            measurements=measurements,
            masks=dict(masks or {}),
            calibration=None if data.get("calibration") is None else str(data["calibration"]),
            pixel_spacing_mm=None if spacing is None else (float(spacing[0]), float(spacing[1])),  # type: ignore[index]
            not_analysable=None if data.get("not_analysable") is None else str(data["not_analysable"]),
            algorithms=algorithms,
            timings_ms=dict(data.get("timings_ms") or {}),  # type: ignore[arg-type]
            exposed_field_px=None if (box := data.get("exposed_field_px")) is None
            else tuple(int(v) for v in box),  # type: ignore[union-attr, arg-type]
        )


@dataclass
class PairAlignment:
    """A pre-op to post-op homography and what was measured on the way.

    ``homography`` maps PRE pixel coordinates to POST pixel coordinates.
    ``failure`` holds a reason when no trustworthy alignment exists; then
    ``homography`` is None and no colour difference map may be produced.
    """

    homography: np.ndarray | None
    method: str
    matcher: str
    matches: int = 0
    inliers: int = 0
    failure: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    algorithms: tuple[AlgorithmInfo, ...] = ()
    retried_sparser: bool = False  # the first matching was refused; these matches use half the keypoints
    matched_on_prior: bool = False  # refused twice; these matches are of PRE warped by the pelvis outline overlay

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "homography": None if self.homography is None else np.asarray(self.homography, float).tolist(),
            "method": self.method,
            "matcher": self.matcher,
            "matches": int(self.matches),
            "inliers": int(self.inliers),
            "timings_ms": dict(self.timings_ms),
        }
        if self.failure is not None:
            out["failure"] = self.failure
        if self.retried_sparser:
            out["retried_with_fewer_keypoints"] = True
        if self.matched_on_prior:
            out["matched_on_pelvis_outline_overlay"] = True
        return out
