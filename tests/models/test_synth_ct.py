"""``hipnode synth --ct``: a NIfTI CT phantom rendered as one rigid body."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
from scipy import ndimage

from models.synth.volume_io import read_nifti, write_nifti
from node.cli import main


def _phantom(path: Path) -> None:
    """Water ellipsoid in air with a bony ring and two bony rods (HU), 2 mm voxels, LPS order."""
    shape = (150, 110, 120)
    x, y, z = np.meshgrid(*[np.arange(n) * 2.0 - n for n in shape], indexing="ij")
    hu = np.full(shape, -1000.0, np.float32)
    hu[(x / 140) ** 2 + (y / 95) ** 2 + (z / 115) ** 2 <= 1] = 30.0
    ring = (np.hypot(np.hypot(x, z * 1.3) - 70.0, y) <= 9.0) & (z > -60)
    rods = (np.minimum(np.hypot(x - 75, y), np.hypot(x + 75, y)) <= 11.0) & (z < -20)
    hu[ring | rods] = 800.0
    hu[ring & ~ndimage.binary_erosion(ring, iterations=2)] = 1400.0  # cortex
    write_nifti(path, hu, (2.0, 2.0, 2.0))


def test_nifti_round_trip(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    write_nifti(tmp_path / "v.nii", data, (1.0, 2.0, 3.0))
    volume = read_nifti(tmp_path / "v.nii")
    assert volume.spacing_mm == (1.0, 2.0, 3.0)
    assert np.array_equal(volume.data, data)


def test_ct_pair_with_true_correspondences(tmp_path: Path) -> None:
    _phantom(tmp_path / "ct.nii")
    assert main(["synth", "--ct", str(tmp_path / "ct.nii"), "--out", str(tmp_path / "o"), "--pairs", "2", "--seed", "3", "--size", "320"]) == 0
    for folder in sorted((tmp_path / "o").glob("pair_*")):
        pair = json.loads((folder / "pair.json").read_text())
        a, b = np.array(pair["pelvis_points_pre"]), np.array(pair["pelvis_points_post"])
        assert len(a) == len(b) >= 20
        for pts, phase in ((a, "pre"), (b, "post")):
            with np.load(folder / f"{phase}_masks.npz") as z:
                bone = z["pelvis"]
            dist = ndimage.distance_transform_edt(~bone)
            on_bone = [dist[int(round(p[1])), int(round(p[0]))] <= 2 for p in pts]
            assert np.mean(on_bone) > 0.9
        gt = json.loads((folder / "post.json").read_text())
        assert all(v is None for v in gt["landmarks"].values())
        if shutil.which("dciodvfy"):
            for phase in ("pre", "post"):
                out = subprocess.run(["dciodvfy", str(folder / f"{phase}.dcm")], capture_output=True, text=True, timeout=60)
                assert not [l for l in (out.stdout + out.stderr).splitlines() if l.startswith("Error")]


def test_ct_rejects_a_non_ct(tmp_path: Path) -> None:
    write_nifti(tmp_path / "flat.nii", np.zeros((8, 8, 8), np.float32), (1.0, 1.0, 1.0))
    assert main(["synth", "--ct", str(tmp_path / "flat.nii"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "junk.nii").write_bytes(b"\x00" * 400)
    assert main(["synth", "--ct", str(tmp_path / "junk.nii"), "--out", str(tmp_path / "o")]) == 2
