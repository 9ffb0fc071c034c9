"""One CT anatomy prepared for fast projection, with its 3D ground truth.

A pelvic-ref label map becomes three kinds of rigid *bodies* that the
projector samples: the pelvis body (hip bones, sacrum, spine), one body per
femur (posed independently about its head centre) and a coarse soft-tissue
body. Each body holds attenuation channels (already in 1/mm) and occupancy
channels (for masks) on an isotropic grid, resampled from the 1 x 1 x 3 mm
labels with smoothing so the 3 mm slice steps do not show as stripes.

The 3D ground truth is computed here once per anatomy: best-fit femoral head
spheres, femoral shaft axes, and for each landmark a small set of candidate
3D points on its structure; the exam renderer projects the candidates and
picks the extreme one the spec's definition asks for (e.g. "most cranial").
Preparation takes a few seconds, so anatomies are cached per process.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from models.algorithms.geometry import robust_fit_sphere
from models.synth.volume_io import Volume, VolumeFormatError, read_metaimage

log = logging.getLogger(__name__)

# Linear attenuation coefficients in 1/mm at an effective energy of ~55 keV.
MU_FAT = 0.0185
MU_MUSCLE = 0.0215
MU_CORTICAL = 0.075
MU_TRABECULAR = 0.034
MU_MARROW = 0.020

BONE_VOXEL_MM = 1.25
SOFT_VOXEL_MM = 3.0

LABEL_PELVIS, LABEL_FEMUR, LABEL_SACRUM, LABEL_SPINE = 1, 2, 3, 4
ROOF_DEPTH_MM = 8.0  # the acetabular roof: hip bone this far beyond the head sphere ...
ROOF_SLAB_HALF_MM = 4.0  # ... in a coronal slab this thick (either side of the head centre)
JOINT_SPACE_MM = 5.0  # gap carved between head sphere and acetabulum (cartilage + mask tolerance)


@dataclass
class Body:
    """A rigid body's channels on an isotropic grid, ``data[c, z, y, x]`` (float32).

    ``origin_mm`` is the anatomy-space position of voxel (0, 0, 0); anatomy
    space is the label map's LPS millimetre space.
    """

    data: np.ndarray
    channels: tuple[str, ...]
    origin_mm: np.ndarray
    voxel_mm: float

    @property
    def size_mm(self) -> np.ndarray:
        nz, ny, nx = self.data.shape[1:]
        return np.array([nx - 1, ny - 1, nz - 1], float) * self.voxel_mm

    def corners_mm(self) -> np.ndarray:
        """The 8 corners of the grid in anatomy space, shape (8, 3)."""
        lo, hi = self.origin_mm, self.origin_mm + self.size_mm
        return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])

    def channel(self, name: str) -> int:
        return self.channels.index(name)


@dataclass
class FemurGeometry:
    """3D ground truth of one femur, in anatomy space (mm)."""

    head_centre: np.ndarray
    head_radius_mm: float
    shaft_axis: np.ndarray  # unit vector pointing distally along the shaft
    shaft_proximal: np.ndarray  # centreline 20 mm below the lesser trochanter
    shaft_distal: np.ndarray  # centreline 80 mm below (or the most distal level available)
    lesser_trochanter: np.ndarray
    neck_cut_normal: np.ndarray  # unit, points from the neck base toward the head
    neck_cut_offset_mm: float  # points p with (p - head_centre) . normal > -offset are resected
    canal_top: np.ndarray  # shaft centreline point at the neck cut level (stem shoulder)
    neutral_rotation: np.ndarray  # 3x3 about the head centre: brings the shaft into the coronal plane


@dataclass
class Anatomy:
    """A prepared anatomy: projection bodies plus 3D ground truth."""

    name: str
    pelvis: Body
    femurs: dict[str, Body]  # side -> body with pre and post-op channels
    soft: Body
    femur_geometry: dict[str, FemurGeometry]
    candidates: dict[str, np.ndarray]  # landmark base name (with side) -> (n, 3) points
    ring_points: np.ndarray  # (n, 3) well-spread points on the pelvic ring surface
    midline_x_mm: float
    anchor_mm: np.ndarray  # midpoint of the two head centres: the pose pivot
    extra: dict[str, object] = field(default_factory=dict)


def _world(idx: np.ndarray, volume: Volume) -> np.ndarray:
    return np.asarray(volume.origin_mm) + idx * np.asarray(volume.spacing_mm)


def _resample(mask: np.ndarray, volume: Volume, lo: np.ndarray, shape: tuple[int, int, int], voxel: float) -> np.ndarray:
    """Occupancy fraction of ``mask`` (label grid, [x,y,z]) on an isotropic grid, returned [z, y, x]."""
    spacing = np.asarray(volume.spacing_mm)
    origin = np.asarray(volume.origin_mm)
    hi = lo + (np.array(shape) - 1) * voxel
    i0 = np.maximum(np.floor((lo - origin) / spacing).astype(int) - 3, 0)
    i1 = np.minimum(np.ceil((hi - origin) / spacing).astype(int) + 4, np.array(mask.shape))
    crop = mask[i0[0] : i1[0], i0[1] : i1[1], i0[2] : i1[2]]
    origin = origin + i0 * spacing
    # Smooth first along z (3 mm slices) so the trilinear resample does not show steps.
    field_ = ndimage.gaussian_filter(crop.astype(np.float32), sigma=(0.6, 0.6, 0.55))
    coords = [(lo[a] + np.arange(shape[a]) * voxel - origin[a]) / spacing[a] for a in range(3)]
    grid = np.meshgrid(coords[2], coords[1], coords[0], indexing="ij")  # z, y, x
    out = ndimage.map_coordinates(field_, [grid[2], grid[1], grid[0]], order=1, mode="constant", cval=0.0)
    return out.astype(np.float32)


def _bbox(mask: np.ndarray, volume: Volume, margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(mask)
    lo = _world(idx.min(0), volume) - margin_mm
    hi = _world(idx.max(0), volume) + margin_mm
    return lo, hi


def _grid_shape(lo: np.ndarray, hi: np.ndarray, voxel: float) -> tuple[int, int, int]:
    n = np.ceil((hi - lo) / voxel).astype(int) + 1
    return int(n[0]), int(n[1]), int(n[2])


def _texture(shape: tuple[int, ...], rng: np.random.Generator, sigma: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return noise / max(float(noise.std()), 1e-6)


def _bone_attenuation(occ: np.ndarray, cortex_mm: np.ndarray | float, marrow: np.ndarray | None, rng: np.random.Generator, voxel: float) -> np.ndarray:
    """Excess attenuation of bone over soft tissue: cortical shell over a textured interior."""
    inside = occ > 0.5
    depth_mm = ndimage.distance_transform_edt(inside) * voxel
    cortex = np.clip(1.0 - (depth_mm - np.asarray(cortex_mm)) / 1.2, 0.0, 1.0)
    texture = _texture(occ.shape, rng, 0.7)
    trabecular = MU_TRABECULAR * (1.0 + 0.3 * texture)
    interior = trabecular if marrow is None else np.where(marrow > 0, MU_MARROW + 0.002 * texture, trabecular)
    mu = occ * (cortex * MU_CORTICAL + (1.0 - cortex) * interior) - occ * MU_MUSCLE
    return np.maximum(mu, 0.0).astype(np.float32)


def _carve(
    occ: np.ndarray, lo: np.ndarray, voxel: float, centre: np.ndarray, r_in: float, r_out: float, spare: np.ndarray | None = None
) -> np.ndarray:
    """Zero ``occ`` (grid [z, y, x] at ``lo``) between radii ``r_in`` and ``r_out`` of ``centre``, 0.5 mm ramps.

    Done on the isotropic grid: on the 3 mm label slices a 3.5 mm gap can vanish.
    ``spare`` (unit vector) keeps a 60 degree cone around it (the femoral neck).
    """
    nz, ny, nx = occ.shape
    z = lo[2] + np.arange(nz) * voxel - centre[2]
    y = lo[1] + np.arange(ny) * voxel - centre[1]
    x = lo[0] + np.arange(nx) * voxel - centre[0]
    d = np.sqrt(z[:, None, None] ** 2 + y[None, :, None] ** 2 + x[None, None, :] ** 2)
    mid, half = 0.5 * (r_in + r_out), 0.5 * (r_out - r_in)
    keep = np.clip((np.abs(d - mid) - half) / 0.5 + 0.5, 0.0, 1.0)
    if spare is not None:
        along = z[:, None, None] * spare[2] + y[None, :, None] * spare[1] + x[None, None, :] * spare[0]
        keep = np.where(along > 0.5 * d, 1.0, keep)
    return (occ * keep).astype(np.float32)


def _binary(occupancy: np.ndarray) -> np.ndarray:
    """Mask channels are the 0.5 iso-surface of the smoothed occupancy, so mask edges do not
    creep outward where a ray runs tangentially through a smoothed tail."""
    return (occupancy > 0.5).astype(np.float32)


def _split_femurs(label: np.ndarray, midline_index: float) -> dict[str, np.ndarray]:
    lab, n = ndimage.label(label == LABEL_FEMUR)
    if n < 2:
        raise VolumeFormatError("label map has fewer than two femur components")
    sizes = np.bincount(lab.ravel())[1:]
    big = np.argsort(sizes)[::-1][:2] + 1
    out: dict[str, np.ndarray] = {}
    for comp in big:
        mask = lab == comp
        cx = np.argwhere(mask)[:, 0].mean()
        out["right" if cx < midline_index else "left"] = mask
    if len(out) != 2:
        raise VolumeFormatError("both femur components lie on the same side of the midline")
    return out


def _surface_points(mask: np.ndarray, volume: Volume) -> np.ndarray:
    idx = np.argwhere(mask)
    i0, i1 = np.maximum(idx.min(0) - 1, 0), idx.max(0) + 2
    crop = mask[i0[0] : i1[0], i0[1] : i1[1], i0[2] : i1[2]]
    surface = crop & ~ndimage.binary_erosion(crop)
    return _world(np.argwhere(surface) + i0, volume)


def _grid_surface_points(occupied: np.ndarray, lo: np.ndarray, voxel: float) -> np.ndarray:
    """World (x, y, z) centres of the boundary voxels of an isotropic [z, y, x] grid."""
    surface = occupied & ~ndimage.binary_erosion(occupied)
    zyx = np.argwhere(surface)
    return lo + zyx[:, ::-1] * voxel


def _own_side(points: np.ndarray, midline_x: float, side: str) -> np.ndarray:
    """The ``points`` (world x, y, z) on ``side`` of the sagittal plane x = ``midline_x``."""
    lateral = -1.0 if side == "right" else 1.0
    return points[(points[:, 0] - midline_x) * lateral > 0]


def _lowest_points(surface: np.ndarray, midline_x: float, side: str, band_mm: float) -> np.ndarray:
    """Surface points of one side of the midline within ``band_mm`` of that side's lowest z.

    The ischial tuberosity's candidates: the generator projects them and keeps
    the most caudal. They are taken from the *rendered* bone (the label
    smoothed and resampled to BONE_VOXEL_MM), not the 3 mm-slice label: the
    label's lowest slice differs from the rendered bottom by up to 2 mm, a
    different amount on each side, and the reference line through the two
    tuberosities turns that into several millimetres of leg length.
    """
    own = _own_side(surface, midline_x, side)
    return own[own[:, 2] <= own[:, 2].min() + band_mm]


LESSER_TROCHANTER_REACH_MM = 8.0
"""Femur surface within this distance of the label's lesser-trochanter point is its candidate set."""


