"""A pre-op / post-op pair of AP pelvis DX files of one patient (plus a chest DX that must not be routed).

The hip images come from ``hipnode synth`` (real pelvic anatomy, an implant on
the post-op image), so the real node can analyse them, recognise the operated
side and pair the two exams. The chest image is the harness's own small DX:
it only has to be a non-hip image that routing must leave alone.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from harness import dicom_factory
from harness.stack import REPO_ROOT

SYNTH_ANATOMY = "Pelvic-Ref-002"
"""The label map the harness pairs are drawn from: the one the reference weights never saw."""


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


def _synth_pair(out_dir: Path, seed: int) -> tuple[Path, Path]:
    """Run ``hipnode synth`` (the command contract) for one pair; return (pre, post)."""
    labels = REPO_ROOT / "models" / "synth" / "pelvic_ref" / SYNTH_ANATOMY
    subprocess.run(
        [sys.executable, "-m", "node", "synth", "--labels", str(labels), "--out", str(out_dir),
         "--pairs", "1", "--seed", str(seed)],
        cwd=REPO_ROOT, check=True, capture_output=True, timeout=600,
    )
    return out_dir / "pair_000" / "pre.dcm", out_dir / "pair_000" / "post.dcm"


def _as_patient(path: Path, patient_id: str, name: str, accession: str, description: str,
                out: Path) -> pydicom.Dataset:
    """The synthetic exam re-labelled as the harness's patient (UIDs and pixels kept)."""
    ds = pydicom.dcmread(path)
    ds.PatientID, ds.PatientName, ds.AccessionNumber = patient_id, name, accession
    ds.StudyDescription = description  # what the viewer checks look for in OHIF's study list
    dicom_factory.save(ds, out)
    return ds


def make_pair(out_dir: Path, patient_id: str = "HARNESS-001") -> SyntheticPair:
    """Write the pair (and the chest image) as DICOM files under ``out_dir``."""
    name = "Harness^Hip"
    seed = zlib.crc32(patient_id.encode()) % 10_000
    with tempfile.TemporaryDirectory(prefix="harness-synth-") as work:
        pre_src, post_src = _synth_pair(Path(work), seed)
        pre = _as_patient(pre_src, patient_id, name, "ACC-PRE-1", "XR PELVIS AP PREOP", out_dir / "pre.dcm")
        post = _as_patient(post_src, patient_id, name, "ACC-POST-1", "XR PELVIS AP POSTOP",
                           out_dir / "post.dcm")
    chest, _ = dicom_factory.make_dx(patient_id=patient_id, patient_name=name, study_uid=generate_uid(),
                                     accession="ACC-CHEST-1", post_op=False, study_date=dt.date.today(), seed=3)
    chest.BodyPartExamined, chest.StudyDescription, chest.SeriesDescription = "CHEST", "XR CHEST PA", "Chest PA"
    del chest.AnatomicRegionSequence
    return SyntheticPair(
        pre=out_dir / "pre.dcm", post=out_dir / "post.dcm",
        chest=dicom_factory.save(chest, out_dir / "chest.dcm"), pre_study_uid=pre.StudyInstanceUID,
        post_study_uid=post.StudyInstanceUID, post_series_uid=post.SeriesInstanceUID,
        sop_uids={"pre": pre.SOPInstanceUID, "post": post.SOPInstanceUID, "chest": chest.SOPInstanceUID})
