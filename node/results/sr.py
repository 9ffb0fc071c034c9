"""TID 1500 measurement reports (Comprehensive 3D SR) for one image and for a pair.

Image report: every present landmark is a planar group (TID 1410) with a
SCOORD POINT on the source image; every present measurement is a planar group
whose region is the line it was read on (POLYLINE: two points for lengths,
three for angles, four for the leg length discrepancy), or the SEG segment it
was read on (``min_joint_space_width`` -> ``joint_space``), with its UCUM unit
and, for millimetres, the calibration source as the measurement's
Measurement Method (``99HIPNODE`` CAL-PS / CAL-MAG / CAL-DET).
A measurement whose geometry is unknown goes into an image-level group
(TID 1501) that references the source image. Each group and measurement
names the algorithm and its version; the observer is the node as a device.

Pair report: one image-level group with the spec's deltas (post minus pre,
mm, calibrated like the pre-op image whose frame they are measured in), each
referencing both exams, the alignment method as the group's Measurement
Method; evidence lists both (the pre-op, being in
another study, under Pertinent Other Evidence as PS3.3 requires).

SCOORD coordinates follow PS3.3 C.18.6.1.1: (0, 0) is the top-left corner of
the top-left pixel, so a spec point (x, y) (origin at that pixel's centre) is
written as (x + 0.5, y + 0.5). ``spec_point()`` reverses it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from models.algorithms.results import AlgorithmInfo, ImageAnalysis, PairAlignment
from models.algorithms.vocabulary import DELTA_MEASUREMENTS, LANDMARKS, MEASUREMENTS
from node.results import codes as hn_codes
from node.results import common, geometry
from node.results.seg import segment_number
from node.results.uids import NAMESPACE, instance_uid, series_uid

SCOORD_OFFSET = 0.5

# Measurements read on a SEG segment rather than on landmark lines.
_SEGMENT_OF_MEASUREMENT = {
    "min_joint_space_width_right": "joint_space_right",
    "min_joint_space_width_left": "joint_space_left",
}


def scoord(point: Sequence[float], rows: int, columns: int) -> list[float]:
    """Spec pixel point -> SCOORD pixel coordinates, clipped into the image."""
    x = min(max(float(point[0]) + SCOORD_OFFSET, 0.0), float(columns))
    y = min(max(float(point[1]) + SCOORD_OFFSET, 0.0), float(rows))
    return [x, y]


def spec_point(graphic_data: Sequence[float]) -> tuple[float, float]:
    """SCOORD pixel coordinates -> spec pixel point."""
    return float(graphic_data[0]) - SCOORD_OFFSET, float(graphic_data[1]) - SCOORD_OFFSET


def _tracking(kind_uid: str, name: str) -> hd.sr.TrackingIdentifier:
    uid = hd.UID.from_uuid(str(uuid.uuid5(NAMESPACE, f"tracking|{kind_uid}|{name}")))
    return hd.sr.TrackingIdentifier(uid=uid, identifier=name)


def _observation_context(identity: common.NodeIdentity) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=identity.device_uid,
        name=identity.model_name,
        manufacturer_name=identity.manufacturer,
        model_name=identity.model_name,
        serial_number=identity.device_serial_number,
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def _finding_site(site: tuple[hd.sr.CodedConcept, hd.sr.CodedConcept | None]) -> hd.sr.FindingSite:
    return hd.sr.FindingSite(anatomic_location=site[0], laterality=site[1])


def _calibration_method(name: str, calibration: str | None) -> hd.sr.CodedConcept | None:
    """Measurement Method of a millimetre value: where its pixel spacing came from."""
    if hn_codes.measurement_unit(name) != hn_codes.MM or calibration is None:
        return None
    if calibration not in hn_codes.CALIBRATIONS:
        raise common.EncodingError(f"unknown calibration {calibration!r}")
    return hn_codes.CALIBRATIONS[calibration]


def _source_for_region(source: Dataset) -> hd.sr.SourceImageForRegion:
    return hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=source.SOPClassUID,
        referenced_sop_instance_uid=source.SOPInstanceUID,
    )


def _segment_reference(seg: Dataset, source: Dataset, name: str) -> hd.sr.ReferencedSegmentationFrame:
    """Reference one SEG segment, without the frame numbers a 1-frame DX must not carry."""
    number = segment_number(name)
    reference = hd.sr.ReferencedSegmentationFrame(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        frame_number=number,  # omit_empty_frames=False: frame i holds segment i
        segment_number=number,
        source_image=hd.sr.SourceImageForSegmentation(
            referenced_sop_class_uid=source.SOPClassUID,
            referenced_sop_instance_uid=source.SOPInstanceUID,
        ),
    )
    for item in reference:
        for ref in getattr(item, "ReferencedSOPSequence", []):
            if "ReferencedSegmentNumber" in ref and "ReferencedFrameNumber" in ref:
                del ref.ReferencedFrameNumber
        concept = item.ConceptNameCodeSequence[0]
        if concept.CodeValue == "121233":  # highdicom capitalises the DCM meaning
            concept.CodeMeaning = "Source image for segmentation"
    return reference


def _segment_nonempty(analysis: ImageAnalysis, name: str) -> bool:
    mask = analysis.masks.get(name)
    return mask is not None and bool(np.any(mask))


def _landmark_groups(
    source: Dataset, analysis: ImageAnalysis, algorithm: AlgorithmInfo, sr_uid: str
) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    rows, columns = int(source.Rows), int(source.Columns)
    groups = []
    for name in LANDMARKS:
        point = analysis.landmarks.get(name)
        if point is None:
            continue
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=_tracking(sr_uid, name),
                referenced_region=hd.sr.ImageRegion(
                    graphic_type=hd.sr.GraphicTypeValues.POINT,
                    graphic_data=np.array([scoord(point, rows, columns)]),
                    source_image=_source_for_region(source),
                ),
                finding_type=hn_codes.landmark_concept(name),
                algorithm_id=common.algorithm_template(algorithm),
                finding_sites=[_finding_site(hn_codes.landmark_site(name))],
            )
        )
    return groups


def _measurement(
    name: str,
    value: float,
    algorithm: AlgorithmInfo,
    sources: Sequence[Dataset],
    calibration: str | None,
) -> hd.sr.Measurement:
    """TID 300 measurement with its unit, calibration source (as Measurement Method) and algorithm.

    ``sources`` become Source of Measurement references. Planar groups pass
    none: their region already names the image, and pixelmed flags a second
    reference there as not in the template.
    """
    if not np.isfinite(value):
        raise common.EncodingError(f"measurement {name!r} is not a finite number: {value}")
    return hd.sr.Measurement(
        name=hn_codes.measurement_concept(name),
        value=float(value),
        unit=hn_codes.measurement_unit(name),
        method=_calibration_method(name, calibration),
        algorithm_id=common.algorithm_template(algorithm),
        finding_sites=[_finding_site(hn_codes.measurement_site(name))],
        referenced_images=[
            hd.sr.SourceImageForMeasurement(
                referenced_sop_class_uid=ds.SOPClassUID, referenced_sop_instance_uid=ds.SOPInstanceUID
            )
            for ds in sources
        ]
        or None,
    )


def _measurement_groups(
    source: Dataset,
    analysis: ImageAnalysis,
    algorithm: AlgorithmInfo,
    sr_uid: str,
    seg: Dataset | None,
) -> list[object]:
    rows, columns = int(source.Rows), int(source.Columns)
    groups: list[object] = []
    for name in MEASUREMENTS:
        value = analysis.measurements.get(name)
        if value is None:
            continue
        common_args = dict(
            tracking_identifier=_tracking(sr_uid, name),
            algorithm_id=common.algorithm_template(algorithm),
            finding_sites=[_finding_site(hn_codes.measurement_site(name))],
            measurements=[_measurement(name, value, algorithm, [], analysis.calibration)],
        )
        segment = _SEGMENT_OF_MEASUREMENT.get(name)
        polyline = geometry.measurement_polyline(name, analysis.landmarks, analysis.pixel_spacing_mm)
        if segment is not None and seg is not None and _segment_nonempty(analysis, segment):
            groups.append(
                hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                    referenced_segment=_segment_reference(seg, source, segment), **common_args
                )
            )
        elif polyline is not None:
            groups.append(
                hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                    referenced_region=hd.sr.ImageRegion(
                        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                        graphic_data=np.array([scoord(p, rows, columns) for p in polyline]),
                        source_image=_source_for_region(source),
                    ),
                    **common_args,
                )
            )
        else:
            common_args["measurements"] = [_measurement(name, value, algorithm, [source], analysis.calibration)]
            groups.append(
                hd.sr.MeasurementsAndQualitativeEvaluations(
                    source_images=[
                        hd.sr.SourceImageForMeasurementGroup(
                            referenced_sop_class_uid=source.SOPClassUID,
                            referenced_sop_instance_uid=source.SOPInstanceUID,
                        )
                    ],
                    **common_args,
                )
            )
    return groups


def _report(
    kind: str,
    evidence: list[Dataset],
    groups: list[object],
    sop_uid: str,
    algorithms: Sequence[AlgorithmInfo],
    identity: common.NodeIdentity,
) -> hd.sr.Comprehensive3DSR:
    evidence = [common.header_copy(ds) for ds in evidence]  # no pixel copies, Type 2 filled
    primary = evidence[0]
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(identity),
        procedure_reported=hn_codes.IMAGING_PROCEDURE,
        imaging_measurements=groups,  # type: ignore[arg-type]
        title=codes.DCM.ImagingMeasurementReport,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=series_uid(kind, primary.StudyInstanceUID, algorithms),
        sop_instance_uid=sop_uid,
        instance_number=common.instance_number(primary),
        manufacturer=identity.manufacturer,
        is_complete=True,
        contributing_equipment=common.contributing_equipment(algorithms),
        manufacturer_model_name=identity.model_name,
        software_versions=identity.software_version,
        device_serial_number=identity.device_serial_number,
        **common.common_kwargs(kind, primary, identity),
    )
    common.carry_patient_study(sr, primary)
    return sr


def encode_image_sr(
    source: Dataset,
    analysis: ImageAnalysis,
    seg: Dataset | None = None,
    algorithm: AlgorithmInfo | None = None,
    *,
    identity: common.NodeIdentity = common.DEFAULT_IDENTITY,
) -> hd.sr.Comprehensive3DSR:
    """TID 1500 report of one image's landmarks and measurements.

    ``seg`` (the image's SEG from :func:`encode_seg`) lets segment-based
    measurements reference their segment and joins the evidence.
    ``algorithm`` names the landmark/measurement model in each group
    (default: the analysis's last algorithm, the stage that measured).
    """
    common.check_source(source)
    algorithms = common.algorithms_of(analysis)
    algorithm = algorithm or algorithms[-1]
    sop_uid = instance_uid("sr", [source.SOPInstanceUID], algorithms)
    groups: list[object] = [*_landmark_groups(source, analysis, algorithm, sop_uid)]
    groups += _measurement_groups(source, analysis, algorithm, sop_uid, seg)
    evidence = [source] if seg is None else [source, seg]
    return _report("sr", evidence, groups, sop_uid, algorithms, identity)


def encode_pair_sr(
    pre: Dataset,
    post: Dataset,
    pre_analysis: ImageAnalysis,
    post_analysis: ImageAnalysis,
    alignment: PairAlignment,
    deltas: Mapping[str, float | None],
    *,
    identity: common.NodeIdentity = common.DEFAULT_IDENTITY,
) -> hd.sr.Comprehensive3DSR:
    """TID 1500 report of the pre/post deltas, in the post-op exam's study.

    Deltas are in the pre-op image's frame (the post-op image is aligned
    onto it), so their calibration source is the pre-op image's.
    """
    common.check_source(pre)
    common.check_source(post)
    unknown = sorted(set(deltas) - set(DELTA_MEASUREMENTS))
    if unknown:
        raise common.EncodingError(f"deltas with names outside the spec: {unknown}")
    algorithms = (
        *common.algorithms_of(pre_analysis),
        *common.algorithms_of(post_analysis),
        *alignment.algorithms,
    )
    algorithms = tuple(dict.fromkeys(algorithms))  # unique, order kept
    algorithm = alignment.algorithms[0] if alignment.algorithms else algorithms[-1]
    sop_uid = instance_uid("sr_pair", [pre.SOPInstanceUID, post.SOPInstanceUID], algorithms)
    measurements = [
        _measurement(name, value, algorithm, [pre, post], pre_analysis.calibration)
        for name in DELTA_MEASUREMENTS
        if (value := deltas.get(name)) is not None
    ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(sop_uid, "pre_post_comparison"),
        finding_type=hn_codes.PAIR_FINDING,
        algorithm_id=common.algorithm_template(algorithm),
        finding_sites=[_finding_site((hn_codes.PELVIS_REGION, hn_codes.RIGHT_AND_LEFT))],
        method=hn_codes.ALIGNMENT_METHODS.get(alignment.method),
        measurements=measurements or None,
        source_images=[
            hd.sr.SourceImageForMeasurementGroup(
                referenced_sop_class_uid=ds.SOPClassUID, referenced_sop_instance_uid=ds.SOPInstanceUID
            )
            for ds in (pre, post)
        ],
    )
    for item in group[0].ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == "370129005":
            # TID 1501 row 5 is HAS CONCEPT MOD; highdicom 0.28.2 writes CONTAINS.
            item.RelationshipType = "HAS CONCEPT MOD"
    return _report("sr_pair", [post, pre], [group], sop_uid, algorithms, identity)
