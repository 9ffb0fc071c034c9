"""Issue 6 end to end: storescu -> ``python -m node serve`` -> analysis jobs -> DCMTK storescp.

A synthetic pre-op and post-op study of one patient (``hipnode synth``) go to a real
node over real associations; its worker analyses, pairs and aligns them and the
outbox delivers SEG, SR, pair SR, colour difference map and overlay to storescp.
The structural checks (objects arrive once, valid, referenced, in the right study)
are kept apart from the accuracy checks, which depend on the trained weights.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import select

from node.config import Settings
from storage.models import (
    ImageClassification,
    Instance,
    Job,
    JobEvent,
    JobState,
    Pairing,
    Result,
    Study,
)
from tests.conftest import NodeProcess, wait_for
from tests.factories import write_dx
from tests.node import pipeline_support as ps
from tests.node.results_validate import dcentvfy, dciodvfy, pixelmed_sr_many, require_tools

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(request: pytest.FixtureRequest) -> ps.PairRun:
    return ps.session_pair_run(request)


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest) -> Path:
    return ps.session_pair(request)


def _sources(pair: Path) -> dict[str, object]:
    return {
        role: dcmread(pair / f"{role}.dcm", stop_before_pixels=True) for role in ("pre", "post")
    }


def _classification(run: ps.PairRun) -> str:
    """What the node decided per image and per side (for failure messages)."""
    with run.node.session() as s:
        rows = s.execute(
            select(Instance.sop_instance_uid, ImageClassification).join(
                ImageClassification, ImageClassification.instance_pk == Instance.id
            )
        ).all()
        pairings = list(s.scalars(select(Pairing)))
    images = "; ".join(
        f"{uid[-12:]}: analysable={c.analysable} right={c.right_state} "
        f"left={c.left_state} {c.reason or ''}"
        for uid, c in rows
    )
    decisions = "; ".join(
        f"{p.side}: pre={p.pre_instance_pk} post={p.post_instance_pk} ({p.reason})"
        for p in pairings
    )
    return f"classification: {images}\npairing: {decisions}\njobs: {ps.describe_jobs(run.node)}"


def test_worker_warmed_every_model_before_its_first_job(run: ps.PairRun) -> None:
    """A worker that cannot warm a model pays ~1 s of session set-up inside its first study job."""
    log = run.node.log()
    assert "models warmed up" in log, log[-2000:]
    assert "model warm-up failed" not in log
    # Below the receivers' priority, so analysis takes only the CPU receiving leaves (worker_niceness).
    (pid,) = {int(m) for m in re.findall(r"worker started worker=worker-0-pid(\d+)", log)}
    niceness = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    assert niceness == Settings.model_fields["worker_niceness"].default > 0


def test_image_results_arrive_once_and_referenced(run: ps.PairRun) -> None:
    """Per analysed image one SEG and one SR, in its study, own series, exactly once."""
    assert not [
        j for j in ps.jobs(run.node) if j.kind == "analyze_study" and j.state != JobState.DONE
    ], _classification(run)
    # Exactly once at the destination, and exactly what the catalogue holds.
    assert all(len(paths) == 1 for paths in run.dest.received().values())
    assert {r.uid for r in run.received} == {r.sop_instance_uid for r in ps.results(run.node)}

    src = _sources(run.pair)
    source_series = {str(ds.SeriesInstanceUID) for ds in src.values()}
    for role, ds in src.items():
        own = [
            r
            for r in run.received
            if r.kind in ("seg", "sr") and str(ds.SOPInstanceUID) in ps.referenced_sources(r.ds)
        ]
        assert sorted(r.kind for r in own) == ["seg", "sr"], (
            f"{role}: {[(r.kind, r.path.name) for r in own]}"
        )
        for r in own:
            assert r.ds.StudyInstanceUID == ds.StudyInstanceUID
    for r in run.received:
        assert str(r.ds.SeriesInstanceUID) not in source_series, (
            f"{r.kind} must have its own series"
        )
        assert r.ds.PatientID == src["pre"].PatientID
        assert r.ds.SpecificCharacterSet == src["pre"].SpecificCharacterSet
    seg_series = {str(r.ds.SeriesInstanceUID) for r in run.of_kind("seg")}
    sr_series = {str(r.ds.SeriesInstanceUID) for r in run.of_kind("sr")}
    assert not seg_series & sr_series


def test_pair_results_arrive_and_reference_both_exams(run: ps.PairRun) -> None:
    """The pair (pre-op native, post-op with an arthroplasty): pair SR, colour map SC, overlay SC.

    Needs the segmentation to see the implant on the operated side: the message
    shows the node's classification and pairing decisions when it does not.
    """
    kinds = Counter(r.kind for r in run.received)
    assert kinds == {"seg": 2, "sr": 2, "sr_pair": 1, "cdm_sc": 1, "overlay_sc": 1}, (
        f"{dict(kinds)}\n{_classification(run)}"
    )
    assert ps.failed_jobs(run.node) == [], _classification(run)
    src = _sources(run.pair)
    pre, post = str(src["pre"].SOPInstanceUID), str(src["post"].SOPInstanceUID)
    for r in run.of_kind("sr_pair") + run.of_kind("cdm_sc") + run.of_kind("overlay_sc"):
        assert {pre, post} <= ps.referenced_sources(r.ds), f"{r.kind} must reference both exams"
        assert r.ds.StudyInstanceUID == src["post"].StudyInstanceUID, (
            f"{r.kind} belongs in the post-op study"
        )
    with run.node.session() as s:
        paired = [
            p
            for p in s.scalars(select(Pairing).where(Pairing.superseded.is_(False)))
            if p.pre_instance_pk is not None
        ]
    post_truth = ps.load_truth(run.pair)["post"]["landmarks"]
    operated = sorted(
        side for side in ("right", "left") if post_truth.get(f"cup_rim_lateral_{side}") is not None
    )
    assert sorted(p.side for p in paired) == operated, _classification(run)


def _status(run: ps.PairRun, study_uid: str) -> dict:
    """The node's ``/api/status`` for one study (the page an operator reads)."""
    url = f"http://127.0.0.1:{run.web_port}/api/status?study={study_uid}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_status_page_shows_the_pair_and_its_deliveries(run: ps.PairRun) -> None:
    """What the node made of the pair, as the status page shows it: verdicts, pairing, jobs, deliveries."""
    src = _sources(run.pair)
    (study,) = _status(run, str(src["post"].StudyInstanceUID))["studies"]
    (image,) = study["images"]
    assert image["sop_instance_uid"] == src["post"].SOPInstanceUID and image["verdict"] == "analysed"
    operated = [p for p in study["pairings"] if p["pre_sop_instance_uid"] is not None]
    assert operated and {p["pre_study_instance_uid"] for p in operated} == {str(src["pre"].StudyInstanceUID)}
    assert all(p["reason"] for p in study["pairings"])
    assert {j["kind"]: j["state"] for j in study["jobs"]} == {"analyze_study": "done", "analyze_pair": "done"}
    results = study["results"]
    assert results["by_kind"] == {"cdm_sc": 1, "overlay_sc": 1, "seg": 1, "sr": 1, "sr_pair": 1}
    assert results["deliveries"] == {"done": 5} and results["dead"] == []


