"""Render AP pelvis exams and pre/post-op pairs with exact ground truth.

A *patient* (one anatomy, its size and its arthroplasty plan) is sampled
once per pair; each *exam* samples its own pose, table height, soft tissue,
bowel gas and image processing. Ground truth comes from the same transforms
that produce the pixels: masks are projections of the 3D structures,
landmarks are projections of 3D points on their structures, measurements go
through :mod:`models.algorithms.measurements`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from models.algorithms.exposed_field import ExposedField
from models.algorithms.femoral_outline import snap_to_femoral_outline
from models.algorithms.geometry import pelvic_frame, sector_mask
from models.algorithms.hip_outline import acetabular_lateral_edge
from models.algorithms.measurements import compute_measurements
from models.algorithms.pelvic_extremes import (
    caudal_direction,
    extreme_near,
    extreme_points,
    ischial_tuberosity,
)
from models.algorithms.vocabulary import LANDMARKS, SEGMENTS, SIDES
from models.synth.anatomy import MU_FAT, MU_MUSCLE, Anatomy
from models.synth.deform import Deformation, identity, sample_deformation
from models.synth.detector import Processing, expose, exposed_field, lead_marker, sample_processing
from models.synth.implant import Hip, cup_axis_world, render_hip
from models.synth.projection import (
    CoarseGrid,
    Geometry,
    about_point,
    affine,
    apply,
    body_points,
    rotation_xyz,
    splat,
)

FULL_COLS, FULL_ROWS, FULL_PITCH_MM = 2560, 2048, 0.16  # 410 x 328 mm detector
OCCUPANCY_MM = 0.3  # a ray "crosses" a structure when its path inside exceeds this
TROCHANTER_SEARCH_MM = 15.0  # the greater trochanter's top on the film: the femur's extreme this near the 3D one
ROOF_SECTOR_DEG = 60.0  # the acetabular roof segment (and its lateral edge) lie within this angle of the vertical


@dataclass(frozen=True)
class HipPlan:
    """A patient's arthroplasty on one side, in anatomy terms."""

    inclination_deg: float
    anteversion_deg: float
    head_radius_mm: float
    cup_outer_mm: float
    cup_shift_mm: np.ndarray  # cup centre minus native head centre (anatomy space)
    head_on_femur_mm: np.ndarray  # prosthetic head centre minus native head centre (femur space)
    stem_length_mm: float
    hemi: bool = False  # hemiarthroplasty: a head the native head's size on the stem, no cup


@dataclass(frozen=True)
class Patient:
    """What stays the same between a patient's pre- and post-op exams."""

    anatomy: Anatomy
    scale: np.ndarray  # (3,) anisotropic anatomy scale
    fat_scale: float
    plans: dict[str, HipPlan]  # side -> plan (post-op only)
    deform: Deformation = field(default_factory=identity)  # smooth shape change of the bones
    narrowing_mm: dict[str, float] = field(default_factory=dict)  # native joint space lost (arthritis), per side


@dataclass(frozen=True)
class ExamPose:
    """Per-exam geometry."""

    sid_mm: float
    oid_mm: float  # isocentre (hip centre plane) to detector
    pelvis_deg: tuple[float, float, float]  # tilt (about x), obliquity (about y), rotation (about z)
    translation_mm: np.ndarray
    femur_deg: dict[str, tuple[float, float, float]]  # side -> flexion, abduction, rotation


@dataclass
class Exam:
    """One rendered radiograph and its ground truth."""

    phase: str
    stored: np.ndarray  # uint16 stored values
    presentation: np.ndarray  # float32 [0, 1], bright = dense
    geometry: Geometry
    processing: Processing
    masks: dict[str, np.ndarray]
    landmarks: dict[str, tuple[float, float] | None]
    measurements: dict[str, float | None]
    world_from_anatomy: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    magnification: float
    info: dict[str, object] = field(default_factory=dict)

    def ground_truth_json(self) -> dict[str, object]:
        """The spec's ``pre.json`` / ``post.json`` object (plus descriptive extras)."""
        return {
            "landmarks": {k: (None if v is None else [float(v[0]), float(v[1])]) for k, v in self.landmarks.items()},
            "measurements": {k: (None if v is None else float(v)) for k, v in self.measurements.items()},
            "calibration": "magnification_corrected",
            "pixel_spacing_mm": [float(self.pixel_spacing_mm[0]), float(self.pixel_spacing_mm[1])],
            "phase": self.phase,
            "anatomy": self.info.get("anatomy"),
            "image": {
                "rows": int(self.geometry.rows),
                "columns": int(self.geometry.cols),
                "imager_pixel_spacing_mm": self.geometry.pitch_mm,
                "estimated_magnification": self.magnification,
                "photometric_interpretation": self.processing.photometric,
                "bits_stored": self.processing.bits_stored,
                # Landmarks and segments outside this rectangle (under a shutter) are out of field.
                "exposed_field_px": list(exposed_field((self.geometry.rows, self.geometry.cols), self.processing)),
            },
            "pose": self.info.get("pose"),
            "implants": self.info.get("implants"),
        }


