"""Small pre/post pairs from a real pelvic label map, for the alignment tests.

Independent of the project's generator on purpose: a parallel-beam projection
of the label map gives a pelvis, femur and soft-tissue image, and the post-op
image moves each part with its own homography (femurs independently of the
pelvis) and adds a bright implant over one femur. The pelvis's homography is
the ground truth. Only in-plane motion: out-of-plane rotation is the
generator's and the evaluation's business.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from models.synth.reference_data import PELVIC_REF_DIR

PELVIC_REF = PELVIC_REF_DIR


@dataclass
class TestPair:
    pre: np.ndarray
    post: np.ndarray
    pelvis_pre: np.ndarray  # bool
    pelvis_post: np.ndarray
    h_true: np.ndarray  # pelvis homography PRE -> POST
    points_pre: np.ndarray  # pelvic-ring points (N, 2)
    points_post: np.ndarray


def _read_labels(case: str) -> np.ndarray:
    folder = PELVIC_REF / case
    header = dict(line.split(" = ", 1) for line in (folder / "label.mhd").read_text().splitlines() if " = " in line)
    dims = [int(v) for v in header["DimSize"].split()]
    raw = zlib.decompress((folder / "label.zraw").read_bytes())
    return np.frombuffer(raw, dtype="<i2").reshape(dims[::-1])  # [z, y, x]


@lru_cache(maxsize=3)
def projections(case: str = "Pelvic-Ref-001") -> dict[str, np.ndarray]:
    """AP projections (rows = superior->inferior, cols = x) at 1 mm, per tissue class."""
    labels = _read_labels(case)
    parts = {
        "pelvis": np.isin(labels, (1, 3)),
        "spine": labels == 4,
        "femur": labels == 2,
        "soft": labels >= 5,
    }
    out = {}
    for name, mask in parts.items():
        projected = mask.sum(axis=1).astype(np.float32)  # sum over y (AP) -> [z, x]
        projected = projected[::-1]  # superior at the top
        out[name] = cv2.resize(projected, (projected.shape[1], projected.shape[0] * 3), interpolation=cv2.INTER_LINEAR)
    rows = np.nonzero(out["pelvis"].sum(axis=1) > 0)[0]
    cols = np.nonzero(out["pelvis"].sum(axis=0) > 0)[0]
    top, bottom = max(rows[0] - 40, 0), min(rows[-1] + 120, out["pelvis"].shape[0])
    left, right = max(cols[0] - 40, 0), min(cols[-1] + 40, out["pelvis"].shape[1])
    return {k: np.ascontiguousarray(v[top:bottom, left:right]) for k, v in out.items()}


def _similarity(angle_deg: float, scale: float, tx: float, ty: float, centre: tuple[float, float],
                perspective: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    cx, cy = centre
    r = np.array([[scale * np.cos(a), -scale * np.sin(a), 0], [scale * np.sin(a), scale * np.cos(a), 0], [0, 0, 1]])
    t = np.array([[1, 0, cx + tx], [0, 1, cy + ty], [0, 0, 1.0]]) @ r @ np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
    p = np.eye(3)
    p[2, :2] = perspective
    return t @ p


def _render(parts: dict[str, np.ndarray], noise_seed: int) -> np.ndarray:
    image = 1.0 * parts["pelvis"] + 1.0 * parts["spine"] + 1.1 * parts["femur"] + 0.18 * parts["soft"]
    rng = np.random.default_rng(noise_seed)
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.0)
    return (image + rng.normal(0, 0.4, image.shape)).astype(np.float32)


def make_pair(seed: int = 0, case: str = "Pelvic-Ref-001", femur_motion: bool = True, implant: bool = True) -> TestPair:
    """A pre/post pair: pelvis by ``h_true``; femurs and soft tissue by their own motion."""
    parts = projections(case)
    rows, cols = parts["pelvis"].shape
    rng = np.random.default_rng(seed)
    centre = (cols / 2, rows / 2)
    h_true = _similarity(rng.uniform(-4, 4), rng.uniform(0.95, 1.05), rng.uniform(-20, 20), rng.uniform(-20, 20),
                         centre, (rng.uniform(-2e-5, 2e-5), rng.uniform(-2e-5, 2e-5)))
    if femur_motion:
        h_femur = h_true @ _similarity(rng.uniform(-8, 8), 1.0, rng.uniform(-12, 12), rng.uniform(-12, 12),
                                       (cols / 2, rows * 0.7))
        h_soft = h_true @ _similarity(rng.uniform(-3, 3), rng.uniform(0.97, 1.06), rng.uniform(-8, 8), 0.0, centre)
    else:
        h_femur = h_soft = h_true
    size = (cols, rows)
    warped = {
        "pelvis": cv2.warpPerspective(parts["pelvis"], h_true, size),
        "spine": cv2.warpPerspective(parts["spine"], h_true, size),
        "femur": cv2.warpPerspective(parts["femur"], h_femur, size),
        "soft": cv2.warpPerspective(parts["soft"], h_soft, size),
    }
    pre = _render(parts, seed * 2 + 1)
    post = _render(warped, seed * 2 + 2)
    if implant:
        femur_cols = np.nonzero(warped["femur"].sum(axis=0) > 0)[0]
        x = int(femur_cols[0] + 0.15 * (femur_cols[-1] - femur_cols[0]))
        y = int(rows * 0.62)
        cv2.circle(post, (x, y), 16, float(post.max() * 1.6), -1)
        cv2.rectangle(post, (x - 6, y), (x + 6, min(rows - 1, y + 110)), float(post.max() * 1.6), -1)
    pelvis_pre = parts["pelvis"] > 0
    pelvis_post = warped["pelvis"] > 0.5
    contours, _ = cv2.findContours(pelvis_pre.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    ring = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float64)
    points_pre = ring[np.linspace(0, len(ring) - 1, 40).astype(int)]
    mapped = np.c_[points_pre, np.ones(len(points_pre))] @ h_true.T
    return TestPair(pre, post, pelvis_pre, pelvis_post, h_true, points_pre, mapped[:, :2] / mapped[:, 2:])


def write_dx(path: Path, pixels: np.ndarray, patient_id: str = "ALIGN-1", body_part: str = "PELVIS",
             spacing_mm: float = 1.0) -> Path:
    """A minimal DX For Presentation object holding ``pixels`` as 16-bit MONOCHROME2."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    values = np.asarray(pixels, dtype=np.float64)
    values = (values - values.min()) / max(float(np.ptp(values)), 1e-9) * 4000.0
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = "Align^Test"
    ds.Modality = "DX"
    ds.BodyPartExamined = body_part
    ds.ViewPosition = "AP"
    ds.PatientOrientation = ["R", "F"]
    ds.ImagerPixelSpacing = [spacing_mm, spacing_mm]
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = np.round(values).astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
