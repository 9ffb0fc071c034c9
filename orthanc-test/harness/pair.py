"""A synthetic pre-op / post-op pair of AP pelvis DX files (plus a chest DX that must not be routed)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import generate_uid

from harness import dicom_factory


@dataclass(frozen=True)
class SyntheticPair:
    """A pre-op and a post-op AP pelvis DX of one patient, plus a chest DX that must not be routed."""

    pre: Path
    post: Path
    chest: Path
    pre_study_uid: str
    post_study_uid: str
    post_series_uid: str
    sop_uids: dict[str, str]


def make_pair(out_dir: Path, patient_id: str = "HARNESS-001") -> SyntheticPair:
    """Write the pair (and the chest image) as DICOM files under ``out_dir``."""
    name = "Harness^Hip"
    pre, _ = dicom_factory.make_dx(patient_id=patient_id, patient_name=name, study_uid=generate_uid(),
                                   accession="ACC-PRE-1", post_op=False, study_date=dt.date(2024, 1, 9), seed=1)
    post, _ = dicom_factory.make_dx(patient_id=patient_id, patient_name=name, study_uid=generate_uid(),
                                    accession="ACC-POST-1", post_op=True, study_date=dt.date(2024, 4, 2), seed=2)
    chest, _ = dicom_factory.make_dx(patient_id=patient_id, patient_name=name, study_uid=generate_uid(),
                                     accession="ACC-CHEST-1", post_op=False, study_date=dt.date(2024, 4, 3), seed=3)
    chest.BodyPartExamined, chest.StudyDescription, chest.SeriesDescription = "CHEST", "XR CHEST PA", "Chest PA"
    del chest.AnatomicRegionSequence
    return SyntheticPair(
        pre=dicom_factory.save(pre, out_dir / "pre.dcm"), post=dicom_factory.save(post, out_dir / "post.dcm"),
        chest=dicom_factory.save(chest, out_dir / "chest.dcm"), pre_study_uid=pre.StudyInstanceUID,
        post_study_uid=post.StudyInstanceUID, post_series_uid=post.SeriesInstanceUID,
        sop_uids={"pre": pre.SOPInstanceUID, "post": post.SOPInstanceUID, "chest": chest.SOPInstanceUID})