def test_received_objects_pass_the_validators(run: ps.PairRun) -> None:
    require_tools()
    assert len(run.received) >= 4, f"{len(run.received)} objects received\n{_classification(run)}"
    for r in run.received:
        verdict = dciodvfy(r.path)
        assert verdict.errors == [], f"{r.kind} {r.path.name}:\n{verdict.output}"
    for role in ("pre", "post"):
        source = run.pair / f"{role}.dcm"
        study = dcmread(source, stop_before_pixels=True).StudyInstanceUID
        files = [source] + [r.path for r in run.received if r.ds.StudyInstanceUID == study]
        verdict = dcentvfy(files)
        assert verdict.errors == [], f"{role} study:\n{verdict.output}"
    srs = [r.path for r in run.received if r.kind in ("sr", "sr_pair")]
    for path, verdict in pixelmed_sr_many(srs).items():
        assert "Found Root Template TID_1500" in verdict.output, verdict.output
        assert verdict.errors == [], f"{path.name}:\n{verdict.output}"


# Accuracy, not plumbing: the committed reference weights miss issue 4's targets on
# held-out anatomy (landmarks 1.70 mm mean, leg length 5.9 mm MAE; docs/models.md). On this
# pair (seed 7, pelvic tilt 8.7 deg apart) the deltas' hip centres and offset are within
# 1 mm of the physical truth, but the leg-length delta is 4.0 mm off (post-op leg length
# alone is 2.3 mm off: the tuberosities and lesser trochanters of issue 4; docs/align.md,
# tests/bench/delta_accuracy.py). Strict: the day the models meet the targets these tests
# XPASS, fail the suite, and the markers must go.
MODEL_ACCURACY = pytest.mark.xfail(
    strict=True,
    reason="model accuracy below issue 4's targets on held-out anatomy (leg length); see docs/models.md",
)


