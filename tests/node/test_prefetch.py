"""The worker's prefetch lane: images of a study still receiving are analysed before the study completes.

Real parts throughout: the synthetic pair's films ingested by the node's own
:class:`Ingestor` into a real SQLite catalogue and file store, the committed
models, and the study job's own ``run``. What must hold: only images of
receiving studies are taken, nothing is computed twice, and the study job's
results are the very objects it would have made itself.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import select, update

from node.config import Settings
from node.imaging import load_radiograph
from node.jobs.queue import claim_next, enqueue
from node.jobs.worker import JobContext
from node.network.ingest import Ingestor
from node.network.status import StoreStatus
from node.pipeline import compute, prefetch, study_stage
from storage.db import make_engine, make_session_factory
from storage.filestore import FileStore
from storage.migrate import upgrade_to_head
from storage.models import ImageClassification, Instance, Result, Series, Study, StudyState
from tests.node import pipeline_support as ps


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Path:
    return ps.session_pair(request)


@pytest.fixture
def ctx(tmp_path: Path) -> JobContext:
    engine = make_engine(f"sqlite:///{tmp_path / 'hipnode.sqlite3'}")
    upgrade_to_head(engine)
    prefetch.forget_all()
    yield JobContext(
        settings=Settings(storage_dir=tmp_path), session_factory=make_session_factory(engine),
        storage_dir=tmp_path, worker="test-worker",
    )
    prefetch.forget_all()
    engine.dispose()


def _ingest(ctx: JobContext, path: Path) -> Instance:
    """Store ``path`` as the SCP does (no completion service: its study stays receiving)."""
    filestore = FileStore(ctx.storage_dir)
    filestore.prepare()
    buffer = filestore.new_buffer()
    buffer.write(path.read_bytes())
    buffer.finish()
    buffer.close()
    ds = dcmread(path, stop_before_pixels=True)
    outcome = Ingestor(filestore, ctx.session_factory).ingest(
        Path(buffer.name), sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
        calling_aet=ps.DEST_AE,
    )
    assert outcome.status == StoreStatus.SUCCESS, outcome.reason
    with ctx.session_factory() as session:
        return session.scalar(select(Instance).where(Instance.sop_instance_uid == str(ds.SOPInstanceUID)))


def _written_and_read(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


def _set_study_state(ctx: JobContext, instance: Instance, state: StudyState) -> None:
    with ctx.session_factory() as session:
        study_pk = session.get(Series, instance.series_pk).study_pk
        session.execute(update(Study).where(Study.id == study_pk).values(state=state))
        session.commit()


def test_only_unanalysed_images_of_receiving_studies_are_candidates(ctx: JobContext, pair: Path) -> None:
    post = _ingest(ctx, pair / "post.dcm")
    assert [c[0] for c in prefetch._candidates(ctx.session_factory, 4)] == [prefetch.ImageKey(post.id, post.sha256)]
    assert prefetch._candidates(ctx.session_factory, 0) == []  # no room: nothing taken
    _set_study_state(ctx, post, StudyState.COMPLETE)  # its study job does the work now
    assert prefetch._candidates(ctx.session_factory, 4) == []
    _set_study_state(ctx, post, StudyState.REOPENED)  # a late instance re-opened it
    assert len(prefetch._candidates(ctx.session_factory, 4)) == 1
    with ctx.session_factory() as session:  # analysed already (an earlier completion)
        session.add(ImageClassification(instance_pk=post.id, analysable=True))
        session.commit()
    assert prefetch._candidates(ctx.session_factory, 4) == []


def test_the_study_job_sends_what_it_would_have_made_itself(
    ctx: JobContext, pair: Path, caplog: pytest.LogCaptureFixture
) -> None:
    post = _ingest(ctx, pair / "post.dcm")
    ((key, path, uid, patient_pk),) = prefetch._candidates(ctx.session_factory, 4)
    assert prefetch.prefetch_one(ctx, key, path, uid, patient_pk)
    assert prefetch.kept_count() == 1
    assert not prefetch.prefetch_one(ctx, key, path, uid, patient_pk)  # never twice

    _set_study_state(ctx, post, StudyState.COMPLETE)
    with ctx.session_factory() as session:
        study_pk = session.get(Series, post.series_pk).study_pk
        enqueue(session, "analyze_study", "analyze_study:test", study_pk=study_pk)
        session.commit()
    job = claim_next(ctx.session_factory, ctx.worker, ("analyze_study",))
    caplog.set_level(logging.INFO, logger="node.pipeline.study_stage")
    study_stage.run(job, ctx)
    assert prefetch.kept_count() == 0
    (line,) = [r for r in caplog.records if r.getMessage() == "image analysed"]
    assert hasattr(line, "prefetched_ms") and not hasattr(line, "analyse_ms")  # the models did not run again

    expected = compute.image_result_datasets(
        compute.analyse(load_radiograph(FileStore(ctx.storage_dir).absolute(post.path))))
    with ctx.session_factory() as session:
        stored = {r.sop_instance_uid: r for r in session.scalars(select(Result))}
    assert set(stored) == {str(ds.SOPInstanceUID) for _kind, ds in expected}
    for kind, ds in expected:
        sent = dcmread(FileStore(ctx.storage_dir).absolute(stored[str(ds.SOPInstanceUID)].path))
        assert stored[str(ds.SOPInstanceUID)].kind == kind
        if kind == "seg":
            assert sent.PixelData == ds.PixelData
            assert [s.SegmentLabel for s in sent.SegmentSequence] == [s.SegmentLabel for s in ds.SegmentSequence]
        else:  # read back the same way, so both carry the values as parsed from a file
            assert sent.ContentSequence == _written_and_read(ds).ContentSequence


def test_the_study_job_waits_for_a_prefetch_under_way(ctx: JobContext, pair: Path) -> None:
    _ingest(ctx, pair / "post.dcm")
    ((key, path, uid, patient_pk),) = prefetch._candidates(ctx.session_factory, 4)
    lane = threading.Thread(target=prefetch.prefetch_one, args=(ctx, key, path, uid, patient_pk))
    lane.start()
    deadline = time.monotonic() + 10
    while key not in prefetch._under_way and lane.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert key in prefetch._under_way, "the prefetch should be under way"
    kept = prefetch.take(key)  # waits rather than running the models beside the lane
    lane.join()
    assert kept is not None and kept.image.analysis.not_analysable is None
    assert {kind for kind, _ds in kept.results} == {"seg", "sr"}
    assert prefetch.take(key, wait_seconds=0) is None  # taken once


def test_an_image_taken_by_its_study_job_is_not_prefetched(ctx: JobContext, pair: Path) -> None:
    _ingest(ctx, pair / "post.dcm")
    ((key, path, uid, patient_pk),) = prefetch._candidates(ctx.session_factory, 4)
    assert prefetch.take(key, wait_seconds=0) is None  # the study job got there first and analyses it itself
    assert not prefetch.prefetch_one(ctx, key, path, uid, patient_pk)
    assert prefetch._candidates(ctx.session_factory, 4) == []


def test_a_failed_prefetch_is_logged_and_left_to_the_study_job(
    ctx: JobContext, pair: Path, caplog: pytest.LogCaptureFixture
) -> None:
    post = _ingest(ctx, pair / "post.dcm")
    FileStore(ctx.storage_dir).absolute(post.path).write_bytes(b"not DICOM any more")
    ((key, path, uid, patient_pk),) = prefetch._candidates(ctx.session_factory, 4)
    caplog.set_level(logging.WARNING, logger="node.pipeline.prefetch")
    assert not prefetch.prefetch_one(ctx, key, path, uid, patient_pk)
    assert prefetch.take(key, wait_seconds=0) is None
    (warning,) = [r for r in caplog.records if r.getMessage() == "prefetch failed"]
    assert "UnreadableImage" in warning.reason


def test_analyses_no_study_job_takes_are_dropped_in_time(ctx: JobContext, pair: Path) -> None:
    _ingest(ctx, pair / "post.dcm")
    ((key, path, uid, patient_pk),) = prefetch._candidates(ctx.session_factory, 4)
    assert prefetch.prefetch_one(ctx, key, path, uid, patient_pk)
    assert prefetch.drop_unclaimed(max_age_seconds=3600) == 0 and prefetch.kept_count() == 1
    assert prefetch.drop_unclaimed(max_age_seconds=0) == 1 and prefetch.kept_count() == 0
    assert prefetch.take(key, wait_seconds=0) is None


def test_a_post_op_film_gets_its_features_only_when_the_patient_has_a_pre_op(ctx: JobContext, pair: Path) -> None:
    from node.pairing.rules import DEFAULT_RULES

    post = _ingest(ctx, pair / "post.dcm")
    ((_key, _path, _uid, patient_pk),) = prefetch._candidates(ctx.session_factory, 4)
    assert not prefetch._patient_has_pre_candidate(ctx.session_factory, patient_pk, post.id)
    pre = _ingest(ctx, pair / "pre.dcm")
    with ctx.session_factory() as session:
        session.add(ImageClassification(instance_pk=pre.id, analysable=True, right_state=DEFAULT_RULES.pre_state))
        session.commit()
    assert prefetch._patient_has_pre_candidate(ctx.session_factory, patient_pk, post.id)
    assert not prefetch._patient_has_pre_candidate(ctx.session_factory, patient_pk, pre.id)  # not itself
