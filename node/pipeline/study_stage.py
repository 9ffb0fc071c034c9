"""Job ``analyze_study``: classify and analyse each image of a completed study.

For every DX/CR image the study received (never the node's own results): read
it, analyse it, record the classification (analysable or the reason not, and
native/implant per side) and keep the analysis. Then re-run pairing for the
patient and queue an ``analyze_pair`` job for every new pairing that has a
partner, and only then write each image's SEG and SR and queue them for the
study's destinations: the pair job, the longest step, starts while they encode.
With no pair to align, keep the matcher features of each film that may become
a pre-op (:mod:`node.pipeline.features`), for its future pair job.
A study with no analysable image fails permanently with the reasons, visible
in the job row, its events and the log.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select

from models.algorithms.results import ImageAnalysis
from models.inference.runtime import ModelUnavailable
from node.imaging import UnreadableImage, load_radiograph
from node.jobs.queue import PermanentJobError, enqueue
from node.jobs.worker import JobContext, notify_queued, notify_results
from node.pairing.store import update_pairings
from node.pipeline import compute, prefetch
from node.pipeline.artifacts import artifact_path, save_artifacts
from node.pipeline.features import FeatureStore
from node.pipeline.result_store import destinations_for, store_results
from node.pipeline.timing import stage_ms
from storage.filestore import FileStore
from storage.models import ImageClassification, Instance, Job, Series, Study

log = logging.getLogger(__name__)


def _record(session, instance: Instance, analysis: ImageAnalysis | None, reason: str | None,
            artifacts: str | None) -> ImageClassification:
    row = session.scalar(select(ImageClassification).where(ImageClassification.instance_pk == instance.id))
    if row is None:
        row = ImageClassification(instance_pk=instance.id)
        session.add(row)
    states = compute.side_states(analysis) if analysis is not None and reason is None else {}
    row.analysable = reason is None
    row.reason = reason
    row.right_state = states.get("right")
    row.left_state = states.get("left")
    row.analysis = None if analysis is None else analysis.to_json()
    row.artifacts_path = artifacts
    row.model_versions = None if analysis is None else {a.name: a.version for a in analysis.algorithms}
    return row


def pair_job_key(pre_sop: str, post_sop: str, analysis_versions: dict[str, str] | None) -> str:
    versions = ",".join(f"{k}={v}" for k, v in sorted((analysis_versions or {}).items()))
    return f"analyze_pair:{pre_sop}:{post_sop}:{versions}"


def run(job: Job, ctx: JobContext) -> str:
    filestore = FileStore(ctx.storage_dir)
    with ctx.session_factory() as session:
        study = session.get(Study, job.study_pk)
        if study is None:
            raise PermanentJobError("select", f"study {job.study_pk} is not in the catalogue")
        study_uid, calling_aet, patient_pk = study.study_instance_uid, study.calling_aet, study.patient_pk
        instances = session.scalars(
            select(Instance).join(Series).where(
                Series.study_pk == study.id,
                Instance.derived_by_node.is_(False),
                Instance.sop_class_uid.in_(compute.PROJECTION_SOP_CLASSES),
            ).order_by(Instance.instance_number, Instance.id)
        ).all()
    if not instances:
        raise PermanentJobError("select", f"study {study_uid} has no DX or CR image to analyse")
    destinations = destinations_for(ctx.settings, calling_aet)
    reasons: list[str] = []
    # each with its SEG and SR when the prefetch lane encoded them, its start and its stage marks
    analysed: list[tuple[compute.AnalysedImage, list | None, float, dict[str, float]]] = []
    for instance in instances:
        started = time.perf_counter()
        stages: dict[str, float] = {}
        encoded = None
        try:
            kept = prefetch.take(prefetch.ImageKey(instance.id, instance.sha256))
            if kept is not None:
                image, encoded = kept.image, kept.results
                stages["prefetched"] = time.perf_counter()
            else:
                radiograph = load_radiograph(filestore.absolute(instance.path))
                stages["read"] = time.perf_counter()
                image = compute.analyse(radiograph)
                stages["analyse"] = time.perf_counter()
            reason = image.analysis.not_analysable
        except UnreadableImage as exc:
            image, reason = None, str(exc)
        except ModelUnavailable as exc:  # an operator must install weights: retrying cannot help
            raise PermanentJobError("analyze", f"model weights unavailable: {exc}") from exc
        with ctx.session_factory() as session:
            instance = session.get(Instance, instance.id)
            if reason is not None:
                _record(session, instance, None if image is None else image.analysis, reason, None)
                session.commit()
                reasons.append(f"{instance.sop_instance_uid}: {reason}")
                log.warning("image not analysable", extra={
                    "job_id": job.id, "sop_instance_uid": instance.sop_instance_uid, "reason": reason})
                continue
            relative = artifact_path(instance.sop_instance_uid)
            save_artifacts(filestore.root, relative, image.analysis.masks, image.pelvis_probability)
            _record(session, instance, image.analysis, None, relative)
            session.commit()
            stages["record"] = time.perf_counter()
        analysed.append((image, encoded, started, stages))
    if not analysed:
        raise PermanentJobError("classify", "no analysable image: " + "; ".join(reasons))
    # Pairing needs only the classifications just committed: queue the pair jobs before
    # encoding, so the worker's pair lane aligns while this lane encodes.
    pairing_started = time.perf_counter()
    pair_jobs = _queue_pairs(ctx, patient_pk, job)
    notify_queued()
    log.info("patient re-paired", extra={"job_id": job.id, "pair_jobs": pair_jobs,
                                         "ms": round(1000 * (time.perf_counter() - pairing_started), 1)})
    for image, encoded, started, stages in analysed:
        encode_started = time.perf_counter()
        marks: dict[str, float] = {}
        with ctx.session_factory() as session:
            datasets = encoded if encoded is not None else compute.image_result_datasets(image)
            marks["encode"] = time.perf_counter()
            store_results(session, filestore, datasets, destinations, job.id)
            session.commit()
            marks["store"] = time.perf_counter()
        notify_results()
        log.info("image analysed", extra={
            "job_id": job.id, "sop_instance_uid": image.dataset.SOPInstanceUID,
            "ms": round(1000 * (time.perf_counter() - started)), **stage_ms(started, stages),
            **stage_ms(encode_started, marks),
            **{f"t_{k}": v for k, v in image.analysis.timings_ms.items()}})
    if pair_jobs == 0:  # nothing to align now: get later pair jobs' DISK run on these films out of the way
        _keep_features(job, filestore, [image for image, *_rest in analysed])
    return f"{len(analysed)} image(s) analysed, {len(reasons)} not analysable, {pair_jobs} pair job(s) queued"


def _keep_features(job: Job, filestore: FileStore, images: list[compute.AnalysedImage]) -> None:
    """Keep the matcher features of each film that may become a pre-op; a failure only costs time later."""
    store = FeatureStore(filestore.root)
    for image in images:
        if not compute.may_become_pre(image):
            continue
        started = time.perf_counter()
        try:
            kept = compute.keep_features(image, store)
        except Exception as exc:  # noqa: BLE001  (a cache: the pair job computes them itself)
            log.warning("features not kept", extra={
                "job_id": job.id, "sop_instance_uid": image.dataset.SOPInstanceUID, "reason": str(exc)})
            continue
        if kept:
            log.info("features kept", extra={"job_id": job.id, "sop_instance_uid": image.dataset.SOPInstanceUID,
                                             "ms": round(1000 * (time.perf_counter() - started), 1)})


def _queue_pairs(ctx: JobContext, patient_pk: int, job: Job) -> int:
    """Re-pair the patient; one ``analyze_pair`` job per new (pre image, post image)."""
    with ctx.session_factory() as session:
        changed = update_pairings(session, patient_pk)
        by_images: dict[tuple[int, int], list[str]] = {}
        for row in changed:
            if row.pre_instance_pk is not None:
                by_images.setdefault((row.pre_instance_pk, row.post_instance_pk), []).append(row.side)
        for (pre_pk, post_pk), sides in by_images.items():
            pre, post = session.get(Instance, pre_pk), session.get(Instance, post_pk)
            post_class = session.scalar(select(ImageClassification).where(ImageClassification.instance_pk == post_pk))
            post_study = session.get(Series, post.series_pk).study_pk
            pair_job_id = enqueue(
                session, "analyze_pair",
                pair_job_key(pre.sop_instance_uid, post.sop_instance_uid, post_class.model_versions if post_class else None),
                study_pk=post_study,
                payload={"pre_instance_pk": pre_pk, "post_instance_pk": post_pk, "sides": sorted(sides)},
            )
            log.info("pair queued", extra={"job_id": pair_job_id, "study_job_id": job.id, "pre": pre.sop_instance_uid,
                                           "post": post.sop_instance_uid, "sides": ",".join(sides)})
        session.commit()
        return len(by_images)

