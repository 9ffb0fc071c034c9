"""Fixtures of the Orthanc + OHIF harness suite (``pytest -m harness``; part of ``make test``).

The receiver that Orthanc routes hip studies to is chosen in one place:
``RECEIVER`` below (or ``HIPNODE_HARNESS_RECEIVER``). ``"storescp"`` is DCMTK's
storescp standing in for the node, with the test sending results back as the
node would; ``"node"`` runs ``python -m node serve`` and waits for its own results.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from harness import dicom_factory  # noqa: E402
from harness.stack import CACHE_DIR, OHIF_DIST, REPO_ROOT  # noqa: E402

RECEIVER = os.environ.get("HIPNODE_HARNESS_RECEIVER", "storescp")  # "node" once the pipeline sends results
NODE_AET = "HIPNODE"
REQUIRED_TOOLS = ["/usr/sbin/Orthanc", "storescu", "storescp", "echoscu", "nsenter", "unshare", "ip",
                  "/usr/bin/chromium", "node"]


def _missing_tools() -> list[str]:
    return [t for t in REQUIRED_TOOLS if shutil.which(t) is None]


def _npm_parts_missing() -> bool:
    return not (OHIF_DIST / "index.html").is_file() or not (
        CACHE_DIR / "node_modules" / "playwright-core" / "package.json").is_file()


@pytest.fixture(scope="session")
def harness_installed() -> None:
    """Install what is missing (Debian packages, npm parts) instead of skipping; fail if that fails."""
    if _missing_tools():
        subprocess.run([str(REPO_ROOT / "deploy" / "install-system-deps.sh")], check=True)
    if _npm_parts_missing():
        subprocess.run([str(HERE / "install.sh")], check=True)
    still = _missing_tools() + (["OHIF dist / playwright-core"] if _npm_parts_missing() else [])
    if still:
        pytest.fail(f"harness tools missing after installing: {still}")
    if os.geteuid() != 0:
        pytest.fail("the harness needs root (or CAP_SYS_ADMIN) for its private network namespace")


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest) -> Path:
    """``artifacts/harness/<test>/``: screenshots and Orthanc/receiver logs, kept after the run."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    path = REPO_ROOT / "artifacts" / "harness" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


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
    from pydicom.uid import generate_uid

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


@pytest.fixture
def synthetic_pair(tmp_path: Path) -> SyntheticPair:
    return make_pair(tmp_path / "pair")
