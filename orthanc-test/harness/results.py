"""What comes back into Orthanc: the node's results (or a stand-in's) and their references."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from harness import dicom_factory
from harness.processes import wait_for
from harness.stack import HarnessStack

RESULT_MODALITIES = ("SEG", "SR", "OT")  # the colour difference map is a Secondary Capture (OT)


@dataclass
class StudyResults:
    """Result objects found in one study, parsed from Orthanc's copies."""

    study_uid: str
    by_modality: dict[str, list[Dataset]] = field(default_factory=dict)
    series: list[tuple[str, int, str]] = field(default_factory=list)  # (Modality, SeriesNumber, description)

    def series_number(self, modality: str, description_word: str = "") -> int:
        """Series Number of the first result series of ``modality`` whose description has the word."""
        for mod, number, description in sorted(self.series):
            if mod == modality and description_word.lower() in description.lower():
                return number
        raise KeyError(f"no {modality} series described with {description_word!r} in {self.series}")


def send_stand_in_results(stack: HarnessStack, routed_files: list[Path], node_aet: str,
                          encoders: str = "harness") -> None:
    """Play the node: build results for the routed exams the receiver got and C-STORE them to
    Orthanc from the node's AE title.

    ``encoders="harness"``: the harness's own SEG + SR per exam and a colour SC for the later one.
    ``encoders="node"``: the project's encoders (:mod:`node.results`) on known masks and
    landmarks, so the real objects meet the real viewer before any model weights exist.
    """
    exams = sorted((pydicom.dcmread(p) for p in routed_files), key=lambda d: (d.StudyDate, d.StudyTime))
    out_dir = stack.work_dir / "stand-in-results"
    if encoders == "node":
        objects = node_encoder_results(exams[0], exams[-1])
        stack.send_to_orthanc([dicom_factory.save(o, out_dir / f"node{i}.dcm") for i, o in enumerate(objects)],
                              calling_aet=node_aet)
        return
    files: list[Path] = []
    for index, exam in enumerate(exams):
        masks = dicom_factory.pelvis_masks(post_op=index > 0, shape=(int(exam.Rows), int(exam.Columns)))
        other = exams[0] if index > 0 else None
        files.append(dicom_factory.save(dicom_factory.make_seg(exam, masks), out_dir / f"seg{index}.dcm"))
        files.append(dicom_factory.save(dicom_factory.make_sr(exam, other), out_dir / f"sr{index}.dcm"))
        if other is not None:
            files.append(dicom_factory.save(dicom_factory.make_colour_sc(exam, other), out_dir / f"sc{index}.dcm"))
    stack.send_to_orthanc(files, calling_aet=node_aet)


def node_encoder_results(pre: Dataset, post: Dataset) -> list[Dataset]:
    """SEG + SR per exam and the pair's SR, difference map and overlay, from :mod:`node.results`."""
    import numpy as np

    from models.algorithms.results import AlgorithmInfo, ImageAnalysis, PairAlignment
    from models.algorithms.vocabulary import LANDMARKS, MEASUREMENTS, SEGMENTS
    from node.results import encode_image_results, encode_pair_results

    def analysis(ds: Dataset, post_op: bool) -> ImageAnalysis:
        shape = (int(ds.Rows), int(ds.Columns))
        drawn = dicom_factory.pelvis_masks(post_op, shape)
        masks = {name: np.zeros(shape, bool) for name in SEGMENTS}
        masks.update(pelvis=drawn.pelvis, femoral_head_right=drawn.femoral_head_right,
                     femoral_head_left=drawn.femoral_head_left)
        landmarks: dict[str, tuple[float, float] | None] = {name: None for name in LANDMARKS}
        for name, mask in (("femoral_head_centre_right", drawn.femoral_head_right),
                           ("femoral_head_centre_left", drawn.femoral_head_left)):
            rows, cols = np.nonzero(mask)
            landmarks[name] = (float(cols.mean()), float(rows.mean()))
        measurements: dict[str, float | None] = {name: None for name in MEASUREMENTS}
        measurements["leg_length_discrepancy"] = 4.2
        return ImageAnalysis(landmarks=landmarks, measurements=measurements, masks=masks,
                             calibration="detector_plane", pixel_spacing_mm=(0.5, 0.5),
                             algorithms=(AlgorithmInfo("harness-stand-in", "0.1"),))

    pre_analysis, post_analysis = analysis(pre, False), analysis(post, True)
    rgb = np.zeros((int(post.Rows), int(post.Columns), 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, rgb.shape[1], dtype=np.uint8)[None, :]
    rgb[..., 2] = 200
    alignment = PairAlignment(np.eye(3), "weighted", "harness", 50, 40,
                              algorithms=(AlgorithmInfo("harness-stand-in-align", "0.1"),))
    return (encode_image_results(pre, pre_analysis) + encode_image_results(post, post_analysis)
            + encode_pair_results(pre, post, pre_analysis, post_analysis, alignment, rgb, {}))


def fetch_results(stack: HarnessStack, study_uid: str) -> StudyResults:
    """Download every result instance of the study from Orthanc and parse it."""
    found = StudyResults(study_uid)
    for series in stack.orthanc.study_series(study_uid):
        modality = series["MainDicomTags"].get("Modality", "")
        if modality not in RESULT_MODALITIES:
            continue
        tags = series["MainDicomTags"]
        found.series.append((modality, int(tags.get("SeriesNumber", 0) or 0), tags.get("SeriesDescription", "")))
        for instance_id in series["Instances"]:
            status, body = stack.orthanc.request("GET", f"/instances/{instance_id}/file")
            if status != 200:
                raise RuntimeError(f"GET /instances/{instance_id}/file: HTTP {status}")
            found.by_modality.setdefault(modality, []).append(pydicom.dcmread(io.BytesIO(body)))
    return found


def wait_for_results(stack: HarnessStack, study_uid: str, modalities: tuple[str, ...],
                     timeout_s: float) -> StudyResults:
    """Poll Orthanc until the study holds at least one instance of each modality."""
    def ready() -> StudyResults | None:
        have = {s["MainDicomTags"].get("Modality") for s in stack.orthanc.study_series(study_uid)}
        return fetch_results(stack, study_uid) if set(modalities) <= have else None

    return wait_for(ready, timeout_s, f"results {modalities} in study {study_uid}", interval_s=0.2)  # type: ignore[return-value]


def referenced_instances(ds: Dataset) -> set[str]:
    """SOP Instance UIDs a result points at (SEG ReferencedSeries, SR evidence, SC sources)."""
    uids: set[str] = set()
    for series in ds.get("ReferencedSeriesSequence", []):
        uids.update(i.ReferencedSOPInstanceUID for i in series.get("ReferencedInstanceSequence", []))
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(keyword, []):  # an SR's evidence; other studies' go to Pertinent Other
            for series in study.get("ReferencedSeriesSequence", []):
                uids.update(i.ReferencedSOPInstanceUID for i in series.get("ReferencedSOPSequence", []))
    uids.update(i.ReferencedSOPInstanceUID for i in ds.get("SourceImageSequence", []))
    return uids


def referenced_series(ds: Dataset) -> set[str]:
    """Series Instance UIDs a SEG names in ReferencedSeriesSequence (what OHIF needs)."""
    return {s.SeriesInstanceUID for s in ds.get("ReferencedSeriesSequence", [])}
