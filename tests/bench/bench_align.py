"""Alignment speed, end to end per pair: read both DICOMs, pelvis probability, match, homography, ECC, CDM.

    .venv/bin/python -m tests.bench.bench_align [--data DIR] [--matcher disk_lightglue] [--method ours] [--repeat 3]

Without ``--data`` it writes three pairs projected from the pelvic-ref label
maps (tests/models/align_pairs.py) to a temporary folder. Sessions are created
once (the first pair's session start is reported separately); then each pair
is run ``--repeat`` times and the per-stage median is printed with the load
average, since a loaded 2-core machine inflates every figure. Prints the
onnxruntime providers used, so a GPU run shows whether CUDA was taken.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _pairs(data: Path | None, scratch: Path) -> list[tuple[Path, Path]]:
    if data is not None:
        folders = sorted(p for p in data.iterdir() if (p / "pre.dcm").is_file() and (p / "post.dcm").is_file())
        return [(f / "pre.dcm", f / "post.dcm") for f in folders]
    from tests.models.align_pairs import make_pair, write_dx

    out = []
    for seed, case in enumerate(("Pelvic-Ref-001", "Pelvic-Ref-002", "Pelvic-Ref-004")):
        pair = make_pair(seed=seed, case=case)
        out.append((write_dx(scratch / f"{seed}" / "pre.dcm", pair.pre), write_dx(scratch / f"{seed}" / "post.dcm", pair.post)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--matcher", default="disk_lightglue")
    parser.add_argument("--method", default="ours")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--threads", type=int, help="onnxruntime/OpenCV threads (default: library default)")
    parser.add_argument("--prior", choices=("auto", "on", "off"), default="auto",
                        help="pelvis-outline prior of 'ours': auto = as the command (only with a segmentation "
                        "model); on = time it even on the stand-in's maps")
    args = parser.parse_args(argv)

    import cv2
    import numpy as np

    if args.threads:
        cv2.setNumThreads(args.threads)
    from models.align.cdm import colour_difference_map
    from models.align.matching import get_matcher
    from models.align.pipeline import AlignSettings, align_pair
    from node.commands.align import pelvis_probability
    from node.imaging import load_radiograph

    start = time.perf_counter()
    matcher = get_matcher(args.matcher)
    session_ms = 1000 * (time.perf_counter() - start)
    providers = getattr(matcher, "providers", ["opencv"])
    stages: dict[str, list[float]] = {}
    shapes = []
    with tempfile.TemporaryDirectory() as scratch:
        pairs = _pairs(args.data, Path(scratch))[: args.limit]
        for index, (pre_path, post_path) in enumerate(pairs):
            for repeat in range(args.repeat + (1 if index == 0 else 0)):
                c0 = time.process_time()
                t0 = time.perf_counter()
                pre = load_radiograph(pre_path)
                post = load_radiograph(post_path)
                t1 = time.perf_counter()
                p_pre, source = pelvis_probability(pre.pixels, pre.pixel_spacing_mm)
                p_post, _ = pelvis_probability(post.pixels, post.pixel_spacing_mm)
                t2 = time.perf_counter()
                prior = source == "segmentation_model" if args.prior == "auto" else args.prior == "on"
                result = align_pair(pre.pixels, post.pixels, p_pre, p_post, args.method, matcher,
                                    AlignSettings(pelvis_prior=prior))
                t3 = time.perf_counter()
                if result.homography is not None:
                    colour_difference_map(pre.pixels, post.pixels, result.homography)
                t4 = time.perf_counter()
                c4 = time.process_time()
                if index == 0 and repeat == 0:
                    continue  # warm-up: first inference allocates
                timings = {"read": t1 - t0, "pelvis_probability": t2 - t1, "align": t3 - t2, "cdm": t4 - t3,
                           "total": t4 - t0, "total_cpu": c4 - c0}
                timings.update({f"  {k}": v / 1000 for k, v in result.timings_ms.items()})
                for key, value in timings.items():
                    stages.setdefault(key, []).append(value)
            shapes.append(pre.pixels.shape)
    print(f"bench_align matcher={args.matcher} method={args.method} pairs={len(pairs)} repeat={args.repeat} "
          f"image sizes={sorted(set(shapes))} pelvis={source} prior={args.prior}")
    print(f"providers={providers} session_start_ms={session_ms:.0f} cpu_count={os.cpu_count()} "
          f"loadavg={tuple(round(x, 2) for x in os.getloadavg())}")
    for key, values in stages.items():
        print(f"{key:<28} median {1000 * statistics.median(values):8.1f} ms   max {1000 * max(values):8.1f} ms")
    cpu = statistics.median(stages["total_cpu"])
    print(f"end-to-end per pair (median total): {statistics.median(stages['total']):.3f} s wall; "
          f"{cpu:.3f} CPU-seconds of this process (all threads): on an idle machine with "
          f"{os.cpu_count()} cores the wall time lies between {cpu / (os.cpu_count() or 1):.3f} and {cpu:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
