"""Shared pieces of the pipeline end-to-end tests and the pipeline benchmark.

* :func:`synth_pair`: one synthetic pre/post pair from ``hipnode synth`` (the real command).
* :class:`StoreSCP`: DCMTK ``storescp`` as the results destination (unique file names, so
  a duplicate delivery shows as a second file).
* :func:`pipeline_config`: a node config with short completion and outbox timers.
* :func:`send`: DCMTK ``storescu`` into the node, one association per call.
* Catalogue queries (jobs, results, deliveries) and SR readers that turn received
  SRs back into spec names and values.
* :func:`truth_deltas`: the pair's true deltas from the generator's ground truth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
from pydicom import dcmread
from sqlalchemy import select

from storage.models import Delivery, DeliveryState, Job, JobState, Result
from tests.conftest import REPO_ROOT, NodeProcess, free_port, require_tool, wait_for

SYNTH_SIZE = 1000
"""Image width for the tests (0.41 mm pixels). At 512 px the aligner's matcher finds too few
pelvic matches on some pairs (seed 7: 26 matches, refused); 1000 px is align's evaluation size."""
SYNTH_SEED = 7
DEST_AE = "PACS"

# Series numbers of the node's results (node.results._KIND_BY_SERIES_NUMBER).
KIND_BY_SOP_CLASS = {
    "1.2.840.10008.5.1.4.1.1.66.4": "seg",
    "1.2.840.10008.5.1.4.1.1.88.34": "sr",
    "1.2.840.10008.5.1.4.1.1.7": "sc",
}