def image_geometry(size_px: int | None, sid_mm: float, oid_mm: float) -> Geometry:
    """Full field (375 x 300 mm detector) at ``size_px`` columns (default 2500, pixel 0.15 mm)."""
    cols = FULL_COLS if size_px is None else int(size_px)
    if cols < 64:
        raise ValueError("--size must be at least 64 pixels")
    pitch = FULL_PITCH_MM * FULL_COLS / cols
    rows = int(round(FULL_ROWS * cols / FULL_COLS))
    return Geometry(sid_mm=sid_mm, sod_mm=sid_mm - oid_mm, pitch_mm=pitch, rows=rows, cols=cols)


def sample_patient(anatomy: Anatomy, rng: np.random.Generator, implant_sides: tuple[str, ...],
                   local_shape_mm: float = 0.0, hemi_sides: tuple[str, ...] = ()) -> Patient:
    """Size, soft tissue build and arthroplasty plan of one synthetic patient.

    ``hemi_sides`` (of ``implant_sides``) get a hemiarthroplasty instead of a total hip: no cup, a head of the
    native head's size where the native head was. The random draws are the same either way, so a patient
    without hemiarthroplasties is exactly what it was before the option existed.
    """
    scale = rng.uniform(0.9, 1.1) * rng.uniform(0.97, 1.03, 3)
    plans = {}
    for side in implant_sides:
        native = anatomy.femur_geometry[side].head_radius_mm
        head_r = float(rng.choice([14.0, 16.0, 18.0]))
        outer = max(native + rng.uniform(1.0, 4.0), head_r + 7.0)
        lateral = -1.0 if side == "right" else 1.0
        plans[side] = HipPlan(
            inclination_deg=float(rng.uniform(30, 55)),
            anteversion_deg=float(rng.uniform(5, 30)),
            head_radius_mm=head_r,
            cup_outer_mm=float(outer),
            cup_shift_mm=np.array([lateral * rng.uniform(-4, 2), rng.uniform(-2, 2), rng.uniform(-3, 3)]),
            head_on_femur_mm=np.array([lateral * rng.uniform(-5, 5), rng.uniform(-2, 2), rng.uniform(-6, 6)]),
            stem_length_mm=float(rng.uniform(105, 145)),
        )
        if side in hemi_sides:
            plans[side] = replace(plans[side], head_radius_mm=float(native), cup_outer_mm=float(native),
                                  cup_shift_mm=np.zeros(3), head_on_femur_mm=np.zeros(3), hemi=True)
    fixed = np.array([anatomy.femur_geometry[s].head_centre for s in SIDES])
    narrowing = {s: float(rng.uniform(0.0, 1.5)) for s in SIDES}
    fat_scale = float(rng.uniform(0.7, 1.4))
    deform = sample_deformation(rng, fixed, local_amplitude_mm=local_shape_mm)
    return Patient(anatomy, scale, fat_scale, plans, deform, narrowing)


def sample_pose(rng: np.random.Generator) -> ExamPose:
    """Pelvic tilt ±10°, obliquity ±5°, rotation ±8°, independent femur poses, table height."""
    return ExamPose(
        sid_mm=float(rng.uniform(1000, 1150)),
        oid_mm=float(rng.uniform(120, 230)),
        pelvis_deg=(float(rng.uniform(-10, 10)), float(rng.uniform(-5, 5)), float(rng.uniform(-8, 8))),
        translation_mm=np.array([rng.uniform(-15, 15), 0.0, rng.uniform(0, 30)]),
        femur_deg={s: (float(rng.uniform(-8, 8)), float(rng.uniform(-6, 8)), float(rng.uniform(-15, 15))) for s in SIDES},
    )


