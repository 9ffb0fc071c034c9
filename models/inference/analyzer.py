"""One radiograph in, one :class:`ImageAnalysis` out: checks, segments, landmarks, measurements.

Called by the node pipeline and ``hipnode analyze``. The radiograph is a
``node.imaging.Radiograph`` (duck-typed here: ``pixels``, ``pixel_spacing_mm``,
``calibration``, ``dataset``), so this module never imports pydicom.

Not-analysable inputs are caught twice: first from the header and the pixels
(body part, view, size, blank), then from the content (the segmentation must
find a plausible pelvis and at least one hip), so a chest film with a lying
header still fails. A not-analysable result has no landmarks at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from models.algorithms.exposed_field import (
    ExposedField,
    detect_exposed_field,
    network_point_in_field,
    null_out_of_field,
)
from models.algorithms.femoral_outline import snap_to_femoral_outline
from models.algorithms.hip_outline import snap_to_hip_masks
from models.algorithms.implant_outline import snap_to_implant_outline
from models.algorithms.measurements import compute_measurements
from models.algorithms.pelvic_extremes import snap_to_pelvis_outline
from models.algorithms.results import AlgorithmInfo, ImageAnalysis
from models.algorithms.vocabulary import LANDMARKS, MEASUREMENT_UNITS, POST_OP_ONLY_LANDMARKS, SIDES
from models.inference.landmarks import LandmarkModel, LandmarkOutput
from models.inference.refine import FineHipModel, FineLandmarkModel, FinePelvisModel, FineWindow
from models.inference.runtime import WEIGHTS_ROOT
from models.inference.segmentation import SegmentationModel, SegmentationOutput
from models.inference.view import VIEW_FOLDERS, ViewModel, view_problem

ACCEPTED_BODY_PARTS = {"", "PELVIS", "HIP", "HIPS", "LHIP", "RHIP", "HIPJOINT", "HIP JOINT", "PELVIS HIP"}
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "XTABLE", "LLO", "RLO"}
NON_AP_VIEW_WORDS = ("LATERAL", "AXIAL", "OBLIQUE", "FROG", "LAUENSTEIN", "CROSS-TABLE", "CROSS TABLE", "INLET", "OUTLET")
"""Words of a ViewCodeSequence meaning that name a view other than AP/PA. Many DX modalities leave
ViewPosition empty and code the view instead (CID 4010: "lateral", "right lateral", "medio-lateral",
"axial", "left oblique"...); the hip's lateral views (frog-leg, Lauenstein, cross-table) and the pelvic
inlet/outlet views cannot give the spec's AP measurements either."""
NON_AP_VIEW_TEXT = ("LAT", "LATERAL", "LATERALE", "SEITLICH", "LAUENSTEIN", "FROG", "FROGLEG", "FROG LEG", "AXIAL",
                    "CROSSTABLE", "CROSS TABLE", "XTABLE", "OBL", "OBLIQUE", "JUDET", "INLET", "OUTLET", "DUNN",
                    "LEQUESNE", "FALSE PROFILE", "FAUX PROFIL")