def _near_points(surface: np.ndarray, centre: np.ndarray, reach_mm: float) -> np.ndarray:
    """The ``surface`` points within ``reach_mm`` of ``centre`` (world mm).

    The lesser trochanter's candidates come from the *rendered* femur (label
    smoothed and resampled to BONE_VOXEL_MM), like the tuberosities': the film
    shows that bone, not the 3 mm-slice label.
    """
    return surface[np.linalg.norm(surface - centre, axis=1) <= reach_mm]


def _femur_geometry(femur: np.ndarray, pelvis_side: np.ndarray, volume: Volume, side: str, midline_x: float) -> tuple[FemurGeometry, dict[str, np.ndarray]]:
    pts = _world(np.argwhere(femur), volume)
    surf = _surface_points(femur, volume)
    # The femoral head surface is the femur surface facing the acetabulum.
    top = np.argwhere(femur)
    top_z = int(top[:, 2].max())
    z0 = max(top_z - 25, 0)
    head_idx = top[top[:, 2] >= z0]
    x0, y0 = np.maximum(head_idx[:, :2].min(0) - 12, 0)
    x1, y1 = head_idx[:, :2].max(0) + 13
    sub_f = femur[x0:x1, y0:y1, z0:]
    near = ndimage.distance_transform_edt(~pelvis_side[x0:x1, y0:y1, z0:], sampling=volume.spacing_mm)
    surf_idx = np.argwhere(sub_f & ~ndimage.binary_erosion(sub_f))
    contact = surf_idx[near[tuple(surf_idx.T)] <= 6.0] + np.array([x0, y0, z0])
    if len(contact) < 30:
        raise VolumeFormatError(f"{side} femoral head: too few joint surface points to fit a sphere")
    centre, radius = robust_fit_sphere(_world(contact, volume))
    if not 15.0 <= radius <= 35.0:
        raise VolumeFormatError(f"{side} femoral head sphere radius {radius:.1f} mm is implausible")
    lateral = -1.0 if side == "right" else 1.0  # x grows toward the patient's left
    # Shaft axis from cross-section centroids 70..(available) mm below the head centre.
    zs = np.unique(pts[:, 2])
    levels = [z for z in zs if centre[2] - 170 <= z <= centre[2] - 75]
    if len(levels) < 3:
        levels = [z for z in zs if z <= centre[2] - 60][:8]
    cents = np.array([pts[pts[:, 2] == z].mean(0) for z in levels])
    mean = cents.mean(0)
    _, _, vt = np.linalg.svd(cents - mean)
    axis = vt[0] / np.linalg.norm(vt[0])
    if axis[2] > 0:
        axis = -axis  # distal
    # Lesser trochanter: the most medial (from the shaft axis) posteromedial bump 30..80 mm below the head.
    band = surf[(surf[:, 2] <= centre[2] - 30) & (surf[:, 2] >= centre[2] - 80)]
    rel = band - mean
    radial = rel - np.outer(rel @ axis, axis)
    medial_dist = -lateral * radial[:, 0] + 0.4 * radial[:, 1]
    lt = band[int(np.argmax(medial_dist))]
    lt_t = float((lt - mean) @ axis)

    def centreline(t: float) -> np.ndarray:
        plane = pts[np.abs((pts - mean) @ axis - t) <= 1.6]
        return plane.mean(0) if len(plane) else mean + t * axis

    t_available = float(((pts - mean) @ axis).max()) - 3.0
    prox = centreline(min(lt_t + 20.0, t_available))
    dist = centreline(min(lt_t + 80.0, t_available))
    # Neck cut: perpendicular to the neck axis (head centre -> shaft axis point), R + 9 mm from the centre.
    t_head = float((centre - mean) @ axis)
    neck_base = mean + (t_head + 30.0) * axis
    normal = centre - neck_base
    normal /= np.linalg.norm(normal)
    offset = radius + 9.0
    canal_top = mean + (t_head + 25.0) * axis
    # CT legs often rest flexed on a cushion; an AP pelvis is taken with the hips extended.
    target = np.array([axis[0], 0.0, axis[2]])
    target /= np.linalg.norm(target)
    neutral = _rotation_between(axis, target)
    geo = FemurGeometry(centre, radius, axis, prox, dist, lt, normal, offset, canal_top, neutral)
    # Candidate point sets for landmarks picked after projection.
    rel_c = surf - centre
    gt_mask = (lateral * rel_c[:, 0] > radius + 12.0) & (rel_c[:, 2] > -35.0) & (rel_c[:, 2] < 40.0)
    cand = {"greater_trochanter": surf[gt_mask]}
    return geo, cand


