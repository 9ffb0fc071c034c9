"""Cone-beam projection: source, detector, rigid transforms and ray sums.

World space: isocentre at the origin, x toward the patient's left, y
posterior, z cranial (LPS). The source sits anterior at (0, -SOD, 0); the
detector plane is y = SID - SOD. Image columns run along +x (patient's left
on the image right, PatientOrientation L\\F), rows along -z.

Bodies are never resampled when posed: each ray point is mapped back into the
body's own grid (inverse transform) and read with ``torch.grid_sample``, so a
pose costs nothing beyond the ray sums themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.synth.anatomy import Body


@dataclass(frozen=True)
class Geometry:
    """Source-detector geometry and the detector grid (ImagerPixelSpacing = ``pitch_mm``)."""

    sid_mm: float
    sod_mm: float
    pitch_mm: float
    rows: int
    cols: int

    @property
    def magnification(self) -> float:
        """Magnification at the isocentre: SID / SOD."""
        return self.sid_mm / self.sod_mm

    @property
    def source(self) -> np.ndarray:
        return np.array([0.0, -self.sod_mm, 0.0])

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (n, 3) to detector pixels (n, 2) as (x = column, y = row)."""
        p = np.atleast_2d(np.asarray(points, float))
        scale = self.sid_mm / (p[:, 1] + self.sod_mm)
        col = p[:, 0] * scale / self.pitch_mm + (self.cols - 1) / 2.0
        row = -p[:, 2] * scale / self.pitch_mm + (self.rows - 1) / 2.0
        return np.c_[col, row]

    def magnification_at(self, point: np.ndarray) -> float:
        """Local magnification of a world point (SID over its distance from the source along y)."""
        return self.sid_mm / (float(point[1]) + self.sod_mm)

    def detector_points(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Detector-plane world x and z of fractional pixel rows / columns."""
        x = (np.asarray(cols, float) - (self.cols - 1) / 2.0) * self.pitch_mm
        z = -(np.asarray(rows, float) - (self.rows - 1) / 2.0) * self.pitch_mm
        return x, z


def rotation_xyz(ax_deg: float, ay_deg: float, az_deg: float) -> np.ndarray:
    """Rotation matrix R = Rz @ Ry @ Rx from angles about the world axes, in degrees."""
    ax, ay, az = np.radians([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def affine(linear: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 homogeneous matrix from a 3x3 linear part and a translation."""
    m = np.eye(4)
    m[:3, :3] = linear
    m[:3, 3] = translation
    return m


def about_point(linear: np.ndarray, pivot: np.ndarray, moved_to: np.ndarray | None = None) -> np.ndarray:
    """4x4 that applies ``linear`` about ``pivot`` and puts the pivot at ``moved_to`` (default: in place)."""
    target = pivot if moved_to is None else moved_to
    return affine(linear, np.asarray(target, float) - linear @ np.asarray(pivot, float))


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to (n, 3) points."""
    p = np.atleast_2d(np.asarray(points, float))
    return p @ matrix[:3, :3].T + matrix[:3, 3]


@dataclass(frozen=True)
class CoarseGrid:
    """A detector grid ``factor`` times coarser than the image grid (same field)."""

    factor: int
    rows: int
    cols: int

    @staticmethod
    def for_geometry(geom: Geometry, target_pitch_mm: float) -> "CoarseGrid":
        factor = max(1, int(round(target_pitch_mm / geom.pitch_mm)))
        return CoarseGrid(factor, -(-geom.rows // factor), -(-geom.cols // factor))

    def fine_coords(self, index: np.ndarray) -> np.ndarray:
        """Image-pixel coordinate of coarse pixel centres."""
        return np.asarray(index, float) * self.factor + (self.factor - 1) / 2.0


def body_tensor(body: Body, channels: tuple[str, ...]) -> torch.Tensor:
    """The selected channels of a body as a contiguous (1, C, Z, Y, X) tensor (cached on the body)."""
    cache = body.__dict__.setdefault("_tensors", {})
    if channels not in cache:
        idx = [body.channel(c) for c in channels]
        cache[channels] = torch.from_numpy(np.ascontiguousarray(body.data[idx]))[None]
    return cache[channels]


def project_body(
    body: Body,
    channels: tuple[str, ...],
    world_from_body: np.ndarray,
    geom: Geometry,
    grid: CoarseGrid,
    step_mm: float | None = None,
    deform=None,
) -> np.ndarray:
    """Line integrals (mm x channel value) of a posed body on the coarse grid, shape (C, rows, cols).

    Only the window the body's projection covers is computed; elsewhere zero.
    ``deform`` (optional) maps body-space points (n, 3) to displaced body-space
    points, for smooth non-rigid variation of the anatomy.
    """
    out = np.zeros((len(channels), grid.rows, grid.cols), np.float32)
    corners = apply(world_from_body, body.corners_mm())
    pix = geom.project(corners)
    c0 = int(np.clip(np.floor((pix[:, 0].min() - (grid.factor - 1) / 2) / grid.factor) - 1, 0, grid.cols))
    c1 = int(np.clip(np.ceil((pix[:, 0].max() - (grid.factor - 1) / 2) / grid.factor) + 2, 0, grid.cols))
    r0 = int(np.clip(np.floor((pix[:, 1].min() - (grid.factor - 1) / 2) / grid.factor) - 1, 0, grid.rows))
    r1 = int(np.clip(np.ceil((pix[:, 1].max() - (grid.factor - 1) / 2) / grid.factor) + 2, 0, grid.rows))
    if c1 <= c0 or r1 <= r0:
        return out
    step = float(step_mm or body.voxel_mm)
    y_lo, y_hi = corners[:, 1].min(), corners[:, 1].max()
    ys = np.arange(y_lo, y_hi + step, step)
    det_x, det_z = geom.detector_points(grid.fine_coords(np.arange(r0, r1)), grid.fine_coords(np.arange(c0, c1)))
    body_from_world = np.linalg.inv(world_from_body)
    nz, ny, nx = body.data.shape[1:]
    size = np.array([nx - 1, ny - 1, nz - 1], float) * body.voxel_mm
    # index-normalised coordinates: n = (A p + b - origin) * 2 / size - 1
    lin = body_from_world[:3, :3] * (2.0 / size)[:, None]
    off = (body_from_world[:3, 3] - body.origin_mm) * (2.0 / size) - 1.0
    dx = torch.from_numpy(det_x.astype(np.float32))  # (w,)
    dz = torch.from_numpy(det_z.astype(np.float32))  # (h,)
    lin_t = torch.from_numpy(lin.astype(np.float32))
    off_t = torch.from_numpy(off.astype(np.float32))
    vol = body_tensor(body, channels)
    acc = torch.zeros((len(channels), r1 - r0, c1 - c0))
    chunk = max(1, int(2_000_000 // max(1, (r1 - r0) * (c1 - c0))))
    for start in range(0, len(ys), chunk):
        yc = torch.from_numpy(((ys[start : start + chunk] + geom.sod_mm) / geom.sid_mm).astype(np.float32))
        d = len(yc)
        px = (yc[:, None, None] * dx[None, None, :]).expand(d, r1 - r0, c1 - c0)
        pz = (yc[:, None, None] * dz[None, :, None]).expand(d, r1 - r0, c1 - c0)
        py = torch.from_numpy((ys[start : start + chunk]).astype(np.float32))[:, None, None].expand(d, r1 - r0, c1 - c0)
        p = torch.stack([px, py, pz], -1)
        if deform is not None:
            q = apply(body_from_world, p.reshape(-1, 3).numpy())
            q = deform(q)
            g = torch.from_numpy(((q - body.origin_mm) * (2.0 / size) - 1.0).astype(np.float32)).reshape(d, r1 - r0, c1 - c0, 3)
        else:
            g = p @ lin_t.T + off_t
        sampled = F.grid_sample(vol, g[None], mode="bilinear", padding_mode="zeros", align_corners=True)
        acc += sampled[0].sum(1)
    # path length per sample: step along y scaled by the ray's obliquity
    ray_len = np.sqrt(det_x[None, :] ** 2 + det_z[:, None] ** 2 + geom.sid_mm**2) / geom.sid_mm
    out[:, r0:r1, c0:c1] = acc.numpy() * (step * ray_len)[None].astype(np.float32)
    return out


@dataclass(frozen=True)
class PointCloud:
    """A body as weighted points: anatomy-space positions (n, 3) and per-channel values (n, C).

    Each point stands for one voxel of ``voxel_mm`` at the voxel centre. The
    lattice is not jittered: jitter adds noise, and the cone beam's depth-
    dependent magnification plus the pose rotation already break the lattice
    (measured: 1.4 % mean deviation from ray casting, 7 % with jitter).
    """

    points: np.ndarray
    values: np.ndarray
    channels: tuple[str, ...]
    voxel_mm: float


def body_points(body: Body, channels: tuple[str, ...], depth_merge: int = 1) -> PointCloud:
    """The non-empty voxels of ``body`` as a :class:`PointCloud` (cached on the body).

    ``depth_merge`` > 1 sums runs of that many voxels along y (the beam
    direction) into one point at their centre: the in-plane lattice, and so
    the image, is unchanged (a 10 degree pose moves a merged 2.5 mm run's
    projection by 0.2 mm at most), and the splat has fewer points.
    """
    cache = body.__dict__.setdefault("_clouds", {})
    key = (channels, depth_merge)
    if key not in cache:
        idx = [body.channel(c) for c in channels]
        data = body.data[idx].astype(np.float32)
        m = max(1, int(depth_merge))
        if m > 1:
            pad = (-data.shape[2]) % m
            if pad:
                data = np.pad(data, ((0, 0), (0, 0), (0, pad), (0, 0)))
            c, nz, ny, nx = data.shape
            data = data.reshape(c, nz, ny // m, m, nx).sum(3)
        nz_idx = np.nonzero(np.abs(data).max(0) > 1e-4)
        values = np.ascontiguousarray(data[(slice(None), *nz_idx)].T.astype(np.float32))
        zyx = np.stack(nz_idx, 1).astype(np.float32)
        zyx[:, 1] = zyx[:, 1] * m + (m - 1) / 2.0
        pts = zyx[:, ::-1] * np.float32(body.voxel_mm) + body.origin_mm.astype(np.float32)
        cache[key] = PointCloud(np.ascontiguousarray(pts), values, channels, body.voxel_mm)
    return cache[key]


def splat(
    cloud: PointCloud,
    world_from_body: np.ndarray,
    geom: Geometry,
    grid: CoarseGrid,
    weights: np.ndarray | None = None,
    displace=None,
) -> np.ndarray:
    """Line integrals (channel x mm) of a posed point cloud on the coarse grid, shape (C, rows, cols).

    Forward projection: each voxel adds value x voxel volume / (ray footprint
    area at its depth) to the pixels around its projection (bilinear). This is
    the discrete line integral, exact on average, and far faster on a CPU than
    marching rays through mostly empty boxes. ``weights`` (n, C') optionally
    replaces ``cloud.values``; ``displace`` maps anatomy points to deformed ones.
    """
    values = cloud.values if weights is None else weights
    pts = cloud.points if displace is None else displace(cloud.points)
    lin = world_from_body[:3, :3].astype(np.float32)
    w = pts @ lin.T + world_from_body[:3, 3].astype(np.float32)
    scale = np.float32(geom.sid_mm) / (w[:, 1] + np.float32(geom.sod_mm))
    pitch = np.float32(geom.pitch_mm * grid.factor)
    u = w[:, 0] * scale / pitch + np.float32((geom.cols - 1) / 2.0 / grid.factor - (grid.factor - 1) / 2.0 / grid.factor)
    v = -w[:, 2] * scale / pitch + np.float32((geom.rows - 1) / 2.0 / grid.factor - (grid.factor - 1) / 2.0 / grid.factor)
    amount = np.float32(cloud.voxel_mm**3) * scale * scale / (pitch * pitch)
    i0 = np.floor(u).astype(np.intp)
    j0 = np.floor(v).astype(np.intp)
    fu = u - i0
    fv = v - j0
    ok = (i0 >= 0) & (i0 < grid.cols - 1) & (j0 >= 0) & (j0 < grid.rows - 1)
    if not ok.all():
        i0, j0, fu, fv, amount, values = i0[ok], j0[ok], fu[ok], fv[ok], amount[ok], values[ok]
    base = j0 * grid.cols + i0
    index = np.concatenate([base, base + 1, base + grid.cols, base + grid.cols + 1])
    gu, gv = 1.0 - fu, 1.0 - fv
    corner = np.concatenate([gu * gv * amount, fu * gv * amount, gu * fv * amount, fu * fv * amount]).reshape(4, -1)
    n = grid.rows * grid.cols
    out = np.empty((values.shape[1], grid.rows, grid.cols), np.float32)
    for c in range(values.shape[1]):
        out[c] = np.bincount(index, weights=(corner * values[:, c]).ravel(), minlength=n).reshape(grid.rows, grid.cols)
    return out