"""Whole words (or word pairs) of a series description, protocol name, CR processing menu or view name that name
a view other than AP. Many CR and DX systems leave ViewPosition and the View Code Sequence empty and say the view
only there ("HIP LAT", "Huefte axial", "PELVIS JUDET"). Matched as whole words: BILATERAL is not LAT."""
AP_VIEW_TEXT = ("AP", "PA", "A P", "P A", "ANTEROPOSTERIOR", "POSTEROANTERIOR", "ANTERO POSTERIOR", "FRONTAL")
"""Words that name an AP view: text naming both ("HIP AP LAT") decides nothing, the pixels then do."""
VIEW_TEXT_KEYWORDS = ("SeriesDescription", "ProtocolName", "AcquisitionDeviceProcessingDescription", "ViewName")
ACCEPTED_MODALITIES = {"", "CR", "DX", "RG", "DR", "OT"}
MIN_SIDE_PX = 256
MIN_FIELD_MM = 150.0
MIN_CONTRAST = 0.02
MIN_NEIGHBOUR_CORRELATION = 0.5
# Content plausibility on the working grid, as fractions of the image content area.
MIN_PELVIS_FRACTION = 0.04
MAX_PELVIS_FRACTION = 0.85
MIN_HIP_FRACTION = 0.004
"""Femoral-head area (fraction of the image) from which the content check sees a native hip.

Segmentation 0.3.0: native heads covered at least 0.9% of the image (training
anatomies, full size, 32 hips) and 1.15% (held-out Pelvic-Ref-002 at 0.15-0.7 mm
pixels, 121 hips).
"""
IMPLANT_MIN_FRACTION = 0.01
"""Implant area (fraction of the image) from which a side counts as operated.

Segmentation 0.3.0: native sides had no implant pixel at all, implanted sides
covered 2.9% of the image and more (training anatomies Pelvic-Ref-001/004, 48
hips; held-out Pelvic-Ref-002 at 0.15-0.7 mm pixels, 160 hips). Below it the
implant mask is cleared, and the content check does not count it as a hip: a
crude chest-like film gave 0.4-0.5% of spurious implant. (Weights 0.2.0 needed
0.5%: they put 2.5% on the smallest implant; 3.2% missed 2 of 21 held-out implants.)
Since session 14 a side's implant area is its largest connected piece
(:func:`_implant_pieces`): with 0.3.0 at least 2.0% on the 61 implanted
sides of the session-14 sets, 0.36% on the crude chest film.
"""

MAX_IMPLANT_ELONGATION = 12.0
"""Largest implant piece's area over its largest inscribed disc's area, above which it is no hip implant.

A hip implant in projection holds a round metal head (the prosthetic head,
with the cup's half-disc around it): a 32 mm head, a 50 mm cup and a 130 mm
stem give about 4, a 22 mm head on a 250 mm revision stem about 10, a cup
or a hemiarthroplasty head alone 2-3. Segmentation 0.3.0 on synthetic films:
1.7-4.9 over 175 implanted sides (session 20: 320 films, held-out and training
anatomy, 512 px to full size). A bone shaft taken for metal is a strip: the
humerus it took for an implant in a real chest radiograph (pydicom-data RG1) gave 13.7.
"""
MIN_ROOF_FRACTION = 0.00005
"""Acetabular-roof area next to a femoral head (fraction of the image) from which the head is a hip joint.

On a radiograph a femoral head sits under its acetabular roof, which stays
visible (sclerotic) even when arthritis has closed the joint space.
Segmentation 0.3.0: 0.042-0.18% over 392 native hips of 320 synthetic films
(session 20); none at all next to the "heads" it found in an ultrasound frame
and an abdominal MR slice given a radiograph's header (pydicom-data, pydicom).
The roof is the thinnest segment and the least sure one on images unlike its
training films (crude projections of the label maps: 0.002-0.065% beside
heads it found), so the limit asks only for a few pixels of roof (3 at 256 px)
beside the head: what it rules out is a head with no roof at all.
"""
ROOF_SEARCH_FRACTION = 0.025
"""How far from the head the roof is looked for, as a fraction of the working grid (6 px, ~10 mm, at 256 px)."""


class RadiographLike(Protocol):
    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None
    calibration: str | None
    dataset: Any


@dataclass(frozen=True)
class Header:
    """The few header values the checks use (plain strings, upper case)."""

    modality: str = ""
    body_part: str = ""
    view_position: str = ""
    view_code: str = ""  # ViewCodeSequence's first CodeMeaning (CID 4010 for DX)
    view_text: tuple[str, ...] = ()  # series description, protocol name, CR processing menu, view name

    @classmethod
    def from_dataset(cls, ds: Any) -> Header:
        def get(keyword: str) -> str:
            value = getattr(ds, keyword, "") if ds is not None else ""
            return str(value or "").strip().upper()

        try:
            view_code = str(ds.ViewCodeSequence[0].CodeMeaning or "").strip().upper()
        except (AttributeError, IndexError, TypeError):
            view_code = ""
        text = tuple(value for keyword in VIEW_TEXT_KEYWORDS if (value := get(keyword)))
        return cls(get("Modality"), get("BodyPartExamined"), get("ViewPosition"), view_code, text)