def synth_pair(out: Path, seed: int = SYNTH_SEED, size: int = SYNTH_SIZE) -> Path:
    """Run ``hipnode synth`` once; returns the ``pair_000`` folder."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "node",
            "synth",
            "--out",
            str(out),
            "--pairs",
            "1",
            "--seed",
            str(seed),
            "--size",
            str(size),
        ],
        cwd=REPO_ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    pair = out / "pair_000"
    for name in ("pre.dcm", "post.dcm", "pre.json", "post.json", "pair.json"):
        assert (pair / name).is_file(), f"hipnode synth wrote no {name}"
    return pair


class StoreSCP:
    """DCMTK storescp on a free port, writing every received object under ``folder``."""

    def __init__(self, folder: Path, ae_title: str = DEST_AE) -> None:
        self.folder = folder
        self.ae_title = ae_title
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder.parent / f"{folder.name}-storescp.log"
        # storescp writes each object in place, so a listed file may still be half written; it
        # touches a marker here once the file is closed (--exec-on-reception), and only marked files count.
        self.marks = folder.parent / f"{folder.name}-complete"
        self.marks.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> StoreSCP:
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                [
                    require_tool("storescp"),
                    "-v",
                    "+uf",
                    "-aet",
                    self.ae_title,
                    "-od",
                    str(self.folder),
                    "--exec-on-reception",
                    f"touch {self.marks}/#f",
                    str(self.port),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TCP_NODELAY": "1"},
            )
        return self

    def files(self) -> list[Path]:
        """Received objects that storescp has finished writing."""
        done = {p.name for p in self.marks.iterdir()}
        return sorted(p for p in self.folder.iterdir() if p.is_file() and p.name in done)

    def received(self) -> dict[str, list[Path]]:
        """SOP Instance UID -> the files that carried it (more than one: a duplicate delivery)."""
        got: dict[str, list[Path]] = {}
        for path in self.files():
            ds = dcmread(path, stop_before_pixels=True)
            got.setdefault(str(ds.SOPInstanceUID), []).append(path)
        return got

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def pipeline_config(dest: StoreSCP, quiet_seconds: float = 1.5, workers: int = 1) -> dict[str, Any]:
    """A node that completes a study ``quiet_seconds`` after its last instance (one worker by default)."""
    return {
        "destinations": [
            {"name": "pacs", "ae_title": dest.ae_title, "host": "127.0.0.1", "port": dest.port}
        ],
        "completion": {"quiet_seconds": quiet_seconds, "early_on_expected_views": False},
        "outbox": {"poll_seconds": 0.1, "initial_backoff_seconds": 0.3, "max_backoff_seconds": 2.0},
        "timeouts": {"connection_seconds": 5},
        "workers": workers,
    }


def send(node: NodeProcess, *files: Path, calling_aet: str = DEST_AE) -> None:
    """storescu: one association, every file must be acknowledged with Success."""
    done = subprocess.run(
        [
            require_tool("storescu"),
            "-aet",
            calling_aet,
            "-aec",
            node.ae_title,
            "127.0.0.1",
            str(node.port),
            *map(str, files),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    assert done.returncode == 0, done.stderr + done.stdout


# --- Catalogue ------------------------------------------------------------------------------------


def jobs(node: NodeProcess) -> list[Job]:
    with node.session() as s:
        return list(s.scalars(select(Job).order_by(Job.id)))


def results(node: NodeProcess) -> list[Result]:
    with node.session() as s:
        return list(s.scalars(select(Result).order_by(Result.id)))


def deliveries(node: NodeProcess) -> list[Delivery]:
    with node.session() as s:
        return list(s.scalars(select(Delivery).order_by(Delivery.id)))


def settled(node: NodeProcess, min_jobs: int = 1) -> bool:
    """At least ``min_jobs`` jobs, none queued or running, every delivery finished.

    Count the studies' jobs only: an ``analyze_pair`` job is queued inside the
    ``analyze_study`` job that found the pair, so it exists before that job ends.
    """
    rows = jobs(node)
    if len(rows) < min_jobs or any(j.state in (JobState.QUEUED, JobState.RUNNING) for j in rows):
        return False
    return all(d.state in (DeliveryState.DONE, DeliveryState.DEAD) for d in deliveries(node))


def wait_settled(node: NodeProcess, min_jobs: int, timeout: float = 300.0) -> None:
    def check() -> bool:
        if node.proc is not None and node.proc.poll() is not None:
            raise AssertionError(f"node exited with {node.proc.returncode}:\n{node.log()[-4000:]}")
        return settled(node, min_jobs)

    try:
        wait_for(
            check,
            timeout=timeout,
            interval=0.2,
            msg=f"{min_jobs}+ jobs and their deliveries to finish",
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\njobs: {describe_jobs(node)}\nlog tail:\n{node.log()[-3000:]}"
        ) from None


def describe_jobs(node: NodeProcess) -> str:
    return "; ".join(
        f"#{j.id} {j.kind} {j.state.value} attempts={j.attempts} {j.fail_stage or ''} {j.fail_reason or ''}".strip()
        for j in jobs(node)
    )


def failed_jobs(node: NodeProcess) -> list[str]:
    return [
        f"{j.kind}: {j.fail_stage}: {j.fail_reason}"
        for j in jobs(node)
        if j.state == JobState.FAILED
    ]


# --- Reading the received results -----------------------------------------------------------------


@dataclass
class Received:
    """One received result: its file, dataset header and what it is."""

    path: Path
    ds: Any
    kind: str  # seg | sr | sr_pair | cdm_sc | overlay_sc

    @property
    def uid(self) -> str:
        return str(self.ds.SOPInstanceUID)


def classify(paths: list[Path]) -> list[Received]:
    """Tell the node's result kinds apart by their series number (node.results.result_kind)."""
    from node.results import result_kind

    out = []
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        out.append(Received(path, ds, result_kind(ds) or "unknown"))
    return out


def image_measurements(path: Path) -> dict[str, float]:
    """Spec name -> value of every measurement in a per-image TID 1500 SR."""
    sr = hd.sr.srread(path)
    groups = [
        *sr.content.get_planar_roi_measurement_groups(),
        *sr.content.get_image_measurement_groups(),
    ]
    values: dict[str, float] = {}
    for group in groups:
        for m in group.get_measurements():
            values[str(group.tracking_identifier)] = float(m.value)
    return values


def pair_deltas(path: Path) -> dict[str, float]:
    """Spec name -> value of the deltas in a pair SR."""
    from node.results.codes import LOCAL_NAMES

    sr = hd.sr.srread(path)
    values: dict[str, float] = {}
    for group in sr.content.get_image_measurement_groups():
        for m in group.get_measurements():
            base = LOCAL_NAMES[m.name.value]
            if base == "delta_leg_length_discrepancy":
                values[base] = float(m.value)
            else:
                side = m.finding_sites[0].laterality.meaning.lower()
                values[f"{base}_{side}"] = float(m.value)
    return values


