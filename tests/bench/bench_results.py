"""Result encoding speed: SEG, image SR, pair SR, colour map SC, overlay SC, and file writes.

    .venv/bin/python -m tests.bench.bench_results [--scale 8] [--repeat 3]

Sources are the encoder tests' synthetic DX (256 x 320 times ``--scale``;
8 gives 2048 x 2560, a real detector's size) with fake analyses. The first
call of each encoder (imports, highdicom's standard tables) is reported
separately; then the median of ``--repeat`` runs. Prints the load average,
since a loaded 2-core machine inflates every figure.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable

from tests.node.results_sources import make_alignment, make_analysis, make_cdm, make_dx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=8, help="image size = 256 x 320 times this")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from node.imaging import radiograph_from_dataset
    from node.results import encode_cdm_sc, encode_image_sr, encode_overlay_sc, encode_pair_sr, encode_seg

    pre = make_dx(study_date="20240105", seed=1, scale=args.scale)
    post = make_dx(study_date="20240610", seed=2, scale=args.scale, with_pixel_spacing=True)
    pre_a, post_a = make_analysis(scale=args.scale), make_analysis(post_op=True, scale=args.scale)
    alignment, cdm = make_alignment(), make_cdm(args.scale)
    pixels = [radiograph_from_dataset(pre).pixels, radiograph_from_dataset(post).pixels]
    seg = encode_seg(post, post_a)
    deltas = {"delta_leg_length_discrepancy": 1.0, "delta_femoral_offset_left": 2.0}
    stages: dict[str, Callable[[], object]] = {
        "seg": lambda: encode_seg(post, post_a),
        "image_sr": lambda: encode_image_sr(post, post_a, seg),
        "pair_sr": lambda: encode_pair_sr(pre, post, pre_a, post_a, alignment, deltas),
        "cdm_sc": lambda: encode_cdm_sc(pre, post, cdm, alignment),
        "overlay_sc": lambda: encode_overlay_sc([(pre, pre_a), (post, post_a)], deltas, pixels=pixels),
    }
    print(f"image {post.Rows} x {post.Columns}, load average before {os.getloadavg()}")
    total = 0.0
    for name, encode in stages.items():
        start = time.perf_counter()
        ds = encode()
        first_ms = 1000 * (time.perf_counter() - start)
        encode_ms, write_ms = [], []
        size = 0
        for _ in range(args.repeat):
            start = time.perf_counter()
            ds = encode()
            encode_ms.append(1000 * (time.perf_counter() - start))
            buffer = io.BytesIO()
            start = time.perf_counter()
            ds.save_as(buffer, enforce_file_format=True)  # type: ignore[attr-defined]
            write_ms.append(1000 * (time.perf_counter() - start))
            size = len(buffer.getvalue())
        median = statistics.median(encode_ms) + statistics.median(write_ms)
        total += median
        print(
            f"{name:11s} first {first_ms:7.0f} ms  encode {statistics.median(encode_ms):7.0f} ms  "
            f"write {statistics.median(write_ms):5.0f} ms  size {size / 1e6:6.2f} MB"
        )
    print(f"pair total (SEG + SR for one image, + pair SR + 2 SC), medians: {total:.0f} ms")
    print(f"load average after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
