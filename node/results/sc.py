"""Secondary Captures: the colour difference map and the burned-in overlay.

Both are single-frame 8-bit RGB SC images (DERIVED\\SECONDARY, ConversionType
WSD) in the post-op exam's study, with every source image in
SourceImageSequence. They are for display; the numbers live in the SR.
The map lies on the post-op image's grid, so it carries that image's pixel
spacing where the spacing is in the patient's plane (calibrated, or corrected
for magnification: PixelSpacingCalibrationType GEOMETRY), and a viewer
measures on it in mm; at the detector plane it carries none (a viewer's
millimetres would then be magnified ones). The overlay is rescaled and
carries none.
General Series Laterality only knows R and L, so it is set only when the
sources are of one side. An AP pelvis (ImageLaterality B) carries
BodyPartExamined PELVIS (unpaired) and no Laterality, which dciodvfy accepts;
any other part without a single side gets an empty Laterality (Type 2C:
unknown), a dciodvfy warning rather than an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from models.algorithms.results import AlgorithmInfo, ImageAnalysis, PairAlignment
from models.algorithms.vocabulary import DELTA_MEASUREMENTS, MEASUREMENTS
from node.imaging import UnreadableImage, header_pixel_spacing, radiograph_from_dataset
from node.results import common, overlay
from node.results.uids import instance_uid, series_uid

SOURCE_FOR_PROCESSING = hd.sr.CodedConcept("121322", "DCM", "Source image for image processing operation")


def _patient_orientation(ds: Dataset) -> tuple[str, str] | None:
    value = ds.get("PatientOrientation")
    if value is None or len(value) != 2:
        return None
    return str(value[0]), str(value[1])


def _laterality(sources: Sequence[Dataset]) -> str | None:
    values = {str(ds.get("ImageLaterality") or ds.get("Laterality") or "") for ds in sources}
    return values.pop() if len(values) == 1 and values <= {"R", "L"} else None


def _sc(
    kind: str,
    pixels: np.ndarray,
    sources: Sequence[Dataset],
    algorithms: Sequence[AlgorithmInfo],
    description: str,
    identity: common.NodeIdentity,
    burned_in: bool,
) -> hd.sc.SCImage:
    reference = common.header_copy(sources[-1])  # the post-op exam: results live in its study
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise common.EncodingError(
            f"a colour picture must be uint8 (rows, columns, 3), got {pixels.dtype} {pixels.shape}"
        )
    orientation = _patient_orientation(reference)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference,
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_uid(kind, reference.StudyInstanceUID, algorithms),
        sop_instance_uid=instance_uid(kind, [ds.SOPInstanceUID for ds in sources], algorithms),
        instance_number=common.instance_number(reference),
        manufacturer=identity.manufacturer,
        patient_orientation=orientation,
        laterality=_laterality(sources),
        contributing_equipment=common.contributing_equipment(algorithms),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        manufacturer_model_name=identity.model_name,
        software_versions=identity.software_version,
        device_serial_number=identity.device_serial_number,
        **common.common_kwargs(kind, reference, identity),
    )
    items = []
    for ds in sources:
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        item.PurposeOfReferenceCodeSequence = DicomSequence([SOURCE_FOR_PROCESSING])
        items.append(item)
    if "BodyPartExamined" in reference:
        sc.BodyPartExamined = reference.BodyPartExamined
    if "Laterality" not in sc and str(reference.get("BodyPartExamined", "")).upper() != "PELVIS":
        sc.Laterality = ""  # Type 2C for a paired or unknown part; empty = unknown
    sc.SourceImageSequence = DicomSequence(items)
    sc.ConversionType = "WSD"  # made on a workstation, not digitised
    sc.DerivationDescription = description
    sc.BurnedInAnnotation = "YES" if burned_in else "NO"
    sc.ImageComments = "AI-generated, for display only; values are in the HipNode SR"
    common.carry_patient_study(sc, reference)
    return sc


def _carry_patient_plane_spacing(sc: hd.sc.SCImage, grid_of: Dataset) -> None:
    """Give ``sc`` (on ``grid_of``'s pixel grid) that image's spacing where it is in the patient's plane."""
    spacing, calibration = header_pixel_spacing(grid_of)
    if spacing is None or calibration == "detector_plane":
        return
    sc.PixelSpacing = [f"{v:.6g}" for v in spacing]
    if calibration == "magnification_corrected":
        sc.PixelSpacingCalibrationType = "GEOMETRY"
        sc.PixelSpacingCalibrationDescription = (
            "Imager Pixel Spacing / Est. Radiographic Magnification Factor")  # LO: 64 chars
    else:
        for keyword in ("PixelSpacingCalibrationType", "PixelSpacingCalibrationDescription"):
            if grid_of.get(keyword):
                setattr(sc, keyword, grid_of.get(keyword))


def _unique(algorithms: Sequence[AlgorithmInfo]) -> tuple[AlgorithmInfo, ...]:
    return tuple(dict.fromkeys(algorithms))


def encode_cdm_sc(
    pre: Dataset,
    post: Dataset,
    cdm_rgb: np.ndarray,
    alignment: PairAlignment,
    algorithms: Sequence[AlgorithmInfo] = (),
    *,
    identity: common.NodeIdentity = common.DEFAULT_IDENTITY,
) -> hd.sc.SCImage:
    """The colour difference map (uint8 RGB) as an SC in the post-op exam's study."""
    common.check_source(pre)
    common.check_source(post)
    if alignment.homography is None:
        raise common.EncodingError(f"no alignment, no difference map: {alignment.failure or 'unknown reason'}")
    used = _unique([*alignment.algorithms, *algorithms])
    if not used:
        raise common.EncodingError("the alignment names no algorithm: results must identify the model")
    picture = np.asarray(cdm_rgb)
    sc = _sc(
        "cdm_sc",
        picture,
        [pre, post],
        used,
        f"Colour difference map: pre-op aligned onto post-op ({alignment.method})",
        identity,
        burned_in=False,
    )
    if picture.shape[:2] == (int(post.Rows), int(post.Columns)):
        _carry_patient_plane_spacing(sc, post)
    return sc


def _panel(ds: Dataset, analysis: ImageAnalysis, title: str, pixels: np.ndarray | None) -> overlay.Panel:
    spacing = analysis.pixel_spacing_mm
    if pixels is None:
        try:
            radiograph = radiograph_from_dataset(ds)
        except UnreadableImage as exc:
            raise common.EncodingError(f"cannot draw the overlay: {exc}") from exc
        pixels, spacing = radiograph.pixels, spacing or radiograph.pixel_spacing_mm
    elif np.shape(pixels) != (int(ds.Rows), int(ds.Columns)):
        raise common.EncodingError(f"pixels {np.shape(pixels)} do not match the image {(ds.Rows, ds.Columns)}")
    return overlay.Panel(pixels=pixels, landmarks=analysis.landmarks, title=title, spacing_mm=spacing)


def overlay_text(
    analyses: Sequence[tuple[str, ImageAnalysis]], deltas: Mapping[str, float | None] | None
) -> list[str]:
    """The value lines burned in: each exam's measurements, then the deltas."""
    lines: list[str] = []
    for label, analysis in analyses:
        lines.append(f"[{label}] calibration: {analysis.calibration or 'none (pixels)'}")
        for name in MEASUREMENTS:
            value = analysis.measurements.get(name)
            if value is not None:
                lines.append(f"[{label}] {overlay.format_value(name, value)}")
    if deltas:
        for name in DELTA_MEASUREMENTS:
            value = deltas.get(name)
            if value is not None:
                lines.append(overlay.format_value(name, value))
    lines.append("AI-generated (HipNode), research use only")
    return lines


def encode_overlay_sc(
    sources: Sequence[tuple[Dataset, ImageAnalysis]],
    deltas: Mapping[str, float | None] | None = None,
    extra_algorithms: Sequence[AlgorithmInfo] = (),
    *,
    pixels: Sequence[np.ndarray | None] | None = None,
    height: int = 768,
    identity: common.NodeIdentity = common.DEFAULT_IDENTITY,
) -> hd.sc.SCImage:
    """Landmarks, lines and values burned into an RGB SC.

    ``sources`` is ``[(post, analysis)]`` or ``[(pre, analysis), (post,
    analysis)]`` (drawn side by side, pre first); the SC goes into the last
    source's study. ``pixels`` (grey, bright = dense, one per source or None)
    saves decoding images the caller already holds.
    """
    if not 1 <= len(sources) <= 2:
        raise common.EncodingError("an overlay shows one or two exams")
    labels = ["image"] if len(sources) == 1 else ["pre", "post"]
    for ds, _ in sources:
        common.check_source(ds)
    decoded = list(pixels) if pixels is not None else [None] * len(sources)
    if len(decoded) != len(sources):
        raise common.EncodingError("give one pixel array (or None) per source")
    panels = [
        _panel(ds, analysis, f"{label} {ds.get('StudyDate', '')}".strip(), grey)
        for (ds, analysis), label, grey in zip(sources, labels, decoded)
    ]
    text = overlay_text([(label, a) for (_, a), label in zip(sources, labels)], deltas)
    algorithms = _unique([alg for _, a in sources for alg in common.algorithms_of(a)] + list(extra_algorithms))
    picture = overlay.render_overlay(panels, text, height=height)
    return _sc(
        "overlay_sc",
        picture,
        [ds for ds, _ in sources],
        algorithms,
        "Landmarks, measurement lines and values burned in",
        identity,
        burned_in=True,
    )
