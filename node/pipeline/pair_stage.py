"""Job ``analyze_pair``: align a paired pre-op/post-op exam and encode the comparison.

Rebuilds both images' analyses from the catalogue (no second landmark run),
aligns pre onto post through the pelvis, and writes the pair SR with the deltas
of the paired sides, the colour difference map SC and the overlay SC into the
post-op study. An alignment that cannot be trusted still yields the pair SR
and overlay (without deltas or map) and the job records the reason.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select

from models.algorithms.results import ImageAnalysis
from node.imaging import UnreadableImage, load_radiograph
from node.jobs.queue import PermanentJobError
from node.jobs.worker import JobContext, notify_results
from node.pipeline import compute
from node.pipeline.artifacts import load_artifacts
from node.pipeline.features import FeatureStore
from node.pipeline.result_store import destinations_for, store_results
from node.pipeline.timing import stage_ms
from storage.filestore import FileStore
from storage.models import ImageClassification, Instance, Job, Series, Study

log = logging.getLogger(__name__)


def _load(session, filestore: FileStore, instance_pk: int) -> compute.AnalysedImage:
    instance = session.get(Instance, instance_pk)
    classification = session.scalar(
        select(ImageClassification).where(ImageClassification.instance_pk == instance_pk))
    if instance is None or classification is None or not classification.analysable or not classification.analysis:
        raise PermanentJobError("load", f"instance {instance_pk} has no analysis to pair")
    try:
        radiograph = load_radiograph(filestore.absolute(instance.path))
    except UnreadableImage as exc:
        raise PermanentJobError("load", f"{instance.sop_instance_uid}: {exc}") from exc
    masks, pelvis = load_artifacts(filestore.root, classification.artifacts_path)
    analysis = ImageAnalysis.from_json(classification.analysis, masks)
    return compute.AnalysedImage(radiograph, analysis, pelvis)


def run(job: Job, ctx: JobContext) -> str:
    started = time.perf_counter()
    marks: dict[str, float] = {}
    payload = job.payload or {}
    filestore = FileStore(ctx.storage_dir)
    with ctx.session_factory() as session:
        pre = _load(session, filestore, int(payload["pre_instance_pk"]))
        post = _load(session, filestore, int(payload["post_instance_pk"]))
        post_study = session.get(Study, session.get(Series, session.get(Instance, int(payload["post_instance_pk"])).series_pk).study_pk)
        calling_aet = post_study.calling_aet
    marks["load"] = time.perf_counter()
    alignment = compute.align(pre, post, features=FeatureStore(filestore.root))
    marks["align"] = time.perf_counter()
    datasets, deltas = compute.pair_result_datasets(pre, post, alignment, payload.get("sides") or ())
    marks["encode"] = time.perf_counter()
    with ctx.session_factory() as session:
        store_results(session, filestore, datasets, destinations_for(ctx.settings, calling_aet), job.id)
        session.commit()
    notify_results()
    marks["store"] = time.perf_counter()
    log.info("pair encoded", extra={
        "job_id": job.id, "ms": round(1000 * (time.perf_counter() - started)), **stage_ms(started, marks),
        **{f"t_{k}": round(v, 1) for k, v in alignment.timings_ms.items()}})
    if alignment.failure is not None:
        raise PermanentJobError("align", alignment.failure)
    shown = ", ".join(f"{k}={v:.1f}" for k, v in deltas.items() if v is not None)
    return f"aligned ({alignment.inliers}/{alignment.matches} inliers); deltas: {shown or 'none'}"
