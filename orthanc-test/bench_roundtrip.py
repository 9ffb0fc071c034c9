"""Round-trip latency through the harness PACS; prints figures (not a test).

For each routing mode: storescu -> Orthanc -> routed to the stand-in receiver
(routing latency), then a SEG sent back from the node's AE -> visible over QIDO
(return latency). Run: ``.venv/bin/python orthanc-test/bench_roundtrip.py [--images N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pydicom  # noqa: E402

from harness import HarnessStack, StackOptions, dicom_factory  # noqa: E402
from harness.pair import make_pair  # noqa: E402
from harness.processes import wait_for  # noqa: E402


def one_mode(mode: str, images: int, work: Path) -> dict[str, list[float]]:
    routed, returned = [], []
    with HarnessStack(StackOptions(routing_mode=mode, stable_age_s=2)) as stack:
        for i in range(images):
            pair = make_pair(work / f"{mode}-{i}", patient_id=f"BENCH-{i:03d}")
            before = len(stack.received_files())
            t0 = time.monotonic()
            stack.send_to_orthanc([pair.post])
            wait_for(lambda: len(stack.received_files()) > before, 30, "routing", interval_s=0.02)
            routed.append(time.monotonic() - t0)
            post = pydicom.dcmread(pair.post)
            seg = dicom_factory.save(dicom_factory.make_seg(post, dicom_factory.pelvis_masks(True)),
                                     work / f"{mode}-{i}" / "seg.dcm")
            t1 = time.monotonic()
            stack.send_to_orthanc([seg], calling_aet="HIPNODE")
            wait_for(lambda: any(s["00080060"]["Value"] == ["SEG"] for s in
                                 stack.orthanc.qido(f"/studies/{pair.post_study_uid}/series")),
                     30, "SEG over QIDO", interval_s=0.02)
            returned.append(time.monotonic() - t1)
    return {"routed_s": routed, "returned_s": returned}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("on-stored", "stable-study"):
            figures = one_mode(mode, args.images, Path(tmp))
            for key, values in figures.items():
                print(f"{mode:13s} {key:11s} median {statistics.median(values):.3f} s  "
                      f"max {max(values):.3f} s  (n={len(values)}, incl. storescu start)")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
