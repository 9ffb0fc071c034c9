"""Pipeline latency: last instance of a pair arriving -> all its results acknowledged by the destination.

A real ``python -m node serve`` (one worker unless ``--workers``) and DCMTK storescp as the destination.
The pre-op study is sent first and processed (the worker loads its models then, and
keeps the pre-op film's matcher features);
the clock runs from the post-op instance's receipt (``instance.received_at``) to
the last ``delivery.delivered_at`` of the post-op image's and the pair's results.
Target (issue 6): completion timer + 4 s on 2 CPU cores.

    .venv/bin/python -m tests.bench.bench_pipeline [--pair DIR] [--quiet-seconds 2] [--size 512] [--no-prefetch]

Prints the per-stage breakdown (from the catalogue's timestamps and the node's log
lines) with ``os.getloadavg()``; the figures are pessimistic on a shared machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import tempfile
from pathlib import Path

from sqlalchemy import select

from storage.models import Delivery, Instance, Job, JobEvent, Result, Series, Study, StudyEvent
from tests.conftest import NodeProcess, wait_for
from tests.node import pipeline_support as ps

_FIELD = re.compile(r"(\w+)=(\S+)")


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _log_fields(log: str, message: str, **match: str) -> dict[str, str]:
    """Fields of the last log line with ``message`` whose fields include ``match``."""
    found: dict[str, str] = {}
    for line in log.splitlines():
        if f" {message} " not in line:
            continue
        fields = dict(_FIELD.findall(line.split(f" {message} ", 1)[1]))
        if all(fields.get(k) == v for k, v in match.items()):
            found = fields
    return found


def _event_time(session, job_id: int, state: str) -> dt.datetime | None:
    row = session.scalar(
        select(JobEvent)
        .where(JobEvent.job_pk == job_id, JobEvent.state == state)
        .order_by(JobEvent.id)
    )
    return None if row is None else _utc(row.created_at)


def measure(
    pair: Path, work: Path, quiet_seconds: float, workers: int = 1, prefetch: bool = True
) -> dict[str, object]:
    dest = ps.StoreSCP(work / "received").start()
    config = ps.pipeline_config(dest, quiet_seconds=quiet_seconds, workers=workers)
    config["prefetch"] = prefetch
    node = NodeProcess(work / "node", config=config)
    try:
        node.start()
        ps.send(node, pair / "pre.dcm")
        ps.wait_settled(node, min_jobs=1)  # warm: the worker has loaded its models
        failed = ps.failed_jobs(node)
        if failed:
            raise SystemExit(f"pre-op study failed: {failed}")
        jobs_before = len(ps.jobs(node))
        ps.send(node, pair / "post.dcm")
        wait_for(
            lambda: len(ps.jobs(node)) > jobs_before, timeout=60, msg="the post-op study's job"
        )
        ps.wait_settled(node, min_jobs=jobs_before + 1)  # a pair job is queued inside the study job
        failed = ps.failed_jobs(node)
        if failed:
            raise SystemExit(f"jobs failed: {failed}")
        return breakdown(node, pair, jobs_before, quiet_seconds)
    finally:
        node.close()
        dest.stop()


def breakdown(
    node: NodeProcess, pair: Path, jobs_before: int, quiet_seconds: float
) -> dict[str, object]:
    from pydicom import dcmread

    post_uid = str(dcmread(pair / "post.dcm", stop_before_pixels=True).SOPInstanceUID)
    log = node.log()
    with node.session() as s:
        instance = s.scalar(select(Instance).where(Instance.sop_instance_uid == post_uid))
        study = s.get(Study, s.get(Series, instance.series_pk).study_pk)
        arrived = _utc(instance.received_at)
        completed = s.scalar(
            select(StudyEvent)
            .where(StudyEvent.study_pk == study.id, StudyEvent.kind == "completed")
            .order_by(StudyEvent.id.desc())
        )
        new_jobs = list(s.scalars(select(Job).where(Job.id > jobs_before).order_by(Job.id)))
        study_job = next(j for j in new_jobs if j.kind == "analyze_study")
        pair_job = next((j for j in new_jobs if j.kind == "analyze_pair"), None)
        times = {
            f"{name}_{state}": None if job is None else _event_time(s, job.id, state)
            for name, job in (("study", study_job), ("pair", pair_job))
            for state in ("queued", "running", "done")
        }
        job_ids = [j.id for j in (study_job, pair_job) if j is not None]
        result_rows = list(s.scalars(select(Result).where(Result.job_pk.in_(job_ids))))
        uids = [r.sop_instance_uid for r in result_rows]
        rows = list(s.scalars(select(Delivery).where(Delivery.sop_instance_uid.in_(uids))))
        delivered = [
            (_utc(d.delivered_at), d.duration_ms or 0.0) for d in rows if d.delivered_at is not None
        ]
    if len(delivered) != len(uids) or not uids:
        raise SystemExit(f"{len(delivered)} of {len(uids)} results delivered")
    end = max(t for t, _ in delivered)

    def span(a: dt.datetime | None, b: dt.datetime | None) -> float:
        return float("nan") if a is None or b is None else (b - a).total_seconds()

    image = _log_fields(log, "image analysed", sop_instance_uid=post_uid)
    prefetched = _log_fields(log, "image prefetched", sop_instance_uid=post_uid)
    repaired = _log_fields(log, "patient re-paired", job_id=str(study_job.id))
    pair_line = (
        {} if pair_job is None else _log_fields(log, "pair encoded", job_id=str(pair_job.id))
    )

    def ms(fields: dict[str, str], key: str) -> float:
        try:
            return float(fields[key]) / 1000
        except (KeyError, ValueError):
            return float("nan")

    stages: list[tuple[str, float]] = [
        ("completion wait (arrival -> study completed)", span(arrived, _utc(completed.created_at))),
    ]
    analysis_stages = [(f"    {k[2:]}", ms(image, k)) for k in image if k.startswith("t_")]
    if prefetched:  # the worker's prefetch lane did the per-image work inside the completion wait
        stages += [("  prefetch: analyse", ms(prefetched, "analyse_ms")), *analysis_stages]
        stages += [
            (f"  prefetch: {k[:-3]}", ms(prefetched, k))
            for k in ("features_ms", "encode_ms")
            if k in prefetched
        ]
    stages += [
        (
            "job pickup (analyze_study queued -> running)",
            span(times["study_queued"], times["study_running"]),
        ),
    ]
    if "prefetched_ms" in image:
        stages += [("  wait for the prefetch (read, analyse, encode)", ms(image, "prefetched_ms"))]
    else:
        stages += [
            ("  read (decode DICOM)", ms(image, "read_ms")),
            ("  analyse (total)", ms(image, "analyse_ms")),
            *analysis_stages,
        ]
    stages += [
        ("  record classification + artifacts", ms(image, "record_ms")),
        ("  encode SEG + SR" + (" (prefetched)" if "prefetched_ms" in image else ""), ms(image, "encode_ms")),
        ("  store results + outbox rows", ms(image, "store_ms")),
        ("  pairing (re-pair patient, queue pair job)", ms(repaired, "ms")),
        ("analyze_study job (running -> done)", span(times["study_running"], times["study_done"])),
        (
            "pair pickup (analyze_pair queued -> running)",
            span(times["pair_queued"], times["pair_running"]),
        ),
        ("  load both analyses + images", ms(pair_line, "load_ms")),
        ("  align", ms(pair_line, "align_ms")),
    ]
    stages += [(f"    {k[2:]}", ms(pair_line, k)) for k in pair_line if k.startswith("t_")]
    stages += [
        ("  pair encode (CDM, deltas, SR, 2 SC)", ms(pair_line, "encode_ms")),
        ("  store pair results + outbox rows", ms(pair_line, "store_ms")),
        ("analyze_pair job (running -> done)", span(times["pair_running"], times["pair_done"])),
        (
            "delivery (last job done -> last acknowledged)",
            span(max(t for t in (times["pair_done"], times["study_done"]) if t is not None), end),
        ),
        ("  C-STORE time, sum over results", sum(d for _, d in delivered) / 1000),
    ]
    total = span(arrived, end)
    return {
        "stages": stages,
        "total_s": total,
        "target_s": quiet_seconds + 4.0,
        "results": len(uids),
        "pair_job": pair_job is not None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pair", type=Path, help="a hipnode synth pair folder (default: generate one)"
    )
    parser.add_argument(
        "--size", type=int, default=ps.SYNTH_SIZE, help="synth image width when generating"
    )
    parser.add_argument("--seed", type=int, default=ps.SYNTH_SEED)
    parser.add_argument(
        "--quiet-seconds", type=float, default=2.0, help="the node's completion timer"
    )
    parser.add_argument("--keep", type=Path, help="keep the node's storage and log here")
    parser.add_argument("--workers", type=int, default=1, help="the node's analysis worker processes")
    parser.add_argument(
        "--no-prefetch",
        action="store_true",
        help="the node analyses each image only when its study job runs (for comparison)",
    )
    args = parser.parse_args(argv)
    scratch = None if args.keep else tempfile.TemporaryDirectory(prefix="bench-pipeline-")
    work = args.keep or Path(scratch.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, work)
    finally:
        if scratch is not None:  # the node's storage: about 90 MB per run
            scratch.cleanup()


def _run(args: argparse.Namespace, work: Path) -> int:
    pair = args.pair or ps.synth_pair(work / "synth", seed=args.seed, size=args.size)
    load_before = os.getloadavg()
    report = measure(pair, work, args.quiet_seconds, args.workers, prefetch=not args.no_prefetch)
    load_after = os.getloadavg()
    print(
        f"pipeline latency, pair {pair} (completion timer {args.quiet_seconds:g} s, {args.workers} worker(s), "
        f"prefetch {'off' if args.no_prefetch else 'on'})"
    )
    for name, seconds in report["stages"]:  # type: ignore[union-attr]
        print(f"  {name:<52} {seconds:8.3f} s")
    if not report["pair_job"]:
        print(
            "  NO PAIR JOB: the models did not classify the post-op image as operated; the total below"
        )
        print("  covers the post-op image's own results only, not a pair.")
    total, target = report["total_s"], report["target_s"]
    verdict = "met" if total <= target else "NOT met"  # type: ignore[operator]
    print(
        f"TOTAL last instance arrived -> {report['results']} results acknowledged: {total:.3f} s "
        f"(target <= {target:g} s: {verdict})"
    )
    print(
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} on {os.cpu_count()} CPUs"
    )
    if args.keep:
        print(f"node log: {work / 'node-node.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
