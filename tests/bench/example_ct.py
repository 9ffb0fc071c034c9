"""A real CT of the pelvis for ``hipnode synth --ct`` and ``hipnode eval align --ct``, fetched from PyPI.

The project ships label maps, not CT volumes, and this machine reaches no
image archive. TotalSegmentator's source distribution on PyPI (Apache-2.0)
carries a small abdomen-pelvis CT among its test files
(``tests/reference_files/example_ct.nii.gz``: 122 x 101 x 112 voxels of 3 mm,
lumbar spine to the acetabula, one patient). PyPI is reachable wherever the
project installs, so this fetches that one file and checks its sha256::

    python -m tests.bench.example_ct --out DIR     # -> DIR/example_ct.nii.gz

Evaluation data only: nothing in the node or the models reads it.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "totalsegmentator==2.18.0"
SDIST_SHA256 = "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03"
MEMBER = "totalsegmentator-2.18.0/tests/reference_files/example_ct.nii.gz"
CT_SHA256 = "dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1"
NAME = "example_ct.nii.gz"


class FetchError(RuntimeError):
    """The sdist could not be downloaded, or a file in it is not the one pinned here."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_example_ct(out_dir: Path) -> Path:
    """``out_dir/example_ct.nii.gz``, downloaded unless a copy with the pinned sha256 is already there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / NAME
    if target.is_file() and _sha256(target.read_bytes()) == CT_SHA256:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", PACKAGE, "--no-binary", ":all:", "--no-deps",
               "--dest", tmp, "--quiet"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        sdists = list(Path(tmp).glob("totalsegmentator-*.tar.gz"))
        if done.returncode != 0 or len(sdists) != 1:
            raise FetchError(f"pip download {PACKAGE} failed: {done.stderr.strip()[-500:]}")
        if _sha256(sdists[0].read_bytes()) != SDIST_SHA256:
            raise FetchError(f"{sdists[0].name}: sha256 differs from the pinned {SDIST_SHA256}")
        with tarfile.open(sdists[0]) as sdist:
            try:
                member = sdist.extractfile(MEMBER)  # KeyError when absent, None when not a regular file
            except KeyError:
                member = None
            if member is None:
                raise FetchError(f"{sdists[0].name} has no file {MEMBER}")
            data = member.read()
    if _sha256(data) != CT_SHA256:
        raise FetchError(f"{MEMBER}: sha256 differs from the pinned {CT_SHA256}")
    target.write_bytes(data)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for example_ct.nii.gz")
    args = parser.parse_args(argv)
    try:
        print(fetch_example_ct(args.out))
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
