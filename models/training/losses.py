"""Losses: Dice + BCE for multi-label masks; alpha * DiceCE + MSE for SGR landmarks.

Channels or landmarks that a sample does not label (a missing NPZ key or JSON
key in the training-data format) are excluded through ``valid`` weights, so a
partly labelled user dataset still trains.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def dice_bce_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, smooth: float = 1.0
) -> torch.Tensor:
    """Mean over labelled (sample, channel) pairs of soft Dice loss + BCE.

    ``logits``/``target``: (N, C, H, W); ``valid``: (N, C) in {0, 1}.
    """
    prob = torch.sigmoid(logits)
    dims = (2, 3)
    inter = (prob * target).sum(dims)
    denom = prob.sum(dims) + target.sum(dims)
    dice = 1.0 - (2.0 * inter + smooth) / (denom + smooth)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dims)
    weight = valid.to(logits.dtype)
    return ((dice + bce) * weight).sum() / weight.sum().clamp(min=1.0)


def landmark_loss(
    disc_logits: torch.Tensor,
    disc_target: torch.Tensor,
    coords: torch.Tensor,
    coords_target: torch.Tensor,
    labelled: torch.Tensor,
    present: torch.Tensor,
    alpha: float = 0.2,
    unit_px: float = 4.0,
) -> torch.Tensor:
    """alpha * DiceCE(discs) + MSE(coordinates) as in the SGR paper.

    The MSE is over present landmarks only, in units of ``unit_px`` working
    pixels so both terms have similar magnitude at the start of training.
    ``labelled``/``present``: (N, L) in {0, 1}; ``coords*``: (N, L, 2) pixels.
    """
    seg = dice_bce_loss(disc_logits, disc_target, labelled)
    w = (labelled * present).to(coords.dtype)
    sq = (((coords - coords_target) / unit_px) ** 2).sum(-1)
    mse = (sq * w).sum() / w.sum().clamp(min=1.0)
    return alpha * seg + mse