def _names_view(text: str, phrases: tuple[str, ...]) -> bool:
    """Whether ``text`` holds one of ``phrases`` as whole words (any non-letter separates words)."""
    words = " " + " ".join(re.findall(r"[A-Z]+", text.upper())) + " "
    return any(f" {phrase} " in words for phrase in phrases)


def non_ap_view_text(texts: tuple[str, ...]) -> str | None:
    """The first free text that names a non-AP view and no AP view, or None."""
    for text in texts:
        if _names_view(text, NON_AP_VIEW_TEXT) and not _names_view(text, AP_VIEW_TEXT):
            return text
    return None


def display_shutter(ds: Any, shape: tuple[int, int]) -> ExposedField | None:
    """The rectangle a DICOM Display Shutter (C.7.6.11) leaves shown, or None without a usable one.

    Modalities record their collimation this way; edges are 1-based columns and
    rows, the edge pixels shown. A shutter outside the image or inverted is ignored.
    """
    if ds is None or "RECTANGULAR" not in str(getattr(ds, "ShutterShape", "") or "").upper():
        return None
    try:
        left, right = int(ds.ShutterLeftVerticalEdge), int(ds.ShutterRightVerticalEdge)
        upper, lower = int(ds.ShutterUpperHorizontalEdge), int(ds.ShutterLowerHorizontalEdge)
    except (AttributeError, TypeError, ValueError):
        return None
    rows, cols = shape
    if not (1 <= left < right <= cols and 1 <= upper < lower <= rows):
        return None
    return ExposedField(upper - 1, lower, left - 1, right)


def header_problem(header: Header) -> str | None:
    """Why the header says this is not an AP pelvis/hip radiograph, or None."""
    if header.modality not in ACCEPTED_MODALITIES:
        return f"modality {header.modality} is not a projection radiograph (CR/DX expected)"
    if header.body_part not in ACCEPTED_BODY_PARTS:
        return f"body part examined is {header.body_part}, not a pelvis or hip"
    if header.view_position in LATERAL_VIEWS:
        return f"lateral view ({header.view_position}): an AP pelvis view is needed"
    if any(word in header.view_code for word in NON_AP_VIEW_WORDS):
        return f"{header.view_code.lower()} view (ViewCodeSequence): an AP pelvis view is needed"
    if (text := non_ap_view_text(header.view_text)) is not None:
        return f"the series or protocol names a non-AP view ({text!r}): an AP pelvis view is needed"
    return None


def pixel_problem(pixels: np.ndarray, spacing_mm: tuple[float, float] | None) -> str | None:
    """Why the pixels cannot hold an AP pelvis (tiny, small field, blank), or None."""
    if pixels.ndim != 2:
        return f"not a single grey-scale image (shape {pixels.shape})"
    rows, cols = pixels.shape
    if min(rows, cols) < MIN_SIDE_PX:
        return f"image too small ({cols}x{rows} pixels, at least {MIN_SIDE_PX} per side needed)"
    if spacing_mm is not None and max(rows * spacing_mm[0], cols * spacing_mm[1]) < MIN_FIELD_MM:
        return f"field of view too small for a pelvis ({cols * spacing_mm[1]:.0f} x {rows * spacing_mm[0]:.0f} mm)"
    step = max(1, int(np.sqrt(pixels.size / 250_000)))
    sample = pixels[::step, ::step]
    if not np.all(np.isfinite(sample)):
        return "image holds non-finite pixel values"
    lo, hi = np.percentile(sample, [1, 99])
    full = float(sample.max() - sample.min())
    if full <= 0 or (hi - lo) < MIN_CONTRAST * max(full, 1e-6) or float(np.std(sample)) < 1e-6 * max(abs(hi), 1.0):
        return "blank image (no contrast)"
    correlation = neighbour_correlation(pixels)
    if correlation < MIN_NEIGHBOUR_CORRELATION:
        return f"no image structure: neighbouring pixels are uncorrelated (r = {correlation:.2f}), noise not anatomy"
    return None