SYMPHYSIS_SEARCH_MM = 20.0
"""The symphysis is sought this far either side of the sacral midline (the two need not coincide:
5 mm apart in Pelvic-Ref-002 and -004)."""
SYMPHYSIS_FACE_MM = 4.0
"""Pubic surface within this distance of the gap's centre plane counts as the joint's face."""


def symphysis_gap_x(pelvis: np.ndarray, volume: Volume, midline_x: float) -> float:
    """x (mm) of the pubic symphysis: the thinnest hip-bone column near the sacral midline.

    The two pubic bodies meet across a cartilage gap, so the hip-bone label
    is thinnest (often empty) in the x-columns of the joint; bone elsewhere
    near the midline exists only at the symphysis (the sacrum is another label).
    """
    spacing = float(volume.spacing_mm[0])
    centre = (midline_x - float(volume.origin_mm[0])) / spacing
    lo = max(int(np.floor(centre - SYMPHYSIS_SEARCH_MM / spacing)), 0)
    hi = min(int(np.ceil(centre + SYMPHYSIS_SEARCH_MM / spacing)) + 1, pelvis.shape[0])
    columns = pelvis[lo:hi].sum(axis=(1, 2)).astype(np.float64)
    if not columns.any():
        raise VolumeFormatError(f"{volume.name}: no pubic symphysis near the midline")
    columns = ndimage.gaussian_filter1d(columns, 1.0 / spacing)
    bone = np.nonzero(columns > 0.05 * columns.max())[0]
    inner = columns[bone.min() : bone.max() + 1]  # the gap lies between bone on both sides
    thinnest = int(np.argmin(inner))
    if thinnest in (0, len(inner) - 1):  # the thinnest column is the end of one bone: no joint between two
        raise VolumeFormatError(f"{volume.name}: no gap between two pubic bodies within "
                                f"{SYMPHYSIS_SEARCH_MM:.0f} mm of the midline")
    return float(volume.origin_mm[0]) + (lo + int(bone.min()) + thinnest) * spacing


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation matrix taking unit vector ``a`` onto unit vector ``b`` (Rodrigues)."""
    v = np.cross(a, b)
    c = float(a @ b)
    if np.linalg.norm(v) < 1e-9:
        return np.eye(3)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def _farthest_points(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    chosen = [int(rng.integers(len(points)))]
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(n - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return points[chosen]


def prepare_anatomy(label_path: str | Path) -> Anatomy:
    """Read a pelvic-ref label map and build its bodies and 3D ground truth (seconds)."""
    volume = read_metaimage(label_path)
    label = volume.data
    body_mask = None
    mask_path = Path(label_path)
    mask_path = (mask_path if mask_path.is_dir() else mask_path.parent) / "mask.mhd"
    if mask_path.is_file():
        body_mask = read_metaimage(mask_path).data > 0
    if body_mask is None or body_mask.shape != label.shape:
        body_mask = ndimage.binary_closing(label > 0, iterations=3)
    for needed in (LABEL_PELVIS, LABEL_FEMUR):
        if not (label == needed).any():
            raise VolumeFormatError(f"{volume.name}: label {needed} (pelvis/femur) is missing")
    rng = np.random.default_rng(zlib.crc32(volume.name.encode()))
    pelvis = label == LABEL_PELVIS
    sacrum = label == LABEL_SACRUM
    spine = label == LABEL_SPINE
    midline_index = float(np.argwhere(sacrum)[:, 0].mean()) if sacrum.any() else float(np.argwhere(pelvis)[:, 0].mean())
    midline_x = float(volume.origin_mm[0] + midline_index * volume.spacing_mm[0])
    femurs = _split_femurs(label, midline_index)
    xs = np.arange(label.shape[0])[:, None, None]
    pelvis_side = {"right": pelvis & (xs < midline_index), "left": pelvis & (xs >= midline_index)}

    femur_geo: dict[str, FemurGeometry] = {}
    candidates: dict[str, np.ndarray] = {}
    for side in ("right", "left"):
        geo, cand = _femur_geometry(femurs[side], pelvis_side[side], volume, side, midline_x)
        femur_geo[side] = geo
        for k, v in cand.items():
            candidates[f"{k}_{side}"] = v

    # Radiographic joint space: the labels let the acetabulum touch the head; carve the cartilage gap.
    for side in ("right", "left"):
        geo = femur_geo[side]
        idx = np.argwhere(pelvis_side[side])
        d = np.linalg.norm(_world(idx, volume) - geo.head_centre, axis=1)
        gone = idx[d < geo.head_radius_mm + JOINT_SPACE_MM]
        pelvis[tuple(gone.T)] = False
        pelvis_side[side][tuple(gone.T)] = False
        head_zone = np.argwhere(femurs[side])
        d = np.linalg.norm(_world(head_zone, volume) - geo.head_centre, axis=1)
        femurs[side][tuple(head_zone[(d > geo.head_radius_mm + 0.5) & (d < geo.head_radius_mm + JOINT_SPACE_MM)].T)] = False

    # Pelvis landmark candidates.
    pelvis_surf = _surface_points(pelvis, volume)
    gap_x = symphysis_gap_x(pelvis, volume, midline_x)
    for face, sign in (("right", -1.0), ("left", 1.0)):
        own = pelvis_surf[(sign * (pelvis_surf[:, 0] - gap_x) > 0) & (np.abs(pelvis_surf[:, 0] - gap_x) <= SYMPHYSIS_FACE_MM)]
        if len(own) == 0:
            raise VolumeFormatError(f"{volume.name}: no {face} pubic body at the symphysis")
        candidates[f"pubic_symphysis_{face}_face"] = own[own[:, 2] >= own[:, 2].max() - 6.0]

    ring_source = _surface_points(pelvis | sacrum, volume)
    ring_points = _farthest_points(ring_source, 64, np.random.default_rng(7))

    # --- pelvis body: bone attenuation, pelvis (+ sacrum) occupancy, acetabular roof slab occupancy.
    bones = pelvis | sacrum | spine
    lo, hi = _bbox(bones, volume, 6.0)
    shape = _grid_shape(lo, hi, BONE_VOXEL_MM)
    occ_bone = _resample(bones, volume, lo, shape, BONE_VOXEL_MM)
    occ_pelvis = _resample(pelvis | sacrum, volume, lo, shape, BONE_VOXEL_MM)
    rendered_hip_surface = _grid_surface_points(_resample(pelvis, volume, lo, shape, BONE_VOXEL_MM) > 0.5, lo, BONE_VOXEL_MM)
    for side in ("right", "left"):
        candidates[f"ischial_tuberosity_{side}"] = _lowest_points(rendered_hip_surface, midline_x, side, 12.0)
    roof = np.zeros_like(pelvis)
    idx = np.argwhere(pelvis)
    pw = _world(idx, volume)
    for side in ("right", "left"):
        geo = femur_geo[side]
        rel = pw - geo.head_centre
        d = np.linalg.norm(rel, axis=1)
        sel = (d - geo.head_radius_mm <= ROOF_DEPTH_MM) & (np.abs(rel[:, 1]) <= ROOF_SLAB_HALF_MM) & (rel[:, 2] >= 0.0)
        if sel.sum() < 3:
            raise VolumeFormatError(f"{volume.name}: no acetabular roof found on the {side}")
        roof[tuple(idx[sel].T)] = True
        # The lateral edge is the lateral end of this roof (the sourcil the film shows), so its
        # candidates are the roof's own voxels: a wider rim slab (+-8 mm) reached the anterior or
        # posterior rim, 2.6-3 mm caudal of the sourcil's end on the left hips (docs/synth.md).
        candidates[f"acetabular_lateral_edge_{side}"] = pw[sel]
    occ_roof = _resample(roof, volume, lo, shape, BONE_VOXEL_MM)
    for side in ("right", "left"):
        geo = femur_geo[side]
        gap = geo.head_radius_mm + JOINT_SPACE_MM
        occ_bone = _carve(occ_bone, lo, BONE_VOXEL_MM, geo.head_centre, -1.0, gap)
        occ_pelvis = _carve(occ_pelvis, lo, BONE_VOXEL_MM, geo.head_centre, -1.0, gap)
        occ_roof = _carve(occ_roof, lo, BONE_VOXEL_MM, geo.head_centre, -1.0, gap)
    mu_bone = _bone_attenuation(occ_bone, 1.6, None, rng, BONE_VOXEL_MM)
    pelvis_body = Body(np.stack([mu_bone, _binary(occ_pelvis), _binary(occ_roof)]), ("mu", "pelvis", "roof"), lo, BONE_VOXEL_MM)

    # --- femur bodies: pre-op and post-op (neck resected) channels.
    femur_bodies: dict[str, Body] = {}
    for side in ("right", "left"):
        geo = femur_geo[side]
        lo_f, hi_f = _bbox(femurs[side], volume, 6.0)
        shape_f = _grid_shape(lo_f, hi_f, BONE_VOXEL_MM)
        occ = _resample(femurs[side], volume, lo_f, shape_f, BONE_VOXEL_MM)
        rendered_surface = _grid_surface_points(occ > 0.5, lo_f, BONE_VOXEL_MM)
        candidates[f"lesser_trochanter_{side}"] = _near_points(rendered_surface, geo.lesser_trochanter, LESSER_TROCHANTER_REACH_MM)
        occ = _carve(occ, lo_f, BONE_VOXEL_MM, geo.head_centre, geo.head_radius_mm + 0.5,
                     geo.head_radius_mm + JOINT_SPACE_MM + 2.0, spare=-geo.neck_cut_normal)
        zz, yy, xx = np.meshgrid(*[lo_f[a] + np.arange(shape_f[a]) * BONE_VOXEL_MM for a in (2, 1, 0)], indexing="ij")
        p = np.stack([xx, yy, zz], -1) - geo.head_centre
        t = p @ geo.shaft_axis - float((geo.lesser_trochanter - geo.head_centre) @ geo.shaft_axis)
        radial = np.linalg.norm(p - (p @ geo.shaft_axis)[..., None] * geo.shaft_axis, axis=-1)
        # Cortex thickens from ~1.5 mm at the trochanters to ~5 mm in the diaphysis; marrow canal below.
        cortex = 1.5 + np.clip((t - 10.0) / 40.0, 0.0, 1.0) * 3.5
        marrow = ((t > 25.0) & (radial < 7.0)).astype(np.float32)
        mu = _bone_attenuation(occ, cortex, marrow, rng, BONE_VOXEL_MM)
        head = (np.linalg.norm(p, axis=-1) <= geo.head_radius_mm + 1.0).astype(np.float32) * occ
        cut = (p @ geo.neck_cut_normal > -geo.neck_cut_offset_mm) & (np.linalg.norm(p, axis=-1) < geo.neck_cut_offset_mm + 25)
        keep = 1.0 - ndimage.gaussian_filter(cut.astype(np.float32), 0.5)
        femur_bodies[side] = Body(
            np.stack([mu, _binary(occ), _binary(head), mu * keep, _binary(occ * keep)]).astype(np.float32),
            ("mu", "femur", "head", "mu_post", "femur_post"),
            lo_f,
            BONE_VOXEL_MM,
        )

    # --- soft tissue body at 3 mm: muscle and fat path fractions (bone counted as muscle).
    lo_s, hi_s = _bbox(body_mask, volume, 3.0)
    shape_s = _grid_shape(lo_s, hi_s, SOFT_VOXEL_MM)
    muscle_labels = (label >= 5) | bones | (label == LABEL_FEMUR)
    occ_body = _resample(body_mask, volume, lo_s, shape_s, SOFT_VOXEL_MM)
    occ_muscle = np.minimum(_resample(muscle_labels, volume, lo_s, shape_s, SOFT_VOXEL_MM), occ_body)
    soft = Body(np.stack([occ_muscle, occ_body - occ_muscle]), ("muscle", "fat"), lo_s, SOFT_VOXEL_MM)

    anchor = 0.5 * (femur_geo["right"].head_centre + femur_geo["left"].head_centre)
    log.info("prepared anatomy %s", volume.name)
    return Anatomy(volume.name, pelvis_body, femur_bodies, soft, femur_geo, candidates, ring_points, midline_x, anchor)


CACHE_VERSION = 9


def _cache_file(label_path: Path) -> Path | None:
    root = os.environ.get("HIPNODE_SYNTH_CACHE", str(Path.home() / ".cache" / "hipnode" / "synth"))
    if root.lower() in ("", "0", "off", "none"):
        return None
    header = label_path / "label.mhd" if label_path.is_dir() else label_path
    try:
        stamp = "".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns};" for f in sorted(header.parent.glob("*")) if f.is_file())
    except OSError:
        return None
    key = hashlib.sha256(f"{CACHE_VERSION}|{header.resolve()}|{stamp}".encode()).hexdigest()[:24]
    return Path(root) / f"anatomy-{key}.pkl"


@functools.lru_cache(maxsize=4)
def load_anatomy(label_path: str) -> Anatomy:
    """:func:`prepare_anatomy`, cached per process and on disk (``HIPNODE_SYNTH_CACHE``, ``off`` to disable).

    The disk cache is keyed by the label files' path, size and mtime and by
    :data:`CACHE_VERSION`, so an edited map or a changed preparation is rebuilt.
    """
    path = Path(label_path)
    cache = _cache_file(path)
    if cache is not None and cache.is_file():
        try:
            with cache.open("rb") as fh:
                anatomy = pickle.load(fh)
            if isinstance(anatomy, Anatomy):
                return anatomy
        except Exception:  # a corrupt or stale cache file is simply rebuilt
            log.warning("ignoring unreadable anatomy cache %s", cache)
    anatomy = prepare_anatomy(path)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            with tmp.open("wb") as fh:
                pickle.dump(anatomy, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, cache)
        except OSError as exc:
            log.warning("cannot write anatomy cache %s: %s", cache, exc)
    return anatomy
