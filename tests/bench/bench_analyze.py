"""Speed of ``analyze`` on one full-size radiograph, with a per-stage breakdown.

Usage::

    .venv/bin/python tests/bench/bench_analyze.py [IMAGE.dcm] [--repeat 5] [--weights DIR] [--threads N]

Without IMAGE a 2500 x 2000 image is made by scaling a toy sample up (the
speed does not depend on the content once the checks pass; the content check
still runs). Prints the median per stage over ``--repeat`` runs after one
warm-up (session creation is reported separately), the onnxruntime providers,
and ``os.getloadavg()`` because this machine is shared. Target: <= 1000 ms
on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _toy_radiograph(shape: tuple[int, int] = (2500, 2000)):
    import cv2

    from models.training.toydata import toy_sample
    from node.imaging import Radiograph

    image, _, _ = toy_sample(np.random.default_rng(0), (320, 256))
    big = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) * 3000 + 500
    spacing = 430.0 / shape[0]
    return Radiograph(big.astype(np.float32), (spacing, spacing), "detector_plane", None, "MONOCHROME2", 12)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--weights", type=Path, default=ROOT / "models" / "weights")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: all cores)")
    args = parser.parse_args()

    from models.inference import runtime
    from models.inference.analyzer import HipAnalyzer
    from node.imaging import load_radiograph

    t0 = time.perf_counter()
    radiograph = load_radiograph(args.image) if args.image else _toy_radiograph()
    read_ms = 1000 * (time.perf_counter() - t0)
    analyzer = HipAnalyzer.from_weights(args.weights)
    t0 = time.perf_counter()
    for model in analyzer.models:
        runtime.session_for(model.manifest)
    load_ms = 1000 * (time.perf_counter() - t0)
    first = analyzer(radiograph)
    runs = [analyzer(radiograph).timings_ms for _ in range(args.repeat)]
    print(f"image: {args.image or 'toy scaled up'} {radiograph.pixels.shape[1]}x{radiograph.pixels.shape[0]} px, "
          f"read {read_ms:.0f} ms (not in total)")
    print(f"providers: {runtime.available_providers()}  cpu cores: {os.cpu_count()}  "
          f"loadavg before: {os.getloadavg()}")
    print(f"session creation (once per process): {load_ms:.0f} ms; first call total {first.timings_ms.get('total', float('nan')):.0f} ms")
    if first.not_analysable:
        print(f"NOTE: not analysable ({first.not_analysable}); the stages after the content check did not run")
    stages = [k for k in runs[0] if k != "total"] + ["total"]
    print(f"{'stage':14s} {'median ms':>10s} {'min ms':>8s}")
    for stage in stages:
        values = [r.get(stage, 0.0) for r in runs]
        print(f"{stage:14s} {statistics.median(values):>10.1f} {min(values):>8.1f}")
    print(f"loadavg after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