def neighbour_correlation(pixels: np.ndarray, size: int = 256) -> float:
    """Lag-1 autocorrelation (the smaller of rows and columns) at about ``size`` pixels.

    Anatomy is smooth at that scale (radiographs here: 0.92-0.98); uncorrelated
    noise is near 0, yet a segmentation network may still "find" a pelvis in it.
    """
    import cv2

    image = np.asarray(pixels, np.float32)
    scale = size / max(image.shape)
    if scale < 1:
        shape = (max(2, round(image.shape[1] * scale)), max(2, round(image.shape[0] * scale)))
        image = cv2.resize(image, shape, interpolation=cv2.INTER_AREA)
    centred = image - float(image.mean())
    variance = float((centred * centred).mean()) or 1.0
    along_rows = float((centred[:, 1:] * centred[:, :-1]).mean()) / variance
    along_cols = float((centred[1:] * centred[:-1]).mean()) / variance
    return min(along_rows, along_cols)


def content_problem(seg: SegmentationOutput) -> str | None:
    """Why the segmentation says there is no pelvis with a hip joint in the image, or None."""
    rows, cols = seg.transform.content_shape
    area = float(rows * cols)
    pelvis = float((seg.work_map("pelvis")[:rows, :cols] > 0.5).sum()) / area
    if pelvis < MIN_PELVIS_FRACTION:
        return f"no pelvis found in the image content (pelvis {100 * pelvis:.1f}% of the image)"
    if pelvis > MAX_PELVIS_FRACTION:
        return f"implausible pelvis segmentation ({100 * pelvis:.0f}% of the image)"
    if any(hip_joints(seg).values()):
        return None
    heads, implants = _side_fractions(seg, "femoral_head"), _implant_pieces(seg)
    why = [f"a femoral head without an acetabular roof on the {side}" for side in SIDES
           if heads[side] >= MIN_HIP_FRACTION]
    why += [f"metal-like piece shaped like a bone shaft, not an implant, on the {side}" for side in SIDES
            if implants[side][0] >= IMPLANT_MIN_FRACTION]
    detail = f" ({'; '.join(why)})" if why else ""
    return f"no femoral head or hip implant found in the image content{detail}"


def hip_joints(seg: SegmentationOutput) -> dict[str, bool]:
    """Per side: a hip joint, i.e. a native femoral head under its acetabular roof, or a hip implant.

    Area alone let a segmentation network trained on synthetic films "find" a
    hip in other images: a humerus taken for an implant in a chest film, a
    head-sized blob with no roof in an ultrasound frame (session 20).
    """
    operated = operated_sides(seg)
    heads = _side_fractions(seg, "femoral_head")
    return {side: operated[side] or (heads[side] >= MIN_HIP_FRACTION
                                     and _roof_fraction_by_head(seg, side) >= MIN_ROOF_FRACTION)
            for side in SIDES}


def operated_sides(seg: SegmentationOutput) -> dict[str, bool]:
    """Per side: does the segmentation hold a hip implant (one piece, big enough, round-headed)?"""
    return {side: fraction >= IMPLANT_MIN_FRACTION and elongation <= MAX_IMPLANT_ELONGATION
            for side, (fraction, elongation) in _implant_pieces(seg).items()}


def _roof_fraction_by_head(seg: SegmentationOutput, side: str) -> float:
    """Acetabular-roof area within :data:`ROOF_SEARCH_FRACTION` of the side's femoral head, of the image content."""
    rows, cols = seg.transform.content_shape
    head = (seg.work_map(f"femoral_head_{side}")[:rows, :cols] > 0.5).astype(np.uint8)
    roof = seg.work_map(f"acetabular_roof_{side}")[:rows, :cols] > 0.5
    reach = max(1, round(ROOF_SEARCH_FRACTION * seg.transform.size))
    near = cv2.dilate(head, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))) > 0
    return float(np.count_nonzero(roof & near)) / float(rows * cols)