@MODEL_ACCURACY
def test_measurements_within_analyze_tolerances(run: ps.PairRun) -> None:
    """Every measurement the generator knows, as received in the image SRs, within issue 4's targets."""
    truth = ps.load_truth(run.pair)
    src = _sources(run.pair)
    errors: list[str] = []
    compared = 0
    for role in ("pre", "post"):
        uid = str(src[role].SOPInstanceUID)
        (sr,) = [r for r in run.of_kind("sr") if uid in ps.referenced_sources(r.ds)]
        measured = ps.image_measurements(sr.path)
        for name, true in truth[role]["measurements"].items():
            if true is None:
                continue
            if name not in measured:
                errors.append(f"{role} {name}: missing (truth {true:.2f})")
                continue
            compared += 1
            error, tolerance = abs(measured[name] - true), ps.measurement_tolerance(name)
            if error > tolerance:
                errors.append(
                    f"{role} {name}: {measured[name]:.2f} vs truth {true:.2f} (|err| {error:.2f} > {tolerance})"
                )
    assert compared > 0
    assert errors == [], "\n".join(errors)


@MODEL_ACCURACY
def test_pair_deltas_within_2_mm_of_truth(run: ps.PairRun) -> None:
    pair_srs = run.of_kind("sr_pair")
    assert len(pair_srs) == 1, f"{len(pair_srs)} pair SRs received\n{_classification(run)}"
    measured = ps.pair_deltas(pair_srs[0].path)
    truth = ps.truth_deltas(run.pair)
    assert "delta_leg_length_discrepancy" in measured, measured
    errors = [
        f"{name}: {value:.2f} vs truth {truth[name]:.2f}"
        for name, value in measured.items()
        if truth.get(name) is None or abs(value - truth[name]) > 2.0
    ]
    assert errors == [], "\n".join(errors)


def test_resent_study_creates_no_new_results(run: ps.PairRun) -> None:
    node = run.node
    before_results = [(r.sop_instance_uid, r.sha256) for r in ps.results(node)]
    before_files = len(run.dest.files())
    before_jobs = [(j.id, j.state) for j in ps.jobs(node)]
    before_deliveries = len(ps.deliveries(node))
    log_offset = len(node.log())
    ps.send(node, run.pair / "pre.dcm", run.pair / "post.dcm")
    wait_for(
        lambda: node.log().count("duplicate=True", log_offset) >= 2,
        timeout=30,
        msg="both duplicates logged",
    )
    # Past the completion timer and a few outbox polls: whatever a re-send would start, has.
    time.sleep(ps.pipeline_config(run.dest)["completion"]["quiet_seconds"] + 3.0)
    ps.wait_settled(node, len(before_jobs))
    assert [(j.id, j.state) for j in ps.jobs(node)] == before_jobs
    assert [(r.sop_instance_uid, r.sha256) for r in ps.results(node)] == before_results
    assert len(ps.deliveries(node)) == before_deliveries
    assert len(run.dest.files()) == before_files
    assert all(len(paths) == 1 for paths in run.dest.received().values())


def test_not_analysable_study_gets_a_visible_reason(run: ps.PairRun, tmp_path: Path) -> None:
    node = run.node
    chest = write_dx(
        tmp_path / "chest.dcm",
        rows=600,
        columns=500,
        patient_id="CHEST01",
        body_part="CHEST",
        study_uid=generate_uid(),
    )
    study_uid = str(dcmread(chest, stop_before_pixels=True).StudyInstanceUID)
    ps.send(node, chest)

    def failed_job() -> Job | None:
        with node.session() as s:
            study = s.scalar(select(Study).where(Study.study_instance_uid == study_uid))
            if study is None:
                return None
            return s.scalar(
                select(Job).where(Job.study_pk == study.id, Job.state == JobState.FAILED)
            )

    job = wait_for(failed_job, timeout=120, interval=0.2, msg="the chest study's job to fail")
    assert (
        job.fail_stage == "classify"
        and "body part" in job.fail_reason
        and "CHEST" in job.fail_reason
    )
    with node.session() as s:
        instance = s.scalar(select(Instance).where(Instance.sop_instance_uid == _sop(chest)))
        row = s.scalar(
            select(ImageClassification).where(ImageClassification.instance_pk == instance.id)
        )
        events = [e.detail for e in s.scalars(select(JobEvent).where(JobEvent.job_pk == job.id))]
        assert s.scalar(select(Result).where(Result.study_instance_uid == study_uid)) is None
    assert row is not None and not row.analysable and "body part" in row.reason
    assert any("CHEST" in (d or "") for d in events)
    log = node.log()
    assert "image not analysable" in log and _sop(chest) in log
    (shown,) = _status(run, study_uid)["studies"]
    assert shown["images"][0]["verdict"] == "not analysable" and "CHEST" in shown["images"][0]["reason"]
    assert shown["jobs"][0]["state"] == "failed" and shown["jobs"][0]["fail_stage"] == "classify"


