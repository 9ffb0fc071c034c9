"""One DICOM SEG per analysed radiograph, with every spec segment.

Decisions (docs/dicom-results.md; pitfalls from ../shared/notes/dicom-conformance.md):

- BINARY, one segment per spec name in ``vocabulary.SEGMENTS`` order, so
  segment number ``i + 1`` always means ``SEGMENTS[i]`` and an SR can
  reference a segment without reading the SEG.
- Empty segments (a native hip has no implant) keep their all-zero frame
  (``omit_empty_frames=False``): every segment has exactly one frame, frame
  number = segment number. Viewers that build one label map per frame never
  meet a described segment without pixels, and a SEG whose segments are all
  empty is still valid instead of an encoder error.
- The SEG is built from a header-only copy of the source without
  PixelSpacing: highdicom 0.28.2 writes a Pixel Measures Sequence without
  SliceThickness for a calibrated DX, which dciodvfy and highdicom's own
  reader reject. A projection radiograph has no Frame of Reference, so the
  SEG indexes frames by segment number only.
- Laterality is an Anatomic Region Modifier of each segment (right/left),
  never General Series Laterality.
"""

from __future__ import annotations

import copy
import uuid

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.valuerep import format_number_as_ds

from models.algorithms.results import AlgorithmInfo, ImageAnalysis
from models.algorithms.vocabulary import SEGMENTS
from node.results import codes as hn_codes
from node.results import common
from node.results.uids import NAMESPACE, instance_uid, series_uid


def segment_number(name: str) -> int:
    """The SEG segment number of spec segment ``name`` (stable across objects)."""
    if name not in SEGMENTS:
        raise ValueError(f"unknown segment name {name!r}")
    return SEGMENTS.index(name) + 1


def _mask_stack(source: Dataset, analysis: ImageAnalysis) -> np.ndarray:
    rows, columns = int(source.Rows), int(source.Columns)
    unknown = sorted(set(analysis.masks) - set(SEGMENTS))
    if unknown:
        raise common.EncodingError(f"masks with names outside the spec: {unknown}")
    stack = np.zeros((1, rows, columns, len(SEGMENTS)), dtype=np.uint8)
    for index, name in enumerate(SEGMENTS):
        mask = analysis.masks.get(name)
        if mask is None:
            continue  # a segment the model did not produce is encoded empty
        mask = np.asarray(mask)
        if mask.shape != (rows, columns):
            raise common.EncodingError(
                f"mask {name!r} has shape {mask.shape}, the source image is {(rows, columns)}"
            )
        stack[0, :, :, index] = mask.astype(bool)
    return stack


def _description(
    name: str, algorithm: AlgorithmInfo, seg_uid: str
) -> hd.seg.SegmentDescription:
    c = hn_codes.segment_codes(name)
    description = hd.seg.SegmentDescription(
        segment_number=segment_number(name),
        segment_label=name,
        segmented_property_category=c.category,
        segmented_property_type=c.property_type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=common.algorithm_sequence(algorithm),
        tracking_uid=str(hd.UID.from_uuid(str(uuid.uuid5(NAMESPACE, f"segment|{seg_uid}|{name}")))),
        tracking_id=name,
        anatomic_regions=[c.anatomic_region],
        display_color=hd.color.CIELabColor.from_rgb(*c.rgb),
    )
    if c.side is not None:
        region = copy.deepcopy(description.AnatomicRegionSequence[0])  # codes are shared
        region.AnatomicRegionModifierSequence = DicomSequence([hn_codes.LATERALITY[c.side]])
        description.AnatomicRegionSequence = DicomSequence([region])
    return description


def encode_seg(
    source: Dataset,
    analysis: ImageAnalysis,
    algorithm: AlgorithmInfo | None = None,
    *,
    identity: common.NodeIdentity = common.DEFAULT_IDENTITY,
) -> hd.seg.Segmentation:
    """Encode ``analysis.masks`` as a BINARY SEG of ``source`` in its study.

    ``algorithm`` is the segmentation model (default: the analysis's first
    algorithm); all the analysis's algorithms go into Contributing Equipment
    and into the UID, so new weights give a new object.
    """
    common.check_source(source)
    algorithms = common.algorithms_of(analysis)
    algorithm = algorithm or algorithms[0]
    sop_uid = instance_uid("seg", [source.SOPInstanceUID], algorithms)
    header = common.header_copy(source, drop=("PixelSpacing",))
    pixels = _mask_stack(source, analysis)
    kwargs = common.common_kwargs("seg", source, identity)
    seg = hd.seg.Segmentation(
        source_images=[header],
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(name, algorithm, sop_uid) for name in SEGMENTS],
        series_instance_uid=series_uid("seg", source.StudyInstanceUID, algorithms),
        sop_instance_uid=sop_uid,
        instance_number=common.instance_number(source),
        manufacturer=identity.manufacturer,
        manufacturer_model_name=identity.model_name,
        software_versions=identity.software_version,
        device_serial_number=identity.device_serial_number,
        omit_empty_frames=False,
        content_label="HIPNODE_SEG",
        content_description="Hip radiograph segmentation (AI-generated, research use)",
        contributing_equipment=common.contributing_equipment(algorithms),
        **kwargs,
    )
    _stable_dimension_organization(seg, sop_uid)
    if "PatientOrientation" in source:
        seg.PatientOrientation = source.PatientOrientation
    add_viewer_functional_groups(seg, analysis.pixel_spacing_mm or detector_spacing(source))
    common.carry_patient_study(seg, source)
    return seg


def _stable_dimension_organization(seg: Dataset, sop_uid: str) -> None:
    """highdicom draws the Dimension Organization UID at random; derive it from the
    SEG's own UID so a re-run encodes the identical object (idempotent results)."""
    stable = str(hd.UID.from_uuid(str(uuid.uuid5(NAMESPACE, f"dimension-organization|{sop_uid}"))))
    for item in seg.get("DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = stable
    for item in seg.get("DimensionIndexSequence", []):
        if "DimensionOrganizationUID" in item:
            item.DimensionOrganizationUID = stable


def detector_spacing(source: Dataset) -> tuple[float, float]:
    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing") or (1.0, 1.0)
    return float(spacing[0]), float(spacing[1])


def add_viewer_functional_groups(seg: Dataset, spacing_mm: tuple[float, float]) -> None:
    """Shared Pixel Measures (with SliceThickness) and Plane Orientation.

    highdicom writes neither for a projection source without a frame of
    reference, and OHIF 3.13's SEG viewport then fails (it destructures
    ``SharedFunctionalGroupsSequence[0].PixelMeasuresSequence`` and checks the
    plane orientation). With both, the overlay renders and dciodvfy stays
    clean; SliceThickness keeps highdicom's own reader working.
    """
    measures = Dataset()
    measures.PixelSpacing = [format_number_as_ds(float(v)) for v in spacing_mm[:2]]
    measures.SliceThickness = 1
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    if "SharedFunctionalGroupsSequence" not in seg or len(seg.SharedFunctionalGroupsSequence) == 0:
        seg.SharedFunctionalGroupsSequence = [Dataset()]
    shared = seg.SharedFunctionalGroupsSequence[0]
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [orientation]