def _implant_pieces(seg: SegmentationOutput) -> dict[str, tuple[float, float]]:
    """Per side: (fraction of the image content, elongation) of the side's largest implant piece.

    A hip implant is one solid piece in projection (the head sits in the cup
    and carries the stem), so only its largest 8-connected component counts.
    Bright thin structures a model mistakes for metal come in many small
    pieces: a 384 px segmentation candidate (session 14) marked 1.7% of the
    test suite's crude chest film "implant" in 11 rib segments, largest 0.28%,
    while the smallest real implant it saw on 61 held-out and training-anatomy
    sides was one piece of 1.75%. Elongation: :data:`MAX_IMPLANT_ELONGATION`.
    """
    rows, cols = seg.transform.content_shape
    pieces: dict[str, tuple[float, float]] = {}
    for side in SIDES:
        piece = _largest_piece(seg.work_map(f"implant_{side}")[:rows, :cols] > 0.5)
        area = float(np.count_nonzero(piece))
        if area == 0:
            pieces[side] = (0.0, 0.0)
            continue
        padded = np.pad(piece.astype(np.uint8), 1)  # zero border: the disc must fit inside the image
        inscribed = float(cv2.distanceTransform(padded, cv2.DIST_L2, 5).max())
        pieces[side] = (area / float(rows * cols), area / (np.pi * inscribed * inscribed))
    return pieces


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``mask`` (all False when empty)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return np.zeros(mask.shape, dtype=bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _side_fractions(seg: SegmentationOutput, segment: str) -> dict[str, float]:
    """Per side: the fraction of the image content the side's ``segment`` covers."""
    rows, cols = seg.transform.content_shape
    area = float(rows * cols)
    return {side: float(np.count_nonzero(seg.work_map(f"{segment}_{side}")[:rows, :cols] > 0.5)) / area
            for side in SIDES}


def structures_present(seg: SegmentationOutput) -> dict[str, dict[str, bool]]:
    """Per side, what the segmentation says is in the image: ``hip``, ``femur``, ``implant``.

    A hip is there when its femoral head or an implant is; a femur when its
    femur segment is (or an implant, whose stem stands in for the shaft).
    """
    operated = operated_sides(seg)
    heads, femurs = _side_fractions(seg, "femoral_head"), _side_fractions(seg, "femur")
    return {
        side: {
            "implant": operated[side],
            "hip": operated[side] or heads[side] >= MIN_HIP_FRACTION,
            "femur": operated[side] or femurs[side] >= MIN_HIP_FRACTION,
        }
        for side in SIDES
    }


_STRUCTURE_OF = {
    "femoral_head_centre": "hip",
    "greater_trochanter": "femur",
    "lesser_trochanter": "femur",
    "femoral_shaft_proximal": "femur",
    "femoral_shaft_distal": "femur",
    **{name: "implant" for name in POST_OP_ONLY_LANDMARKS},
}
"""Per-side landmarks and the structure whose presence makes them present (the pelvis
points need only the pelvis, which :func:`content_problem` already required)."""


def decide_landmarks(lm: LandmarkOutput, seg: SegmentationOutput, field: ExposedField | None = None
                     ) -> dict[str, tuple[float, float] | None]:
    """Present landmarks keep their regressed position; absent ones are null.

    Presence is decided from the segmentation, as the spec asks: a femur point
    needs that femur, the head centre that hip (native head or implant), a cup
    rim or stem point an implant on that side. The network returns exactly one
    point per landmark; a point outside the exposed ``field`` (default: the
    image) is null, out of field, except points the masks place (the distal
    shaft point is the lowest visible level when the field ends sooner; an
    extreme lies where its mask says): those are clamped into the field.
    """
    present = structures_present(seg)
    field = field or ExposedField.whole(seg.transform.source_shape)
    out: dict[str, tuple[float, float] | None] = {}
    for name in LANDMARKS:
        point = network_point_in_field(name, lm.source_xy[name], field)
        base, _, side = name.rpartition("_")
        if side in SIDES and base in _STRUCTURE_OF and not present[side][_STRUCTURE_OF[base]]:
            point = None
        out[name] = point
    return out


def measure(
    landmarks: Mapping[str, tuple[float, float] | None],
    spacing_mm: tuple[float, float] | None,
    masks: Mapping[str, np.ndarray],
) -> dict[str, float | None]:
    """Spec measurements via the shared formulas; lengths are None without a spacing."""
    if spacing_mm is not None:
        return compute_measurements(landmarks, spacing_mm, masks)
    # No calibration: angles are still defined (square pixels assumed), lengths are not.
    values = compute_measurements(landmarks, (1.0, 1.0), None)
    return {k: (v if MEASUREMENT_UNITS[k] == "deg" else None) for k, v in values.items()}


PELVIC_OUTLINE_RULE = AlgorithmInfo("hipnode-pelvic-outline-extremes", "1.0")
"""Listed with the models: it changes landmarks, so result UIDs must change with it."""
FEMORAL_OUTLINE_RULE = AlgorithmInfo("hipnode-femoral-outline-landmarks", "1.3")
"""Greater trochanters and shaft points from the femur masks; listed for the same reason. 1.3: sections cut at
a shutter's edge too (session 14), shaft levels 20 and 80 mm below the lesser trochanter (session 15)."""
HIP_MASK_RULE = AlgorithmInfo("hipnode-hip-mask-landmarks", "1.4")
"""Native head centres (rim circle), lateral acetabular edges (fine hip masks), stem tips, replaced hips'
head centres and cup rim points (cup dome; implant mask); listed likewise. 1.3: circles instead of the head
mask's centroid. 1.4: cup rims from the dome's diameter instead of the landmark network, and none where the
implant is a head with no cup around it (session 22)."""
EXPOSED_FIELD_RULE = AlgorithmInfo("hipnode-exposed-field", "1.0")
"""Collimator shutters found in the pixels; landmarks and masks under them are out of field (always on)."""


class HipAnalyzer:
    """Coarse segmentation + landmark models and the optional fine stage, sessions reused across calls."""

    def __init__(self, segmentation: SegmentationModel | None = None, landmarks: LandmarkModel | None = None,
                 fine_landmarks: FineLandmarkModel | None = None, fine_hips: FineHipModel | None = None,
                 fine_pelvis: FinePelvisModel | None = None, views: tuple[ViewModel, ...] = ()) -> None:
        self.segmentation = segmentation or SegmentationModel()
        self.landmarks = landmarks or LandmarkModel()
        self.fine_landmarks = fine_landmarks
        self.fine_hips = fine_hips
        self.fine_pelvis = fine_pelvis
        self.views = views  # refuse lateral and frog-leg films whose header says AP (or nothing), all agreeing
        self.fine_passes = 1
        # Tuberosities moved to the pelvis outline's caudal extreme (models.algorithms.pelvic_extremes).
        self.snap_pelvic_extremes = True
        # Greater trochanters and shaft points moved onto the femur masks (models.algorithms.femoral_outline).
        self.snap_femoral_outline = True
        # Native head centres and lateral edges from the head and roof masks, stem tips from the implant mask
        # (models.algorithms.hip_outline, implant_outline).
        self.snap_hip_masks = True

    @classmethod
    def from_weights(cls, root: Path = WEIGHTS_ROOT) -> HipAnalyzer:
        """The models under ``root`` (``segment/``, ``landmarks/``; the fine stage when its folders exist)."""
        root = Path(root)

        def optional(model: type, folder: str) -> Any:
            return model(root / folder) if (root / folder / "manifest.json").is_file() else None

        segmentation = SegmentationModel(root / "segment")
        views = tuple(view for folder in VIEW_FOLDERS if (view := optional(ViewModel, folder)) is not None)
        for view in views:  # a maps model reads that segmentation's maps: another's would be another input
            view.check_segmentation(segmentation.manifest.name, segmentation.manifest.version)
        return cls(segmentation, LandmarkModel(root / "landmarks"),
                   optional(FineLandmarkModel, "landmarks_fine"), optional(FineHipModel, "hip_fine"),
                   optional(FinePelvisModel, "pelvis_fine"), views)

    @property
    def models(self) -> tuple[Any, ...]:
        return tuple(m for m in (self.segmentation, self.landmarks, self.fine_landmarks, self.fine_hips,
                                 self.fine_pelvis, *self.views) if m is not None)

    @property
    def algorithms(self) -> tuple[AlgorithmInfo, ...]:
        models = tuple(AlgorithmInfo(m.manifest.name, m.manifest.version) for m in self.models)
        switched = ((self.snap_pelvic_extremes, PELVIC_OUTLINE_RULE), (self.snap_hip_masks, HIP_MASK_RULE),
                    (self.snap_femoral_outline, FEMORAL_OUTLINE_RULE))
        return models + tuple(rule for on, rule in switched if on) + (EXPOSED_FIELD_RULE,)

    def refine_landmarks(self, pixels: np.ndarray, spacing: tuple[float, float],
                         landmarks: dict[str, tuple[float, float] | None], field: ExposedField | None = None
                         ) -> dict[str, tuple[float, float] | None]:
        """Present landmarks re-read by the fine model (absent ones stay null; out of ``field`` becomes null)."""
        if self.fine_landmarks is None:
            return landmarks
        level = self.fine_landmarks.level(pixels, spacing)
        refined = self.fine_landmarks.refine(level, {n: xy for n, xy in landmarks.items() if xy is not None},
                                             passes=self.fine_passes)
        field = field or ExposedField.whole(pixels.shape)
        out = dict(landmarks)
        for name, xy in refined.items():
            out[name] = network_point_in_field(name, xy, field)
        return out

    def refine_hip_masks(self, pixels: np.ndarray, spacing: tuple[float, float],
                         landmarks: dict[str, tuple[float, float] | None], masks: dict[str, np.ndarray]) -> None:
        """Replace head, roof, joint space and implant masks around each present head centre by the fine model's."""
        if self.fine_hips is None:
            return
        for hip in self._fine_windows(self.fine_hips, pixels, spacing, landmarks):
            x0, y0, x1, y1 = hip.window
            for segment, probability in hip.probabilities.items():
                masks[f"{segment}_{hip.side}"][y0:y1, x0:x1] = probability >= self.fine_hips.threshold(segment)

    def refine_pelvis_mask(self, pixels: np.ndarray, spacing: tuple[float, float],
                           landmarks: dict[str, tuple[float, float] | None], masks: dict[str, np.ndarray]) -> None:
        """Replace the pelvis mask around each present tuberosity by the fine model's (the tuberosity rule reads it)."""
        if self.fine_pelvis is None:
            return
        for part in self._fine_windows(self.fine_pelvis, pixels, spacing, landmarks):
            x0, y0, x1, y1 = part.window
            masks["pelvis"][y0:y1, x0:x1] = part.probabilities["pelvis"] >= self.fine_pelvis.threshold("pelvis")

    @staticmethod
    def _fine_windows(model: FineHipModel | FinePelvisModel, pixels: np.ndarray, spacing: tuple[float, float],
                      landmarks: dict[str, tuple[float, float] | None]) -> list[FineWindow]:
        centres = {side: xy for side in SIDES if (xy := landmarks.get(f"{model.centre}_{side}")) is not None}
        return model.segment(model.level(pixels, spacing), pixels.shape, centres) if centres else []

    def apply_outline_rules(self, result: ImageAnalysis, spacing: tuple[float, float],
                            field: ExposedField | None = None) -> None:
        """Move the landmarks the masks define better than the networks (each rule switchable for ablation).

        Order matters: the tuberosities set the pelvic frame the others use, and
        the femoral rules measure from the head centres the hip masks give.
        """
        if self.snap_pelvic_extremes:
            result.landmarks = snap_to_pelvis_outline(result.landmarks, result.masks["pelvis"], spacing)
        if self.snap_hip_masks:
            result.landmarks = snap_to_hip_masks(result.landmarks, result.masks, spacing)
            result.landmarks = snap_to_implant_outline(result.landmarks, result.masks, spacing)
        if self.snap_femoral_outline:
            result.landmarks = snap_to_femoral_outline(result.landmarks, result.masks, spacing, field)

    def __call__(self, radiograph: RadiographLike) -> ImageAnalysis:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal t0
            now = time.perf_counter()
            timings[stage] = round(1000 * (now - t0), 2)
            t0 = now

        spacing = radiograph.pixel_spacing_mm
        result = ImageAnalysis(calibration=radiograph.calibration, pixel_spacing_mm=spacing)
        reason = header_problem(Header.from_dataset(radiograph.dataset)) or pixel_problem(radiograph.pixels, spacing)
        lap("checks")
        if reason is not None:
            result.not_analysable = reason
            result.timings_ms = timings
            return result
        field = detect_exposed_field(radiograph.pixels)
        if (shutter := display_shutter(radiograph.dataset, radiograph.pixels.shape)) is not None:
            field = field.intersect(shutter)  # the modality's own record of its collimation
        result.exposed_field_px = tuple(field)
        lap("exposed_field")
        seg_model, lm_model = self.segmentation, self.landmarks
        work, tf = seg_model.preprocess(radiograph.pixels, spacing)
        if lm_model.manifest.work_size != seg_model.manifest.work_size:
            lm_work, lm_tf = lm_model.preprocess(radiograph.pixels, spacing)
        else:
            lm_work, lm_tf = work, tf
        lap("preprocess")
        seg = seg_model.postprocess(seg_model.predict(work), tf)
        lap("segment")
        reason = content_problem(seg)
        if reason is None and self.views:
            reason = view_problem([view(radiograph.pixels, spacing, seg) for view in self.views])
            lap("view")
        if reason is not None:
            result.not_analysable = reason
            result.timings_ms = timings
            result.algorithms = self.algorithms
            return result
        lm = lm_model.postprocess(*lm_model.predict(lm_work), lm_tf)
        lap("landmarks")
        result.masks = seg.source_masks()
        # Kept for alignment (its DLT weights): the pair job then need not segment again.
        result.probabilities["pelvis"] = seg.source_probability("pelvis")
        result.landmarks = decide_landmarks(lm, seg, field)
        lap("postprocess")
        if spacing is not None:  # crops are cut in mm: without a spacing the coarse result stands
            result.landmarks = self.refine_landmarks(radiograph.pixels, spacing, result.landmarks, field)
            lap("fine_landmarks")
            self.refine_hip_masks(radiograph.pixels, spacing, result.landmarks, result.masks)
            lap("fine_hips")
            self.refine_pelvis_mask(radiograph.pixels, spacing, result.landmarks, result.masks)
            lap("fine_pelvis")
        for side, operated in operated_sides(seg).items():
            if not operated:  # spurious implant pixels on a native hip
                result.masks[f"implant_{side}"] = np.zeros_like(result.masks[f"implant_{side}"])
        if spacing is not None:  # outline rules measure in mm (models.algorithms.*_outline, pelvic_extremes)
            self.apply_outline_rules(result, spacing, field)  # on the network's masks, shutters included
            lap("outline_rules")
        result.landmarks = null_out_of_field(result.landmarks, field, spacing)
        if not field.is_whole(radiograph.pixels.shape):  # segments are what is visible: none under a shutter
            result.masks = {name: field.clip(mask) for name, mask in result.masks.items()}
        result.measurements = measure(result.landmarks, spacing, result.masks)
        lap("measure")
        result.algorithms = self.algorithms
        timings["total"] = round(sum(timings.values()), 2)
        result.timings_ms = timings
        return result


_default: HipAnalyzer | None = None


def default_analyzer() -> HipAnalyzer:
    """The analyzer with the committed reference weights, one per process."""
    global _default
    if _default is None:
        _default = HipAnalyzer.from_weights()
    return _default


def analyze_radiograph(radiograph: RadiographLike) -> ImageAnalysis:
    """Analyse one radiograph with the committed reference weights (sessions cached per process)."""
    return default_analyzer()(radiograph)