def _axis_rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    t = np.radians(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def _neck_in_profile(anatomy: Anatomy, side: str) -> np.ndarray:
    """Rotation about the (extended) shaft that turns the femoral neck into the coronal plane.

    CT legs lie externally rotated; an AP pelvis is taken with the feet turned
    in so the neck is seen in profile. Found by scanning, cached per anatomy.
    """
    key = f"neck_profile_{side}"
    if key not in anatomy.extra:
        geo = anatomy.femur_geometry[side]
        shaft = geo.neutral_rotation @ geo.shaft_axis
        neck = geo.neutral_rotation @ geo.neck_cut_normal  # neck base -> head, points medially
        medial = 1.0 if side == "right" else -1.0
        best, best_score = np.eye(3), np.inf
        for angle in np.arange(-90.0, 90.5, 0.5):
            rot = _axis_rotation(shaft, angle)
            n = rot @ neck
            score = abs(n[1]) + (0.0 if n[0] * medial > 0 else 10.0)
            if score < best_score:
                best, best_score = rot, score
        anatomy.extra[key] = best
    return anatomy.extra[key]  # type: ignore[return-value]


def _transforms(patient: Patient, pose: ExamPose, phase: str) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """world_from_anatomy (pelvis), world_from_femur per side, and cup centres in anatomy space."""
    anatomy = patient.anatomy
    tilt, obliquity, rotation = pose.pelvis_deg
    rot = rotation_xyz(tilt, obliquity, rotation)
    world_from_anat = affine(rot @ np.diag(patient.scale), pose.translation_mm - rot @ np.diag(patient.scale) @ anatomy.anchor_mm)
    femurs: dict[str, np.ndarray] = {}
    cups: dict[str, np.ndarray] = {}
    for side in SIDES:
        geo = anatomy.femur_geometry[side]
        flexion, abduction, axial = pose.femur_deg[side]
        lateral = -1.0 if side == "right" else 1.0
        shaft = geo.neutral_rotation @ geo.shaft_axis
        base = _neck_in_profile(anatomy, side) @ geo.neutral_rotation
        r = rotation_xyz(flexion, -lateral * abduction, 0.0) @ _axis_rotation(shaft, lateral * axial) @ base
        plan = patient.plans.get(side) if phase == "post" else None
        if plan is None:
            # joint space narrowing: the head sits closer to the roof (cranial, slightly medial)
            towards_roof = np.array([-lateral * 0.3, 0.0, 1.0]) / np.hypot(0.3, 1.0)
            seat = geo.head_centre + patient.narrowing_mm.get(side, 0.0) * towards_roof
            femurs[side] = world_from_anat @ about_point(r, geo.head_centre, moved_to=seat)
        else:
            cup = geo.head_centre + plan.cup_shift_mm
            cups[side] = cup
            femurs[side] = world_from_anat @ about_point(r, geo.head_centre + plan.head_on_femur_mm, moved_to=cup)
    return world_from_anat, femurs, cups


def _build_hip(patient: Patient, side: str, world_from_anat: np.ndarray, world_from_femur: np.ndarray, cup_anat: np.ndarray) -> Hip:
    plan = patient.plans[side]
    geo = patient.anatomy.femur_geometry[side]
    rot = world_from_anat[:3, :3] / np.cbrt(abs(np.linalg.det(world_from_anat[:3, :3])))
    centre = apply(world_from_anat, cup_anat)[0]
    axis = cup_axis_world(side, plan.inclination_deg, plan.anteversion_deg, rot)
    head_f = geo.head_centre + plan.head_on_femur_mm
    shoulder = geo.canal_top
    tip = shoulder + plan.stem_length_mm * geo.shaft_axis
    mid = shoulder + 0.35 * plan.stem_length_mm * geo.shaft_axis
    pts = apply(world_from_femur, patient.deform(np.array([head_f, shoulder, mid, tip])))
    stem = ((pts[0], pts[1], 6.5, 7.5), (pts[1], pts[2], 10.0, 7.0), (pts[2], pts[3], 7.0, 4.5))
    ap = world_from_femur[:3, :3] @ np.array([0.0, 1.0, 0.0])
    hip = Hip(side, centre, axis, plan.cup_outer_mm, 3.0, plan.head_radius_mm, stem, ap / np.linalg.norm(ap), 1.7)
    return replace(hip, mu_cup=0.0) if plan.hemi else hip


def _upsample(coarse: np.ndarray, grid: CoarseGrid, geom: Geometry) -> np.ndarray:
    big = cv2.resize(coarse, (grid.cols * grid.factor, grid.rows * grid.factor), interpolation=cv2.INTER_LINEAR)
    return big[: geom.rows, : geom.cols]


def _splat(patient: Patient, cloud, world_from_body: np.ndarray, geom: Geometry, grid: CoarseGrid) -> np.ndarray:
    """Splat a bone point cloud after the patient's smooth deformation (cached per patient)."""
    return splat(cloud, world_from_body, geom, grid, displace=lambda pts: patient.deform.cached(id(cloud), pts))


def _mask(path_mm: np.ndarray, grid: CoarseGrid, geom: Geometry) -> np.ndarray:
    """Pixels whose ray crosses the structure (path > OCCUPANCY_MM), on the image grid.

    The bilinear splat spreads every voxel over +-1 coarse pixel, which grows a
    thresholded mask by about that much; an erosion by 0.75 coarse pixel puts
    the border back where the structure's projected edge is.
    """
    mask = (_upsample(path_mm, grid, geom) > OCCUPANCY_MM).astype(np.uint8)
    radius = 0.75 * grid.factor
    if radius >= 0.75:
        k = int(np.ceil(radius))
        yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
        kernel = ((xx**2 + yy**2) <= radius**2 + 0.25).astype(np.uint8)
        mask = cv2.erode(mask, kernel, borderType=cv2.BORDER_REPLICATE)
    return mask.astype(bool)


def _gas(shape: tuple[int, int], geom: Geometry, world_from_anat: np.ndarray, anatomy: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Bowel gas: a few blurred pockets above the pubis, as negative soft-tissue path (line integral)."""
    out = np.zeros(shape, np.float32)
    n = int(rng.integers(0, 6))
    for _ in range(n):
        centre = anatomy.anchor_mm + np.array([rng.uniform(-70, 70), -60.0, rng.uniform(10, 120)])
        c = geom.project(apply(world_from_anat, centre))[0]
        axes = (rng.uniform(6, 25) / geom.pitch_mm, rng.uniform(5, 18) / geom.pitch_mm)
        cv2.ellipse(out, (int(c[0]), int(c[1])), (int(axes[0]), int(axes[1])), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    if n:
        out = cv2.GaussianBlur(out, (0, 0), 2.5 / geom.pitch_mm)
    return -out * MU_MUSCLE * float(rng.uniform(15, 45))


def _texture(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(shape, dtype=np.float32)
    band = cv2.GaussianBlur(noise, (0, 0), max(sigma_px, 0.5)) - cv2.GaussianBlur(noise, (0, 0), max(3 * sigma_px, 1.0))
    return band / max(float(band.std()), 1e-6)


def _head_centre_px(side: str, anatomy: Anatomy, geom: Geometry, world_from_femur: dict[str, np.ndarray],
                    hips: dict[str, Hip], proj: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """The projected head centre; post-op the prosthetic head's, which sits at the cup centre."""
    if side in hips:
        return geom.project(hips[side].cup_centre[None])[0]
    return proj(world_from_femur[side], anatomy.femur_geometry[side].head_centre[None])[0]


def _pick(points_px: np.ndarray, direction: np.ndarray) -> np.ndarray:
    return points_px[int(np.argmax(points_px @ direction))]


def _inside(p: np.ndarray, geom: Geometry) -> bool:
    return bool(0 <= p[0] <= geom.cols - 1 and 0 <= p[1] <= geom.rows - 1)


NEAR_AP_DEG = 15.0
"""Poses within this of AP about every axis (all of ``sample_pose``'s) render as they always have: point clouds
merged along the beam, a fixed exposure. Beyond it (oblique and lateral views, for the content check) nothing is
merged, or the merged runs would show as stripes, and an automatic exposure control applies; a femur turned
further than this from neutral (a frog-leg pose) is likewise not merged."""
AEC_REFERENCE_LINE_INTEGRAL = 4.3
"""Median line integral through the body of an AP pelvis film (4.31 on a Pelvic-Ref-002 film). A thicker
projection (the same patient's lateral: 6.91) gets exp(difference) times the photons, as an AEC keeps the detector
dose; without it the lateral's pelvis shows at a contrast-to-noise of 5 instead of 12 (``tests/models/test_synth.py``)."""


def near_ap(pose: ExamPose) -> bool:
    """Whether the pelvis is posed within :data:`NEAR_AP_DEG` of AP about every axis."""
    return max(abs(a) for a in pose.pelvis_deg) <= NEAR_AP_DEG


def femur_near_ap(pose: ExamPose, side: str) -> bool:
    """Whether that femur is within :data:`NEAR_AP_DEG` of neutral too (a frog-leg pose is not)."""
    return near_ap(pose) and max(abs(a) for a in pose.femur_deg[side]) <= NEAR_AP_DEG


def _automatic_exposure(proc: Processing, mu_line: np.ndarray) -> Processing:
    """``proc`` with photons raised for a projection thicker than an AP pelvis's (:data:`AEC_REFERENCE_LINE_INTEGRAL`)."""
    body = mu_line > 1.0
    median = float(np.median(mu_line[body])) if body.any() else 0.0
    gain = float(np.exp(max(0.0, median - AEC_REFERENCE_LINE_INTEGRAL)))
    return replace(proc, photons_per_mm2=proc.photons_per_mm2 * gain)


def render_exam(patient: Patient, pose: ExamPose, phase: str, size_px: int | None, rng: np.random.Generator,
                processing: Processing | None = None, truth: bool = True) -> Exam:
    """Render one exam of ``patient`` (``phase`` "pre" or "post") with its ground truth.

    Any pose renders; the spec's landmarks and measurements are defined on AP views only, so ``truth=False``
    (for oblique and lateral views) leaves them all null and the roof and joint-space segments empty.
    """
    anatomy = patient.anatomy
    ap = near_ap(pose)
    bone_merge, soft_merge = (3, 4) if ap else (1, 1)
    geom = image_geometry(size_px, pose.sid_mm, pose.oid_mm)
    grid = CoarseGrid.for_geometry(geom, 1.25 * geom.magnification)
    world_from_anat, world_from_femur, cups = _transforms(patient, pose, phase)
    implanted = set(cups)

    pelvis = np.concatenate([
        _splat(patient, body_points(anatomy.pelvis, ("mu", "pelvis"), bone_merge), world_from_anat, geom, grid),
        _splat(patient, body_points(anatomy.pelvis, ("roof",), bone_merge), world_from_anat, geom, grid),
    ])
    soft_grid = CoarseGrid(grid.factor * 2, -(-grid.rows // 2), -(-grid.cols // 2))
    soft_cloud = body_points(anatomy.soft, ("muscle", "fat"), soft_merge)
    fat = patient.fat_scale * float(rng.uniform(0.9, 1.1))  # weight changes between exams
    soft_mu = soft_cloud.values @ np.array([[MU_MUSCLE], [MU_FAT * fat]], np.float32)
    soft_line = cv2.GaussianBlur(splat(soft_cloud, world_from_anat, geom, soft_grid, weights=soft_mu)[0], (0, 0), 1.2)
    soft_line = cv2.resize(soft_line, (soft_grid.cols * 2, soft_grid.rows * 2), interpolation=cv2.INTER_LINEAR)[: grid.rows, : grid.cols]
    bone_line = pelvis[0].copy()
    occupancy: dict[str, np.ndarray] = {"pelvis": pelvis[1], "roof": pelvis[2]}
    for side in SIDES:
        channels = ("mu_post", "femur_post") if side in implanted else ("mu", "femur")
        femur_merge = 3 if femur_near_ap(pose, side) else 1
        f = _splat(patient, body_points(anatomy.femurs[side], channels, femur_merge), world_from_femur[side], geom, grid)
        bone_line += f[0]
        occupancy[f"femur_{side}"] = f[1]
        if side in implanted:
            occupancy[f"head_{side}"] = np.zeros_like(f[1])
        else:
            occupancy[f"head_{side}"] = _splat(patient, body_points(anatomy.femurs[side], ("head",), femur_merge), world_from_femur[side], geom, grid)[0]

    bone_fine = _upsample(bone_line, grid, geom)
    texture = _texture((geom.rows, geom.cols), 0.35 * geom.magnification / geom.pitch_mm, rng)
    mu_line = _upsample(soft_line, grid, geom) + bone_fine * (1.0 + 0.07 * texture)
    mu_line += _gas(mu_line.shape, geom, world_from_anat, anatomy, rng)

    masks: dict[str, np.ndarray] = {name: np.zeros((geom.rows, geom.cols), bool) for name in SEGMENTS}
    hips: dict[str, Hip] = {}
    for side in sorted(implanted):
        hip = _build_hip(patient, side, world_from_anat, world_from_femur[side], cups[side])
        hips[side] = hip
        metal, metal_mask = render_hip(hip, geom)
        mu_line += metal
        masks[f"implant_{side}"] = metal_mask

    proc = processing or sample_processing(rng)
    if not ap:
        proc = _automatic_exposure(proc, mu_line)
    if proc.marker is not None:
        mu_line += lead_marker(mu_line.shape, proc.marker, proc.marker == "R", geom.pitch_mm, rng)
    metal = masks["implant_right"] | masks["implant_left"]
    stored, presentation = expose(mu_line.astype(np.float32), proc, geom.pitch_mm, rng, metal)

    masks["pelvis"] = _mask(occupancy["pelvis"], grid, geom)
    for side in SIDES:
        masks[f"femur_{side}"] = _mask(occupancy[f"femur_{side}"], grid, geom)
        masks[f"femoral_head_{side}"] = _mask(occupancy[f"head_{side}"], grid, geom)

    ermf = geom.magnification
    spacing = (geom.pitch_mm / ermf, geom.pitch_mm / ermf)
    field = exposed_field((geom.rows, geom.cols), proc)
    if truth:
        landmarks = _landmarks(patient, geom, field, world_from_anat, world_from_femur, hips, phase, masks)
        landmarks = _shaft_points_on_film(landmarks, masks, spacing, field)
        roof_fine = _mask(occupancy["roof"], grid, geom)
        _roof_and_joint(masks, roof_fine, landmarks, patient, geom, world_from_anat, world_from_femur, implanted, field)
    else:
        landmarks = {name: None for name in LANDMARKS}
    # Segments are what is visible: anatomy under the collimator's shutters is out of field.
    if not field.is_whole((geom.rows, geom.cols)):
        masks = {name: field.clip(mask) for name, mask in masks.items()}
    measurements = compute_measurements(landmarks, spacing, masks)
    info = {
        "anatomy": anatomy.name,
        "pose": {
            "sid_mm": pose.sid_mm,
            "oid_mm": pose.oid_mm,
            "pelvis_tilt_obliquity_rotation_deg": list(pose.pelvis_deg),
            "translation_mm": [float(v) for v in pose.translation_mm],
            "femur_flexion_abduction_rotation_deg": {k: list(v) for k, v in pose.femur_deg.items()},
            "anatomy_scale": [float(v) for v in patient.scale],
        },
        "implants": {
            side: {
                "hemiarthroplasty": True,
                "head_diameter_mm": 2 * patient.plans[side].head_radius_mm,
            } if patient.plans[side].hemi else {
                "cup_inclination_deg": patient.plans[side].inclination_deg,
                "cup_anteversion_deg": patient.plans[side].anteversion_deg,
                "head_diameter_mm": 2 * patient.plans[side].head_radius_mm,
                "cup_outer_diameter_mm": 2 * patient.plans[side].cup_outer_mm,
            }
            for side in sorted(implanted)
        },
    }
    return Exam(phase, stored, presentation, geom, proc, masks, landmarks, measurements, world_from_anat, spacing, ermf, info)


def _landmarks(
    patient: Patient,
    geom: Geometry,
    field: ExposedField,
    world_from_anat: np.ndarray,
    world_from_femur: dict[str, np.ndarray],
    hips: dict[str, Hip],
    phase: str,
    masks: dict[str, np.ndarray],
) -> dict[str, tuple[float, float] | None]:
    """The spec's landmarks: 3D candidates say which point is meant; where the spec defines it on
    an outline of the film (tuberosities, greater trochanter, shaft midpoints, the roof's end), the
    point is read off that projected segment, as a reader reads the film."""
    anatomy = patient.anatomy
    cand = anatomy.candidates
    out: dict[str, tuple[float, float] | None] = {name: None for name in LANDMARKS}

    def proj(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
        return geom.project(apply(matrix, patient.deform(pts)))

    mm_per_px = np.full(2, geom.pitch_mm / geom.magnification)  # anatomical mm at the isocentre
    anchor_px = proj(world_from_anat, anatomy.anchor_mm[None])[0]
    caudal = proj(world_from_anat, (anatomy.anchor_mm - [0, 0, 50.0])[None])[0] - anchor_px
    caudal /= np.linalg.norm(caudal)
    it = {s: _pick(proj(world_from_anat, cand[f"ischial_tuberosity_{s}"]), caudal) for s in SIDES}
    # The 3D candidates say which extreme is meant; the point is the film's silhouette's extreme
    # there (the projected pelvis segment), caudal being perpendicular to the line through the head
    # centres, as a reader (and the analysis) reads it. The 3D surface's own extreme lay 0.3-0.5 mm
    # higher than the silhouette, a different amount on each side: 0.6 mm of leg-length bias.
    centres = {s: _head_centre_px(s, anatomy, geom, world_from_femur, hips, proj) for s in SIDES}
    film_caudal = caudal_direction({f"femoral_head_centre_{s}": tuple(c) for s, c in centres.items()})
    spacing = (float(mm_per_px[1]), float(mm_per_px[0]))
    for s in SIDES:
        on_film = ischial_tuberosity(masks["pelvis"], (float(it[s][0]), float(it[s][1])), film_caudal, spacing)
        it[s] = np.asarray(on_film) if on_film is not None else it[s]
    _, horizontal, vertical = pelvic_frame(it["right"], it["left"], (1.0, 1.0))
    for s in SIDES:
        out[f"ischial_tuberosity_{s}"] = tuple(it[s])
    # superior end of the joint: midway between the tops of the two pubic bodies' facing surfaces
    faces = [_pick(proj(world_from_anat, cand[f"pubic_symphysis_{f}_face"]), vertical) for f in SIDES]
    out["pubic_symphysis"] = tuple(0.5 * (faces[0] + faces[1]))
    for s in SIDES:
        geo = anatomy.femur_geometry[s]
        medial = horizontal if s == "right" else -horizontal
        lateral = -medial
        fm = world_from_femur[s]
        out[f"femoral_head_centre_{s}"] = tuple(centres[s])
        trochanter = cand[f"greater_trochanter_{s}"]
        if s in hips:  # only bone that survived the neck resection
            rel = trochanter - geo.head_centre
            kept = (rel @ geo.neck_cut_normal <= -geo.neck_cut_offset_mm - 1.0) | (np.linalg.norm(rel, axis=1) >= geo.neck_cut_offset_mm + 26.0)
            trochanter = trochanter[kept] if kept.any() else trochanter
        # the top is flat: its single 3D extreme slides along it; the femur silhouette's extreme near it
        top = _pick(proj(fm, trochanter), vertical)
        on_film = extreme_near(masks[f"femur_{s}"], (float(top[0]), float(top[1])), vertical, spacing,
                               TROCHANTER_SEARCH_MM)
        out[f"greater_trochanter_{s}"] = tuple(top) if on_film is None else on_film
        # the medial face is nearly flat: its single extreme slides along it (leg length) when the
        # direction turns a degree; the mean of the points near the extreme, as the analysis reads extremes
        near_extreme = extreme_points(proj(fm, cand[f"lesser_trochanter_{s}"]), medial, mm_per_px)
        out[f"lesser_trochanter_{s}"] = tuple(near_extreme.mean(0))
        levels = _shaft_levels_px(proj(fm, np.stack([geo.shaft_proximal, geo.shaft_distal])),
                                  np.asarray(out[f"lesser_trochanter_{s}"]), float(mm_per_px[0]))
        out[f"femoral_shaft_proximal_{s}"] = tuple(levels[0])  # re-read off the film: _shaft_points_on_film
        out[f"femoral_shaft_distal_{s}"] = _shaft_distal(levels, geom, field)
        edge = proj(world_from_anat, cand[f"acetabular_lateral_edge_{s}"])
        native_centre = proj(world_from_anat, geo.head_centre[None])[0]
        d = edge - native_centre
        # the roof's point at the most lateral angle, within the sector the roof segment is kept in
        angle = np.arctan2(d @ lateral, d @ vertical)
        angle[np.abs(angle) > np.radians(ROOF_SECTOR_DEG)] = -np.inf
        out[f"acetabular_lateral_edge_{s}"] = tuple(edge[int(np.argmax(angle))])
        if s in hips:
            hip = hips[s]
            if not patient.plans[s].hemi:  # a hemiarthroplasty has no cup, so no rim
                rim = geom.project(hip.rim_points(360))
                half = len(rim) // 2
                spans = np.linalg.norm(rim[:half] - rim[half:], axis=1)
                i = int(np.argmax(spans))
                a, b = rim[i], rim[i + half]
                if (a - b) @ lateral < 0:
                    a, b = b, a
                out[f"cup_rim_lateral_{s}"] = tuple(a)
                out[f"cup_rim_medial_{s}"] = tuple(b)
            out[f"stem_tip_{s}"] = tuple(geom.project(hip.stem_tip[None])[0])
    for name, p in out.items():  # out of field: off the film or under a collimator shutter
        if p is not None and not field.contains((float(p[0]), float(p[1]))):
            out[name] = None
        elif p is not None:
            out[name] = (float(p[0]), float(p[1]))
    return out


def _shaft_levels_px(axis_px: np.ndarray, trochanter_px: np.ndarray, mm_per_px: float) -> np.ndarray:
    """61 points on the projected shaft centreline, 20 to 80 mm below the lesser trochanter *on the film*.

    The spec's levels are defined on the radiograph, so they are measured in the
    film's calibrated millimetres along the projected axis from the trochanter's
    foot on it, as a reader measures them. Until session 15 they were 20 and 80
    mm along the 3D shaft, which hip flexion foreshortens and depth magnifies on
    the film: the distal point's level varied by +-4 mm (sd) against any reading
    of the film.
    """
    start, end = axis_px
    along = (end - start) / np.linalg.norm(end - start)
    foot = start + float((trochanter_px - start) @ along) * along
    return foot + np.linspace(20.0, 80.0, 61)[:, None] / mm_per_px * along


def _shaft_points_on_film(landmarks: dict[str, tuple[float, float] | None], masks: dict[str, np.ndarray],
                          spacing: tuple[float, float], field: ExposedField) -> dict[str, tuple[float, float] | None]:
    """The shaft points as the film defines them: midpoints between the femur silhouette's cortices,
    20 and 80 mm (film mm) below the lesser trochanter's foot on the silhouette's shaft axis.

    A reader draws that axis through the visible diaphysis; the projected 3D
    centreline is not on the film (it ran up to 4 deg off it, and the linea
    aspera pulls 3D centroids off the cortices' middle). The truth applies
    :func:`models.algorithms.femoral_outline.snap_to_femoral_outline`'s shaft
    reading to the true femur mask, whose only edge is the film's (a shutter
    hides the bone, it does not cut it); the levels' presence stays the film's.
    """
    read = snap_to_femoral_outline(landmarks, masks, spacing, field, cut_field=ExposedField.whole(masks["pelvis"].shape))
    out = dict(landmarks)
    for side in SIDES:
        for name in (f"femoral_shaft_proximal_{side}", f"femoral_shaft_distal_{side}"):
            point = read.get(name)
            out[name] = point if point is not None and field.contains(point) else None
    return out


def _shaft_distal(line_px: np.ndarray, geom: Geometry, field: ExposedField) -> tuple[float, float] | None:
    """80 mm below the lesser trochanter, or the most distal visible level when the exposed field ends sooner.

    ``line_px`` samples the shaft centreline from 20 mm (index 0) to 80 mm below
    the trochanter; a level needs to be at least 20 mm below the proximal point.
    """
    margin = 0.01 * geom.cols
    for p in line_px[::-1][: len(line_px) * 2 // 3]:
        if (field.col0 + margin <= p[0] <= field.col1 - 1 - margin
                and field.row0 + margin <= p[1] <= field.row1 - 1 - margin):
            return (float(p[0]), float(p[1]))
    return None


def _roof_and_joint(
    masks: dict[str, np.ndarray],
    roof_fine: np.ndarray,
    landmarks: dict[str, tuple[float, float] | None],
    patient: Patient,
    geom: Geometry,
    world_from_anat: np.ndarray,
    world_from_femur: dict[str, np.ndarray],
    implanted: set[str],
    field: ExposedField,
) -> None:
    """Acetabular roof and joint space in the ±ROOF_SECTOR_DEG sector above each native head (docs/synth.md).

    A native hip's ``acetabular_lateral_edge`` is then re-read off this projected
    roof: its lateral end seen from the head centre, the sourcil's end a reader marks.
    """
    it_r, it_l = landmarks["ischial_tuberosity_right"], landmarks["ischial_tuberosity_left"]
    if it_r is None or it_l is None:
        return
    _, horizontal, vertical = pelvic_frame(it_r, it_l, (1.0, 1.0))
    mm_per_px = geom.pitch_mm / geom.magnification
    for side in SIDES:
        centre = landmarks[f"femoral_head_centre_{side}"]
        if side in implanted or centre is None:
            continue
        geo = patient.anatomy.femur_geometry[side]
        head_world = apply(world_from_femur[side], geo.head_centre[None])[0]
        scale = float(np.cbrt(abs(np.linalg.det(world_from_anat[:3, :3]))))
        r_px = geo.head_radius_mm * scale * geom.magnification_at(head_world) / geom.pitch_mm
        reach = int(np.ceil(r_px + 14.0 * geom.magnification / geom.pitch_mm))
        c0, c1 = max(int(centre[0]) - reach, 0), min(int(centre[0]) + reach + 1, geom.cols)
        r0, r1 = max(int(centre[1]) - reach, 0), min(int(centre[1]) + reach + 1, geom.rows)
        if c1 <= c0 or r1 <= r0:
            continue
        local_centre = (centre[0] - c0, centre[1] - r0)
        inside, radius = sector_mask((r1 - r0, c1 - c0), local_centre, vertical, ROOF_SECTOR_DEG, (1.0, 1.0))
        head = masks[f"femoral_head_{side}"][r0:r1, c0:c1]
        roof = roof_fine[r0:r1, c0:c1] & inside & (radius > r_px) & ~head
        if not roof.any():
            continue
        # joint space: between the head and the roof's inner border, angle by angle
        rows, cols = np.mgrid[r0:r1, c0:c1]
        angle = np.degrees(np.arctan2(cols - centre[0], -(rows - centre[1])))
        bins = np.clip(((angle + 180.0) * 2).astype(int), 0, 719)
        inner = np.full(720, np.inf)
        np.minimum.at(inner, bins[roof], radius[roof])
        has_roof = np.isfinite(inner[bins])
        joint = inside & ~head & ~roof & has_roof & (radius < np.where(has_roof, inner[bins], 0.0)) & (radius > 0.85 * r_px)
        full_roof = np.zeros((geom.rows, geom.cols), bool)
        full_joint = np.zeros((geom.rows, geom.cols), bool)
        full_roof[r0:r1, c0:c1] = roof
        full_joint[r0:r1, c0:c1] = joint
        masks[f"acetabular_roof_{side}"] = full_roof
        masks[f"joint_space_{side}"] = full_joint
        lateral = -horizontal if side == "right" else horizontal
        edge = acetabular_lateral_edge(roof, local_centre, r_px * mm_per_px, lateral, vertical, (mm_per_px, mm_per_px))
        if edge is not None:
            edge = (edge[0] + c0, edge[1] + r0)
            landmarks[f"acetabular_lateral_edge_{side}"] = edge if field.contains(edge) else None


@dataclass
class Pair:
    """A pre-op and a post-op exam of the same synthetic patient and their pelvic-ring correspondences."""

    pre: Exam
    post: Exam
    points_pre: np.ndarray
    points_post: np.ndarray
    # The post-op landmarks as a post-op film taken with the pre-op exam's pelvis pose (and the
    # post-op femur poses) would show them: the physical truth of the pre/post deltas, which no
    # 2D alignment of the two films reproduces exactly once the pelvis turned out of plane.
    post_in_pre_pose: dict[str, tuple[float, float] | None] | None = None


def ring_correspondences(patient: Patient, pre: Exam, post: Exam, minimum: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The same 3D pelvic-ring points projected into both exams (kept where inside both)."""
    ring = patient.deform(patient.anatomy.ring_points)
    a = pre.geometry.project(apply(pre.world_from_anatomy, ring))
    b = post.geometry.project(apply(post.world_from_anatomy, ring))
    keep = np.array([_inside(p, pre.geometry) and _inside(q, post.geometry) for p, q in zip(a, b)])
    if keep.sum() < minimum:
        raise RuntimeError(f"only {int(keep.sum())} pelvic-ring points visible in both exams")
    return a[keep], b[keep]


def render_pair(anatomy: Anatomy, rng: np.random.Generator, size_px: int | None = None) -> Pair:
    """Sample a patient with a THA on one or both sides; render the pre-op and post-op exam."""
    roll = rng.random()
    sides = ("right", "left") if roll < 0.2 else (("right",) if roll < 0.6 else ("left",))
    patient = sample_patient(anatomy, rng, sides)
    pre_pose = sample_pose(rng)
    pre = render_exam(patient, pre_pose, "pre", size_px, rng)
    post_pose = sample_pose(rng)
    post = render_exam(patient, post_pose, "post", size_px, rng)
    pts_pre, pts_post = ring_correspondences(patient, pre, post)
    # Its own generator: the pair's images and identities stay what they were without it.
    seen_as_pre = render_exam(patient, replace(pre_pose, femur_deg=post_pose.femur_deg), "post", size_px,
                              np.random.default_rng(0), processing=pre.processing)
    return Pair(pre, post, pts_pre, pts_post, seen_as_pre.landmarks)
