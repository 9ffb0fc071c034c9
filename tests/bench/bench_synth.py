"""Synthetic radiograph speed: seconds per exam at training size and at full size.

    .venv/bin/python -m tests.bench.bench_synth [--labels PATH] [--repeat 5] [--sizes 512 2560]

Targets (issue 3, 2 CPU cores): a 512 px image in <= 0.3 s, a full-size
(2560 x 2048) image in <= 3 s. Anatomy preparation is a one-off per label
map (cached on disk) and is reported separately. The load average is printed
with every figure because other work on a shared 2-core machine inflates them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from models.synth.reference_data import label_map

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=str(label_map("Pelvic-Ref-001")))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2560])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from models.synth.anatomy import load_anatomy
    from models.synth.generator import render_exam, sample_patient, sample_pose

    start = time.perf_counter()
    anatomy = load_anatomy(args.labels)
    print(f"anatomy {anatomy.name}: load/prepare {time.perf_counter() - start:.2f} s  loadavg {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(0)
    for size in args.sizes:
        for phase in ("pre", "post"):
            patient = sample_patient(anatomy, rng, ("right",) if phase == "post" else ())
            render_exam(patient, sample_pose(rng), phase, size, rng)  # warm caches (point clouds)
            times, cpu = [], []
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                exam = render_exam(patient, sample_pose(rng), phase, size, rng)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            # CPU seconds (all threads) are far less inflated by other load than wall time;
            # on an idle machine the wall time lies between cpu / threads and cpu.
            print(
                f"size {size:5d} ({exam.geometry.cols}x{exam.geometry.rows}) {phase:4s}: "
                f"wall median {statistics.median(times):.3f} s min {min(times):.3f} s | "
                f"cpu median {statistics.median(cpu):.3f} s | over {args.repeat} | loadavg {os.getloadavg()[0]:.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
