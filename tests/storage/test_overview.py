"""``storage.overview``, ``hipnode status`` and the status page's HTML, on a real SQLite catalogue file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.cli import build_parser
from node.web.status_page import render_page
from storage.db import Base, make_engine, make_session_factory
from storage.models import (
    Delivery,
    DeliveryState,
    ImageClassification,
    Instance,
    Job,
    JobState,
    Pairing,
    Patient,
    Result,
    Series,
    Study,
    StudyState,
)
from storage.overview import overview

HOSTILE = "<script>alert('x')</script> & co"


def _instance(series: Series, uid: str, **kwargs: object) -> Instance:
    return Instance(sop_instance_uid=uid, sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", series=series,
                    transfer_syntax_uid="1.2.840.10008.1.2.1", path=f"objects/{uid}.dcm", sha256="0" * 64,
                    size_bytes=1000, modality="DX", **kwargs)


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    """One patient: a pre-op study, a post-op study paired with it, and a chest film refused."""
    engine = make_engine(f"sqlite:///{tmp_path / 'hipnode.sqlite3'}")
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as s:
        patient = Patient(patient_id="HIP-7", issuer_of_patient_id="CLINIC", patient_name="Secret^Name")
        pre_study = Study(study_instance_uid="1.1", patient=patient, study_date="20250101",
                          state=StudyState.COMPLETE, study_description="PELVIS AP")
        post_study = Study(study_instance_uid="1.2", patient=patient, study_date="20250601",
                           state=StudyState.COMPLETE, study_description=HOSTILE, calling_aet="PACS")
        s.add_all([pre_study, post_study])
        s.flush()
        pre_series = Series(series_instance_uid="1.1.1", study=pre_study)
        post_series = Series(series_instance_uid="1.2.1", study=post_study)
        pre = _instance(pre_series, "1.1.1.1")
        post = _instance(post_series, "1.2.1.1")
        chest = _instance(post_series, "1.2.1.2")
        ours = _instance(post_series, "1.2.1.9", derived_by_node=True)  # a result: not a received image
        s.add_all([pre, post, chest, ours])
        s.flush()
        s.add_all([
            ImageClassification(instance_pk=pre.id, analysable=True, right_state="native", left_state="native"),
            ImageClassification(instance_pk=post.id, analysable=True, right_state="implant", left_state="native"),
            ImageClassification(instance_pk=chest.id, analysable=False,
                                reason="no pelvis found in the image content (pelvis 0.0% of the image)"),
            Pairing(patient_pk=patient.id, side="right", pre_instance_pk=pre.id, post_instance_pk=post.id,
                    reason="most recent earlier native exam of the side"),
            Pairing(patient_pk=patient.id, side="left", pre_instance_pk=None, post_instance_pk=post.id,
                    reason="side not operated", superseded=False),
            Pairing(patient_pk=patient.id, side="right", pre_instance_pk=None, post_instance_pk=post.id,
                    reason="an earlier decision", superseded=True),
            Job(kind="analyze_study", key="a", study_pk=post_study.id, state=JobState.DONE, attempts=1),
            Job(kind="analyze_pair", key="b", study_pk=post_study.id, state=JobState.FAILED, attempts=3,
                fail_stage="align", fail_reason="too few inliers (7 < 12)"),
            Result(sop_instance_uid="9.1", sop_class_uid="x", kind="seg", study_instance_uid="1.2",
                   path="r/9.1.dcm", sha256="1" * 64),
            Result(sop_instance_uid="9.2", sop_class_uid="x", kind="sr", study_instance_uid="1.2",
                   path="r/9.2.dcm", sha256="2" * 64),
            Delivery(sop_instance_uid="9.1", path="r/9.1.dcm", destination="pacs", state=DeliveryState.DONE),
            Delivery(sop_instance_uid="9.2", path="r/9.2.dcm", destination="pacs", state=DeliveryState.DEAD,
                     attempts=8, last_error="0xA700 out of resources"),
        ])
        s.commit()
    engine.dispose()
    return tmp_path


def _view(store: Path, **kwargs: object) -> dict:
    engine = make_engine(f"sqlite:///{store / 'hipnode.sqlite3'}")
    try:
        with make_session_factory(engine)() as s:
            return overview(s, **kwargs)  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_the_overview_shows_every_stored_verdict_with_its_reason(store: Path) -> None:
    view = _view(store)
    totals = view["summary"]
    assert totals["studies"] == {"receiving": 0, "complete": 2, "reopened": 0}
    assert totals["images_received"] == 3 and totals["images_not_analysable"] == 1
    assert totals["jobs"] == {"queued": 0, "running": 0, "done": 1, "failed": 1}
    assert totals["deliveries"]["dead"] == 1 and totals["deliveries"]["done"] == 1
    post = next(s for s in view["studies"] if s["study_instance_uid"] == "1.2")
    assert post["patient_id"] == "HIP-7" and post["issuer_of_patient_id"] == "CLINIC"
    assert "Secret" not in json.dumps(view), "patient names stay out of the service view"
    images = {i["sop_instance_uid"]: i for i in post["images"]}
    assert set(images) == {"1.2.1.1", "1.2.1.2"}, "the node's own result objects are not received images"
    assert images["1.2.1.1"]["verdict"] == "analysed" and images["1.2.1.1"]["right"] == "implant"
    assert images["1.2.1.2"]["verdict"] == "not analysable"
    assert images["1.2.1.2"]["reason"].startswith("no pelvis found")
    pairings = {p["side"]: p for p in post["pairings"]}
    assert len(post["pairings"]) == 2, "superseded decisions are history, not shown"
    assert pairings["right"]["pre_study_instance_uid"] == "1.1" and pairings["right"]["pre_study_date"] == "20250101"
    assert pairings["left"]["pre_sop_instance_uid"] is None and pairings["left"]["reason"] == "side not operated"
    failed = next(j for j in post["jobs"] if j["state"] == "failed")
    assert (failed["fail_stage"], failed["fail_reason"]) == ("align", "too few inliers (7 < 12)")
    assert post["results"]["by_kind"] == {"seg": 1, "sr": 1}
    assert post["results"]["dead"][0]["last_error"] == "0xA700 out of resources"


def test_one_study_and_the_limit(store: Path) -> None:
    assert [s["study_instance_uid"] for s in _view(store, study_uid="1.1")["studies"]] == ["1.1"]
    assert len(_view(store, limit=1)["studies"]) == 1
    assert _view(store, study_uid="9.9.9")["studies"] == []


def test_the_page_escapes_what_came_from_outside(store: Path) -> None:
    page = render_page(_view(store), "HIPNODE")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert "too few inliers (7 &lt; 12)" in page and "hipnode outbox retry" in page
    assert "not a certified medical device" in page
    assert "Patient HIP-7 (CLINIC)" in page and "Secret" not in page


def status(store: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``hipnode status`` in-process (parser + run, as the console script does)."""
    parsed = build_parser(only="status").parse_args(["status", "--storage", str(store), *args])
    code = parsed._run(parsed)
    out, err = capsys.readouterr()
    return code, out, err


def test_status_command_prints_the_reasons(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = status(store, capsys)
    assert code == 0
    assert "studies: 0 receiving, 2 complete, 0 reopened" in out
    assert "image 1.2.1.2  not analysable: no pelvis found" in out
    assert "pairing right: pre-op 1.1.1.1 of 20250101 (most recent earlier native exam of the side)" in out
    assert "analyze_pair  failed  attempt 3/3 at align: too few inliers (7 < 12)" in out
    assert "dead delivery 2 to pacs after 8 attempts: 0xA700 out of resources (hipnode outbox retry 2)" in out


def test_status_command_json_and_one_study(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = status(store, capsys, "--json", "--study", "1.1")
    assert code == 0
    assert [s["study_instance_uid"] for s in json.loads(out)["studies"]] == ["1.1"]
    code, _, err = status(store, capsys, "--study", "9.9.9")
    assert code == 1 and "no study 9.9.9" in err


def test_status_command_without_a_catalogue_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = status(tmp_path / "nowhere", capsys)
    assert code == 2 and "no catalogue at" in err
    assert not (tmp_path / "nowhere").exists(), "a read-only command creates nothing"