def _sop(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_preop_arriving_after_postop_produces_the_pair(
    run: ps.PairRun, pair: Path, tmp_path: Path
) -> None:
    dest = ps.StoreSCP(tmp_path / "received").start()
    node = NodeProcess(tmp_path / "node", config=ps.pipeline_config(dest))
    try:
        node.start()
        ps.send(node, pair / "post.dcm")
        ps.wait_settled(node, min_jobs=1)
        with node.session() as s:
            decisions = list(s.scalars(select(Pairing)))
        assert decisions and all(d.pre_instance_pk is None for d in decisions), (
            "post-op alone has no partner"
        )
        assert all(d.reason for d in decisions)
        single = ps.classify(dest.files())
        assert Counter(r.kind for r in single) == {"seg": 1, "sr": 1}, (
            "a study with no partner gets its own results"
        )

        ps.send(node, pair / "pre.dcm")
        ps.wait_settled(node, min_jobs=2)  # a pair job is queued before its study job ends
        assert ps.failed_jobs(node) == [], ps.describe_jobs(node)
        # The worker was warm when the pre-op came: it analysed the film inside the completion
        # timer (node.pipeline.prefetch), and the study job took that instead of running the models.
        pre_uid, log = _sop(pair / "pre.dcm"), node.log()
        assert f"image prefetched sop_instance_uid={pre_uid}" in log, log[-3000:]
        assert re.search(rf"image analysed job_id=\d+ sop_instance_uid={re.escape(pre_uid)} ms=\d+ prefetched_ms=", log)
        # Arrival order changes nothing: the objects of the in-order run, no more, no less.
        assert set(dest.received()) == {r.uid for r in run.received}
        with node.session() as s:
            current = list(s.scalars(select(Pairing).where(Pairing.superseded.is_(False))))
            superseded = list(s.scalars(select(Pairing).where(Pairing.superseded.is_(True))))
        paired = [d for d in current if d.pre_instance_pk is not None]
        assert paired and superseded, "the late pre-op must replace the no-partner decision"
        assert all("most recent earlier exam" in d.reason for d in paired)
        kinds = Counter(r.kind for r in ps.classify(dest.files()))
        assert kinds == {"seg": 2, "sr": 2, "sr_pair": 1, "cdm_sc": 1, "overlay_sc": 1}
    finally:
        node.close()
        dest.stop()


def test_kill_9_mid_job_resumes_after_restart(run: ps.PairRun, pair: Path, tmp_path: Path) -> None:
    dest = ps.StoreSCP(tmp_path / "received").start()
    node = NodeProcess(tmp_path / "node", config=ps.pipeline_config(dest, quiet_seconds=0.5))
    try:
        node.start()
        ps.send(node, pair / "pre.dcm", pair / "post.dcm")  # one association, both studies

        def running() -> list[Job]:
            return [j for j in ps.jobs(node) if j.state == JobState.RUNNING]

        wait_for(running, timeout=120, interval=0.02, msg="a job to start")
        workers = _workers(node)
        node.kill()
        interrupted = running()
        assert workers and interrupted, "the job finished before the kill; nothing was interrupted"
        # An orphaned worker would finish the job behind the restarted node's back.
        wait_for(
            lambda: not any(_alive(w) for w in workers),
            timeout=10,
            msg="workers to die with the node",
        )

        node.start()
        ps.wait_settled(node, min_jobs=2)  # a pair job is queued before its study job ends
        assert ps.failed_jobs(node) == [], ps.describe_jobs(node)
        with node.session() as s:
            for job in interrupted:
                events = [
                    e.detail or ""
                    for e in s.scalars(select(JobEvent).where(JobEvent.job_pk == job.id))
                ]
                assert any("recovered after restart" in e for e in events), events
                assert s.get(Job, job.id).state == JobState.DONE
        assert "requeued interrupted jobs" in node.log()
        received = dest.received()
        assert set(received) == {r.sop_instance_uid for r in ps.results(node)}
        # Exactly what the uninterrupted node sent for the same images (deterministic UIDs).
        assert set(received) == {r.uid for r in run.received}
    finally:
        node.close()
        dest.stop()


def _workers(node: NodeProcess) -> list[int]:
    """Process ids of the node's analysis workers (multiprocessing spawn children)."""
    pid = node.proc.pid
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [c for c in children if "spawn_main" in _cmdline(c)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
