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


def sample_deformation(rng: np.random.Generator, fixed_mm: np.ndarray, amplitude_mm: float = 3.0) -> Deformation:
    """Three random waves of 120-250 mm wavelength, each up to ``amplitude_mm`` per axis."""
    k = 3
    directions = rng.normal(size=(k, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    waves = directions * (2 * np.pi / rng.uniform(120.0, 250.0, k))[:, None]
    return Deformation(waves, rng.uniform(0, 2 * np.pi, k), rng.uniform(-amplitude_mm, amplitude_mm, (k, 3)), np.asarray(fixed_mm, float))
