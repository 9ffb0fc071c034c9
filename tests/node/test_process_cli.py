"""``hipnode process PRE.dcm [POST.dcm] --out DIR``: the node's objects, offline.

Compared against what a real node sent for the same synthetic pair
(``pipeline_support.session_pair_run``): same SOP Instance UIDs, same kinds,
same content apart from nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.conftest import REPO_ROOT
from tests.node import pipeline_support as ps

pytestmark = pytest.mark.slow


def process(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", "process", *map(str, args)],
        cwd=REPO_ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_process_writes_the_objects_the_node_sent(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    run = ps.session_pair_run(request)
    out = tmp_path / "out"
    done = process(run.pair / "pre.dcm", run.pair / "post.dcm", "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    written = {w["sop_instance_uid"]: w["kind"] for w in summary["written"]}
    sent = {r.uid: r.kind for r in run.received}
    image_written = {uid: kind for uid, kind in written.items() if kind in ("seg", "sr")}
    assert image_written == {uid: kind for uid, kind in sent.items() if kind in ("seg", "sr")}
    assert sorted(kind for kind in written.values() if kind not in ("seg", "sr")) == [
        "cdm_sc",
        "overlay_sc",
        "sr_pair",
    ]
    # The node pairs only what its classification pairs (test_pipeline_e2e checks that it
    # did); every pair object it sent, the offline command writes too, byte for byte below.
    assert set(sent) <= set(written), "the node sent objects the offline command did not write"
    for r in run.received:
        (path,) = [out / w["file"] for w in summary["written"] if w["sop_instance_uid"] == r.uid]
        offline = dcmread(path)
        node_copy = dcmread(r.path)
        assert offline.SeriesInstanceUID == node_copy.SeriesInstanceUID
        assert offline.StudyInstanceUID == node_copy.StudyInstanceUID
        if "PixelData" in offline:
            assert offline.PixelData == node_copy.PixelData, f"{r.kind} pixels differ"
        if "ContentSequence" in offline:
            assert offline.ContentSequence == node_copy.ContentSequence, f"{r.kind} content differs"


def test_single_image_writes_seg_and_sr(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    pair = ps.session_pair(request)
    done = process(pair / "pre.dcm", "--out", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = sorted(
        w["kind"] for w in json.loads((tmp_path / "summary.json").read_text())["written"]
    )
    assert kinds == ["seg", "sr"]
    for w in json.loads((tmp_path / "summary.json").read_text())["written"]:
        assert dcmread(tmp_path / w["file"]).SOPInstanceUID == w["sop_instance_uid"]


def test_bad_inputs_give_clear_errors(tmp_path: Path, dx_factory) -> None:
    missing = process(tmp_path / "nope.dcm", "--out", tmp_path / "o1")
    assert missing.returncode == 1 and "input not found" in missing.stderr + missing.stdout
    assert "Traceback" not in missing.stderr

    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"not a dicom file at all" * 10)
    bad = process(garbage, "--out", tmp_path / "o2")
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr
    summary = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert summary["pre"]["not_analysable"] and summary["written"] == []

    chest = dx_factory(tmp_path / "chest.dcm", rows=600, columns=500, body_part="CHEST")
    refused = process(chest, "--out", tmp_path / "o3")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    summary = json.loads((tmp_path / "o3" / "summary.json").read_text())
    assert "body part" in summary["pre"]["not_analysable"] and summary["written"] == []
