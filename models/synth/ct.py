"""``--ct``: a CT volume (NIfTI, HU) rendered as one rigid body, for alignment tests.

No labels exist, so the ground truth is geometric only: the true
correspondences of bone-surface points between the two exams (``pair.json``)
and the implant mask when an implant is added. Landmarks and measurements
are ``null``; the anatomical masks are empty (``pelvis`` holds the projected
bone of the whole volume, which is what the rigid body is).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from models.algorithms.vocabulary import LANDMARKS, MEASUREMENTS, SEGMENTS
from models.synth.anatomy import Body
from models.synth.detector import expose, lead_marker, sample_processing
from models.synth.generator import OCCUPANCY_MM, Exam, Pair, image_geometry
from models.synth.implant import Hip, render_hip
from models.synth.projection import CoarseGrid, affine, apply, body_points, rotation_xyz, splat
from models.synth.volume_io import VolumeFormatError, read_nifti

MU_WATER = 0.0215  # 1/mm, matching the label-map soft tissue
CT_VOXEL_MM = 1.5
BONE_HU = 200.0


@dataclass
class CtBody:
    """A CT volume prepared for projection."""

    name: str
    body: Body
    anchor_mm: np.ndarray
    surface_points: np.ndarray  # (n, 3) bone surface points for correspondences


def load_ct_body(path: str | Path) -> CtBody:
    """Read a NIfTI CT (HU), resample to 1.5 mm, convert to attenuation (1/mm)."""
    volume = read_nifti(path)
    hu = volume.data
    if hu.ndim != 3 or min(hu.shape) < 4:
        raise VolumeFormatError(f"{path}: CT volume too small {hu.shape}")
    if float(hu.max()) < BONE_HU:
        raise VolumeFormatError(f"{path}: no voxel above {BONE_HU:.0f} HU: is this a CT in Hounsfield units?")
    zoom = np.asarray(volume.spacing_mm) / CT_VOXEL_MM
    hu_iso = ndimage.zoom(hu, zoom, order=1) if not np.allclose(zoom, 1.0) else hu
    mu = np.clip(MU_WATER * (1.0 + np.clip(hu_iso, -1000.0, 3000.0) / 1000.0), 0.0, None).astype(np.float32)
    bone = hu_iso > BONE_HU
    data = np.stack([mu.transpose(2, 1, 0), bone.astype(np.float32).transpose(2, 1, 0)])
    origin = np.asarray(volume.origin_mm, float)
    body = Body(data, ("mu", "bone"), origin, CT_VOXEL_MM)
    idx = np.argwhere(bone)
    anchor = origin + idx.mean(0) * CT_VOXEL_MM
    surface = np.argwhere(bone & ~ndimage.binary_erosion(bone))
    pts = origin + surface * CT_VOXEL_MM
    rng = np.random.default_rng(11)
    chosen = [int(rng.integers(len(pts)))]
    dist = np.linalg.norm(pts - pts[chosen[0]], axis=1)
    for _ in range(min(63, len(pts) - 1)):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(pts - pts[nxt], axis=1))
    return CtBody(volume.name, body, anchor, pts[chosen])


def _exam(ct: CtBody, rng: np.random.Generator, phase: str, size_px: int | None, hip_offset: np.ndarray | None) -> Exam:
    sid, oid = float(rng.uniform(1000, 1150)), float(rng.uniform(120, 230))
    geom = image_geometry(size_px, sid, oid)
    grid = CoarseGrid.for_geometry(geom, CT_VOXEL_MM * geom.magnification)
    angles = tuple(float(v) for v in rng.uniform([-8, -4, -6], [8, 4, 6]))
    rot = rotation_xyz(*angles)
    shift = np.array([rng.uniform(-15, 15), 0.0, rng.uniform(-15, 15)])
    world = affine(rot, shift - rot @ ct.anchor_mm)
    lines = splat(body_points(ct.body, ("mu", "bone"), 2), world, geom, grid)
    mu_line = cv2.resize(lines[0], (grid.cols * grid.factor, grid.rows * grid.factor), interpolation=cv2.INTER_LINEAR)[: geom.rows, : geom.cols]
    bone = cv2.resize(lines[1], (grid.cols * grid.factor, grid.rows * grid.factor), interpolation=cv2.INTER_LINEAR)[: geom.rows, : geom.cols]
    masks = {name: np.zeros((geom.rows, geom.cols), bool) for name in SEGMENTS}
    masks["pelvis"] = bone > OCCUPANCY_MM
    implants: dict[str, object] = {}
    if hip_offset is not None:
        centre = apply(world, (ct.anchor_mm + hip_offset)[None])[0]
        axis = rot @ np.array([np.sin(np.radians(45)), -np.sin(np.radians(15)), -np.cos(np.radians(45))])
        axis /= np.linalg.norm(axis)
        down = rot @ np.array([0.25, 0.0, -1.0])
        down /= np.linalg.norm(down)
        neck = centre + 35.0 * down + rot @ np.array([20.0, 0, 0])
        stem = ((centre, neck, 6.5, 7.5), (neck, neck + 110.0 * down, 9.0, 4.5))
        hip = Hip("left", centre, axis / np.linalg.norm(axis), 26.0, 3.0, 16.0, stem, rot @ np.array([0.0, 1.0, 0.0]), 1.7)
        metal, metal_mask = render_hip(hip, geom)
        mu_line = mu_line + metal
        masks["implant_left"] = metal_mask
        implants["left"] = {"cup_outer_diameter_mm": 52.0, "head_diameter_mm": 32.0}
    proc = sample_processing(rng)
    if proc.marker is not None:
        mu_line = mu_line + lead_marker(mu_line.shape, proc.marker, proc.marker == "R", geom.pitch_mm, rng)
    stored, presentation = expose(mu_line.astype(np.float32), proc, geom.pitch_mm, rng, masks["implant_left"])
    landmarks = {name: None for name in LANDMARKS}
    measurements = {name: None for name in MEASUREMENTS}
    ermf = geom.magnification
    info = {"anatomy": ct.name, "pose": {"rotation_deg": list(angles), "translation_mm": [float(v) for v in shift], "sid_mm": sid, "oid_mm": oid}, "implants": implants}
    return Exam(phase, stored, presentation, geom, proc, masks, landmarks, measurements, world, (geom.pitch_mm / ermf, geom.pitch_mm / ermf), ermf, info)


def render_ct_pair(ct: CtBody, rng: np.random.Generator, size_px: int | None = None) -> Pair:
    """Pre and post exam of the same CT with a rigid pose change; an implant in about half the posts."""
    pre = _exam(ct, rng, "pre", size_px, None)
    offset = np.array([70.0, 0.0, -10.0]) if rng.random() < 0.5 else None
    post = _exam(ct, rng, "post", size_px, offset)
    a = pre.geometry.project(apply(pre.world_from_anatomy, ct.surface_points))
    b = post.geometry.project(apply(post.world_from_anatomy, ct.surface_points))
    inside = lambda p, g: (p[:, 0] >= 0) & (p[:, 0] <= g.cols - 1) & (p[:, 1] >= 0) & (p[:, 1] <= g.rows - 1)  # noqa: E731
    keep = inside(a, pre.geometry) & inside(b, post.geometry)
    if keep.sum() < 20:
        raise VolumeFormatError(f"only {int(keep.sum())} bone points of the CT are visible in both exams")
    return Pair(pre, post, a[keep], b[keep])
