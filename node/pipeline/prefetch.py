"""Analyse each image while its study is still receiving, so its study job finds the work done.

A study is complete only after its completion timer (2 s of quiet by default)
has run out, and until then the worker's cores are idle. The per-image work
does not depend on the rest of the study: an image's analysis, its SEG and SR,
and its matcher features depend on that image alone. So a worker lane takes
every newly received DX/CR image of a study still receiving, analyses it,
encodes its SEG and SR, keeps the film's matcher features in the feature store
when a pair job may need them, and holds the rest in this process's memory.
The study job takes it from here (:func:`take`) instead of running the models
and the encoders; the pair job reads the features from the store as before.
The objects sent are the same either way (the same computation on the same
file, only earlier; result UIDs derive from the inputs and model versions).

Work done here is work the study job would otherwise do, so nothing is computed
twice as long as the study job runs in this process: the node starts this lane
only with one worker process (the default). At most :data:`MAX_KEPT` images
are held (about 130 MB each at full size); beyond that the lane waits. It never
evicts work a study job may still take, only what none has taken for
:data:`UNCLAIMED_SECONDS` (a study that never completes). A prefetch that fails
is logged and forgotten: the study job then analyses the image itself and
reports whatever the problem is.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from node.imaging import load_radiograph
from node.jobs.worker import JobContext, wait_for_work
from node.pipeline import compute
from node.pipeline.features import FeatureStore
from node.pipeline.timing import stage_ms
from storage.filestore import FileStore
from storage.models import ImageClassification, Instance, Series, Study, StudyState, utcnow

log = logging.getLogger(__name__)

MAX_KEPT = 4
RECENT = dt.timedelta(minutes=30)  # older unclassified images are a backlog for their study jobs, not a prefetch
UNCLAIMED_SECONDS = RECENT.total_seconds()
MAX_TRIED = 10_000
TAKE_WAIT_SECONDS = 120.0  # the study job waits this long for a prefetch already under way


@dataclass(frozen=True)
class ImageKey:
    """An image as stored: a re-sent object with other content is another key."""

    instance_pk: int
    sha256: str


@dataclass(frozen=True)
class Prefetched:
    """An image analysed ahead of its study job, with its SEG and SR already encoded (None if not analysable)."""

    image: compute.AnalysedImage
    results: list[tuple[str, Dataset]] | None
    kept_at: float = field(default_factory=time.monotonic)


_lock = threading.Lock()
_kept: dict[ImageKey, Prefetched] = {}
_under_way: dict[ImageKey, threading.Event] = {}
_tried: set[ImageKey] = set()  # prefetched or failed: never twice in this process


def take(key: ImageKey, wait_seconds: float = TAKE_WAIT_SECONDS) -> Prefetched | None:
    """The image's prefetched analysis (removed from the store), or None if there is none.

    When the lane is analysing this very image, waiting for it is cheaper than
    running the same models a second time beside it.
    """
    with _lock:
        under_way = _under_way.get(key)
        _tried.add(key)  # the study job has it now: the lane must not start it as well
    if under_way is not None:
        under_way.wait(wait_seconds)
    with _lock:
        return _kept.pop(key, None)


def kept_count() -> int:
    with _lock:
        return len(_kept)


def drop_unclaimed(max_age_seconds: float = UNCLAIMED_SECONDS) -> int:
    """Drop analyses no study job took in time (a study that never completes: completion off, a crash).

    Returns how many were dropped; their study jobs, should they come, analyse the images themselves.
    """
    cutoff = time.monotonic() - max_age_seconds
    with _lock:
        stale = [key for key, kept in _kept.items() if kept.kept_at < cutoff]
        for key in stale:
            del _kept[key]
    if stale:
        log.warning("prefetched analyses dropped unclaimed", extra={"count": len(stale)})
    return len(stale)


def forget_all() -> None:
    """Drop every kept analysis and the memory of what was tried (tests)."""
    with _lock:
        _kept.clear()
        _tried.clear()


def _candidates(session_factory: sessionmaker, limit: int) -> list[tuple[ImageKey, str, str, int]]:
    """Unanalysed images of studies still receiving (or re-opened): (key, path, SOP Instance UID, patient pk)."""
    since = utcnow() - RECENT
    with session_factory() as session:
        rows = session.execute(
            select(Instance.id, Instance.sha256, Instance.path, Instance.sop_instance_uid, Study.patient_pk)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .outerjoin(ImageClassification, ImageClassification.instance_pk == Instance.id)
            .where(
                ImageClassification.id.is_(None),
                Study.state.in_((StudyState.RECEIVING, StudyState.REOPENED)),
                Instance.derived_by_node.is_(False),
                Instance.sop_class_uid.in_(compute.PROJECTION_SOP_CLASSES),
                Instance.received_at >= since,
            )
            .order_by(Instance.id)
        ).all()
    found = [(ImageKey(r[0], r[1]), r[2], r[3], r[4]) for r in rows]
    with _lock:
        return [c for c in found if c[0] not in _tried][:limit]


def _patient_has_pre_candidate(session_factory: sessionmaker, patient_pk: int, instance_pk: int) -> bool:
    """Whether another exam of the patient, as the pairing sees them, has a side a post-op could pair with."""
    from node.pairing.rules import DEFAULT_RULES
    from node.pairing.store import patient_exams

    with session_factory() as session:
        exams = patient_exams(session, patient_pk)
    return any(exam.key != instance_pk and DEFAULT_RULES.pre_state in exam.sides.values() for exam in exams)


def prefetch_one(ctx: JobContext, key: ImageKey, path: str, sop_instance_uid: str, patient_pk: int) -> bool:
    """Analyse one image now and keep it; also its matcher features where a pair may need them."""
    done = threading.Event()
    with _lock:
        if key in _tried:  # taken by its study job since the lane looked
            return False
        if len(_tried) > MAX_TRIED:  # the images tried long ago are classified or stale by now
            _tried.clear()
        _tried.add(key)
        _under_way[key] = done
    started = time.perf_counter()
    filestore = FileStore(ctx.storage_dir)
    try:
        image = compute.analyse(load_radiograph(filestore.absolute(path)))
        marks = {"analyse": time.perf_counter()}
        results = None
        if image.analysis.not_analysable is None:
            if compute.may_become_pre(image) or (
                compute.may_become_post(image)
                and _patient_has_pre_candidate(ctx.session_factory, patient_pk, key.instance_pk)
            ):
                compute.keep_features(image, FeatureStore(filestore.root))
                marks["features"] = time.perf_counter()
            results = compute.image_result_datasets(image)
            marks["encode"] = time.perf_counter()
        with _lock:
            _kept[key] = Prefetched(image, results)
    except Exception as exc:  # noqa: BLE001  (a prefetch only saves time; the study job reports the problem)
        log.warning("prefetch failed", extra={"sop_instance_uid": sop_instance_uid, "reason": f"{type(exc).__name__}: {exc}"})
        return False
    finally:
        with _lock:
            _under_way.pop(key, None)
        done.set()
    log.info("image prefetched", extra={
        "sop_instance_uid": sop_instance_uid, **stage_ms(started, marks),
        "not_analysable": image.analysis.not_analysable})
    return True


def prefetch_loop(ctx: JobContext, stop: Callable[[], bool]) -> None:
    """The worker's prefetch lane: analyse images of receiving studies until ``stop()``."""
    while not stop():
        drop_unclaimed()
        room = MAX_KEPT - kept_count()
        todo = _candidates(ctx.session_factory, room) if room > 0 else []
        if not todo:
            wait_for_work()
            continue
        for key, path, sop_instance_uid, patient_pk in todo:
            if stop():
                return
            prefetch_one(ctx, key, path, sop_instance_uid, patient_pk)
