"""Smooth non-rigid variation of an anatomy, so three CT anatomies give many shapes.

A sum of a few long-wavelength sine waves (wavelengths 120-250 mm, a few mm
each) displaces anatomy-space points. The field is damped to zero around the
two native hip centres, so each femoral head stays seated in its acetabulum
and an implant planned at the hip centre stays where it was planned.
The same callable moves the voxels that are projected and the 3D points the
landmarks come from, so ground truth follows the deformed anatomy exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Deformation:
    """``p -> p + w(p) * sum_k a_k sin(k_k . p + phi_k)`` with ``w`` = 0 at the fixed points.

    ``w`` is flat (squared Gaussian notch) around the hips: femur and pelvis are
    posed differently after the deformation, so any displacement left at the
    joint would open or close the joint space.
    """

    waves: np.ndarray  # (k, 3) wave vectors, rad/mm
    phases: np.ndarray  # (k,)
    amplitudes_mm: np.ndarray  # (k, 3)
    fixed_mm: np.ndarray  # (m, 3) points that do not move
    sigma_mm: float = 40.0
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        p = np.atleast_2d(np.asarray(points))
        dtype = np.float32 if p.dtype == np.float32 else np.float64
        d = np.zeros(p.shape, dtype)
        for wave, phase, amp in zip(self.waves, self.phases, self.amplitudes_mm):
            d += np.sin(p @ wave.astype(dtype) + dtype(phase))[:, None] * amp.astype(dtype)
        weight = np.ones(len(p), dtype)
        for c in self.fixed_mm:
            r2 = ((p - c.astype(dtype)) ** 2).sum(1)
            weight *= (1.0 - np.exp(-r2 / dtype(2 * self.sigma_mm**2))) ** 2
        return (p + d * weight[:, None]).astype(dtype)

    def cached(self, key: object, points: np.ndarray) -> np.ndarray:
        """``self(points)`` remembered under ``key`` (a pre and a post exam share the work)."""
        if key not in self._cache:
            self._cache[key] = self(points)
        return self._cache[key]


def identity() -> Deformation:
    """No deformation (zero amplitude)."""
    return Deformation(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))


LOCAL_WAVES = 4
LOCAL_WAVELENGTH_MM = (40.0, 80.0)
"""Opt-in local shape variation: waves short enough to reshape a tuberosity or a trochanter, not the whole
pelvis. At 2 mm amplitude (the command's limit) each stretches bone by at most 2 pi 2 / 40 = 31%; all seven
waves together squeezed some spot of the pelvis to a quarter of its volume in the worst of 100 patients
(Jacobian determinant 0.25; 0.06 at 3 mm), and never turned it inside out."""


def sample_deformation(rng: np.random.Generator, fixed_mm: np.ndarray, amplitude_mm: float = 3.0,
                       local_amplitude_mm: float = 0.0) -> Deformation:
    """Three random waves of 120-250 mm wavelength, each up to ``amplitude_mm`` per axis, plus, when
    ``local_amplitude_mm`` > 0, :data:`LOCAL_WAVES` of 40-80 mm up to that amplitude (drawn after the
    others, so a zero amplitude leaves every draw and every image as before)."""
    k = 3
    directions = rng.normal(size=(k, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    waves = directions * (2 * np.pi / rng.uniform(120.0, 250.0, k))[:, None]
    phases, amplitudes = rng.uniform(0, 2 * np.pi, k), rng.uniform(-amplitude_mm, amplitude_mm, (k, 3))
    if local_amplitude_mm > 0:
        local = rng.normal(size=(LOCAL_WAVES, 3))
        local /= np.linalg.norm(local, axis=1, keepdims=True)
        local *= (2 * np.pi / rng.uniform(*LOCAL_WAVELENGTH_MM, LOCAL_WAVES))[:, None]
        waves = np.vstack([waves, local])
        phases = np.concatenate([phases, rng.uniform(0, 2 * np.pi, LOCAL_WAVES)])
        amplitudes = np.vstack([amplitudes, rng.uniform(-local_amplitude_mm, local_amplitude_mm, (LOCAL_WAVES, 3))])
    return Deformation(waves, phases, amplitudes, np.asarray(fixed_mm, float))
