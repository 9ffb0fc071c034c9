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
    series_numbers: dict[str, int] = field(default_factory=dict)


def send_stand_in_results(stack: HarnessStack, routed_files: list[Path], node_aet: str) -> None:
    """Play the node: build SEG + SR for each routed exam (and a colour SC for the later one)
    from the files the receiver got, and C-STORE them to Orthanc from the node's AE title."""
    exams = sorted((pydicom.dcmread(p) for p in routed_files), key=lambda d: (d.StudyDate, d.StudyTime))
    out_dir = stack.work_dir / "stand-in-results"
    files: list[Path] = []
    for index, exam in enumerate(exams):
        masks = dicom_factory.pelvis_masks(post_op=index > 0, shape=(int(exam.Rows), int(exam.Columns)))
        other = exams[0] if index > 0 else None
        files.append(dicom_factory.save(dicom_factory.make_seg(exam, masks), out_dir / f"seg{index}.dcm"))
        files.append(dicom_factory.save(dicom_factory.make_sr(exam, other), out_dir / f"sr{index}.dcm"))
        if other is not None:
            files.append(dicom_factory.save(dicom_factory.make_colour_sc(exam, other), out_dir / f"sc{index}.dcm"))
    stack.send_to_orthanc(files, calling_aet=node_aet)


def fetch_results(stack: HarnessStack, study_uid: str) -> StudyResults:
    """Download every result instance of the study from Orthanc and parse it."""
    found = StudyResults(study_uid)
    for series in stack.orthanc.study_series(study_uid):
        modality = series["MainDicomTags"].get("Modality", "")
        if modality not in RESULT_MODALITIES:
            continue
        found.series_numbers.setdefault(modality, int(series["MainDicomTags"].get("SeriesNumber", 0) or 0))
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
    for study in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.get("ReferencedSeriesSequence", []):
            uids.update(i.ReferencedSOPInstanceUID for i in series.get("ReferencedSOPSequence", []))
    uids.update(i.ReferencedSOPInstanceUID for i in ds.get("SourceImageSequence", []))
    return uids


def referenced_series(ds: Dataset) -> set[str]:
    """Series Instance UIDs a SEG names in ReferencedSeriesSequence (what OHIF needs)."""
    return {s.SeriesInstanceUID for s in ds.get("ReferencedSeriesSequence", [])}
