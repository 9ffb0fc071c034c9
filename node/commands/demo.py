"""``hipnode demo``: Orthanc + OHIF + the node, one synthetic pre/post pair, the viewer URL.

Starts the harness stack of ``orthanc-test/`` (Orthanc with auto-routing, the
node sending its results back, OHIF behind a one-origin proxy), sends a
synthetic pair to Orthanc with storescu as a modality would, waits for the
results to come back into the post-op study and prints the URL to open. Runs
until Ctrl-C, then stops and removes everything. Needs root (the stack lives in
a private network namespace; only the viewer port is opened on the host).

Exit status with ``--exit-after-results``: 0 results arrived, 3 none in time.
``--stand-in`` routes to DCMTK storescp instead and sends harness-built results
(SEG, SR, colour SC), so the viewer can be seen before the pipeline exists.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from models.synth.reference_data import PELVIC_REF_DIR

log = logging.getLogger("node.demo")
REPO_ROOT = Path(__file__).resolve().parents[2]
HARNESS_DIR = REPO_ROOT / "orthanc-test"
PELVIC_REF = PELVIC_REF_DIR


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:3000",
                        help="host address of the viewer (HOST:PORT); everything else stays in the namespace")
    parser.add_argument("--mode", choices=["on-stored", "stable-study"], default="stable-study",
                        help="Orthanc routing: each stored instance, or a study quiet for StableAge")
    parser.add_argument("--stand-in", action="store_true",
                        help="route to DCMTK storescp and send harness-built results instead of the node's")
    parser.add_argument("--pair", choices=["synth", "simple"], default="synth",
                        help="synth: `hipnode synth` from the pelvic CT label maps; simple: the harness's quick DX")
    parser.add_argument("--results-timeout", type=float, default=300.0, help="seconds to wait for results")
    parser.add_argument("--exit-after-results", action="store_true",
                        help="stop once the results are in (for scripts); default: run until Ctrl-C")


def _synthetic_pair(out_dir: Path, kind: str) -> tuple[Path, Path, str]:
    """(pre.dcm, post.dcm, post StudyInstanceUID): ``hipnode synth`` when it is there, else the harness's DX."""
    import pydicom

    labels = sorted(PELVIC_REF.glob("*/label.mhd"))
    synth = REPO_ROOT / "node" / "commands" / "synth.py"
    if kind == "synth" and synth.exists() and labels:
        cmd = [sys.executable, "-m", "node", "synth", "--labels", str(labels[0]), "--out", str(out_dir),
               "--pairs", "1", "--seed", "7"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
        pair = out_dir / "pair_000"
        if proc.returncode == 0 and (pair / "post.dcm").exists():
            post = pydicom.dcmread(pair / "post.dcm", stop_before_pixels=True)
            return pair / "pre.dcm", pair / "post.dcm", str(post.StudyInstanceUID)
        log.warning("hipnode synth failed (%s); using the harness's simple synthetic DX", proc.stderr[-300:])
    from harness.pair import make_pair

    made = make_pair(out_dir)
    return made.pre, made.post, made.post_study_uid


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds the ``with`` block: the stack is torn down


def run(args: argparse.Namespace) -> int:
    if not (HARNESS_DIR / "harness" / "stack.py").exists():
        print(f"hipnode demo: {HARNESS_DIR} is missing; run it from a source checkout", file=sys.stderr)
        return 1
    sys.path.insert(0, str(HARNESS_DIR))
    from harness import HarnessStack, StackOptions
    from harness.results import send_stand_in_results, wait_for_results
    from harness.stack import OHIF_DIST

    if not (OHIF_DIST / "index.html").is_file():
        subprocess.run([str(HARNESS_DIR / "install.sh")], check=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    logging.getLogger("highdicom").setLevel(logging.WARNING)  # its per-attribute INFO lines drown the URL
    options = StackOptions(routing_mode=args.mode, receiver="storescp" if args.stand_in else "node",
                           viewer=True, host_listen=args.listen)
    with tempfile.TemporaryDirectory(prefix="hipnode-demo-") as tmp:
        pre, post, post_study = _synthetic_pair(Path(tmp), args.pair)
        try:
            with HarnessStack(options) as stack:
                log.info("stack up: Orthanc, %s, OHIF proxy", options.receiver)
                started = time.monotonic()
                stack.send_to_orthanc([pre, post], calling_aet="MODALITY")
                if args.stand_in:
                    from harness.processes import wait_for

                    files = wait_for(lambda: len(f := stack.received_files()) >= 2 and f, 60, "the routed pair")
                    send_stand_in_results(stack, files, options.node_aet)  # type: ignore[arg-type]
                url = f"{stack.viewer_base_url}/viewer?StudyInstanceUIDs={post_study}"
                have_results = False
                try:
                    found = wait_for_results(stack, post_study, ("SEG", "SR"), args.results_timeout)
                    print(f"results in Orthanc {time.monotonic() - started:.1f} s after sending: "
                          + ", ".join(f"{m} x{len(v)}" for m, v in sorted(found.by_modality.items())))
                    have_results = True
                except TimeoutError:
                    print(f"no results after {args.results_timeout:.0f} s (is the analysis pipeline installed?); "
                          "the images are still in Orthanc", file=sys.stderr)
                print(f"study list: {stack.viewer_base_url}/")
                print(f"post-op study in OHIF: {url}", flush=True)
                if not args.stand_in:
                    print(f"what the node made of it: {stack.viewer_base_url}/hipnode/?study={post_study}", flush=True)
                if args.exit_after_results:
                    return 0 if have_results else 3
                print("Ctrl-C stops the demo and removes everything.", flush=True)
                while True:
                    time.sleep(1)
                    stack.processes.check_alive("orthanc")
        except KeyboardInterrupt:
            print("stopping")
        except (RuntimeError, OSError, TimeoutError) as exc:  # a part that cannot start: say which, no traceback
            print(f"hipnode demo: {exc}", file=sys.stderr)
            return 1
    return 0