def referenced_sources(ds: Any) -> set[str]:
    """SOP Instance UIDs in SourceImageSequence / ReferencedSeriesSequence / evidence."""
    uids: set[str] = set()
    for item in ds.get("SourceImageSequence", []):
        uids.add(str(item.ReferencedSOPInstanceUID))
    for series in ds.get("ReferencedSeriesSequence", []):
        for item in series.get("ReferencedInstanceSequence", []):
            uids.add(str(item.ReferencedSOPInstanceUID))
    for seq in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(seq, []):
            for series in study.ReferencedSeriesSequence:
                for item in series.ReferencedSOPSequence:
                    uids.add(str(item.ReferencedSOPInstanceUID))
    return uids


# --- Ground truth -------------------------------------------------------------------------------


def load_truth(pair: Path) -> dict[str, Any]:
    return {
        name: json.loads((pair / f"{name}.json").read_text()) for name in ("pre", "post", "pair")
    }


def truth_deltas(pair: Path) -> dict[str, float | None]:
    """The pair's physical deltas (``pair.json``): the post-op state seen with the pre-op pelvis pose.

    Not the true landmarks mapped through a homography fitted to the pelvic ring:
    once the pelvis turned out of plane between the films, that fit itself moves a
    hip centre by 2-3 mm (tests/bench/delta_accuracy.py, docs/align.md).
    """
    deltas = json.loads((pair / "pair.json").read_text())["delta_measurements"]
    assert deltas, f"{pair} has no physical delta truth"
    return deltas


def measurement_tolerance(name: str) -> float:
    """Issue ``analyze``'s accuracy targets (models/training/evaluate.py TARGETS) per measurement.

    Leg length, angles and joint space have their own targets; the other mm
    measurements are distances between landmarks, held to the landmark target.
    """
    from models.training.evaluate import TARGETS

    if name == "leg_length_discrepancy":
        return TARGETS["leg_length_discrepancy_mae_mm_max"]
    if name.startswith(("lateral_centre_edge_angle", "cup_inclination")):
        return TARGETS["angle_mae_deg_max"]
    if name.startswith("min_joint_space_width"):
        return TARGETS["min_joint_space_width_mae_mm_max"]
    return TARGETS["landmark_mean_radial_error_mm_max"]


# --- One node run shared by the end-to-end tests and the process-CLI test -------------------------


@dataclass
class PairRun:
    """A synthetic pair sent to a node (pre, then post) and what its destination received."""

    pair: Path
    node: NodeProcess
    dest: StoreSCP
    received: list[Received]
    web_port: int  # the node's status page (tests read /api/status)

    def of_kind(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.kind == kind]


_SESSION: dict[str, Any] = {}


def session_pair(request: Any) -> Path:
    """The synthetic pair, generated once per test session (``HIPNODE_TEST_PAIR``: reuse a folder)."""
    if "pair" not in _SESSION and os.environ.get("HIPNODE_TEST_PAIR"):
        _SESSION["pair"] = Path(os.environ["HIPNODE_TEST_PAIR"])
    if "pair" not in _SESSION:
        root = request.getfixturevalue("tmp_path_factory").mktemp("synth")
        _SESSION["pair"] = synth_pair(root)
    return _SESSION["pair"]


def session_pair_run(request: Any) -> PairRun:
    """Send the pair to a node once per session; the node stays up for later tests."""
    if "run" not in _SESSION:
        pair = session_pair(request)
        root = request.getfixturevalue("tmp_path_factory").mktemp("pair-run")
        dest = StoreSCP(root / "received").start()
        request.config.add_cleanup(dest.stop)
        web_port = free_port()
        node = NodeProcess(root / "node", config={**pipeline_config(dest), "web": {"enabled": True, "port": web_port}})
        request.config.add_cleanup(node.close)
        node.start()
        send(node, pair / "pre.dcm")
        send(node, pair / "post.dcm")
        wait_settled(node, min_jobs=2)
        _SESSION["run"] = PairRun(pair, node, dest, classify(dest.files()), web_port)
    return _SESSION["run"]
