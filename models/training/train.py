"""Training loops for the segmentation and landmark networks (torch, CPU or CUDA).

Reproducible: every random draw (weights, batch order, augmentation) comes
from ``seed``; on CPU with a fixed thread count two runs give the same weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from models.algorithms.vocabulary import LANDMARKS, SEGMENTS
from models.training.augment import AugmentConfig, WorkSample
from models.training.dataset import AugmentedSet
from models.training.losses import dice_bce_loss, landmark_loss
from models.training.networks import SGRLandmarkNet, UNet

log = logging.getLogger(__name__)

TASKS = ("segment", "landmarks")


@dataclass
class TrainConfig:
    """Hyper-parameters of one run; written into the model manifest."""

    task: str = "segment"
    epochs: int = 40
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    size: int = 192
    base_channels: int = 8
    depth: int = 4
    disc_radius_px: float = 3.0
    reg_channels: int = 16
    alpha: float = 0.2
    augment: bool = True
    max_minutes: float | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.size % (2**self.depth):
            raise ValueError(f"size {self.size} must be divisible by 2**depth = {2**self.depth}")


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """A fresh network for ``cfg.task``."""
    if cfg.task == "segment":
        return UNet(1, len(SEGMENTS), base=cfg.base_channels, depth=cfg.depth)
    return SGRLandmarkNet(len(LANDMARKS), base=cfg.base_channels, depth=cfg.depth, reg_ch=cfg.reg_channels)


def _step_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> torch.Tensor:
    if cfg.task == "segment":
        return dice_bce_loss(model(batch["image"]), batch["masks"], batch["mask_valid"])
    disc_logits, coords = model(batch["image"])
    return landmark_loss(disc_logits, batch["discs"], coords, batch["coords"],
                         batch["lm_labelled"], batch["lm_present"], alpha=cfg.alpha)


def train(
    samples: list[WorkSample],
    cfg: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[torch.nn.Module, dict[str, object]]:
    """Train a network on ``samples``; returns it (eval mode, on CPU) and a run summary."""
    if not samples:
        raise ValueError("no training samples")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = torch.device(cfg.device)
    model = build_model(cfg).to(device)
    aug = AugmentConfig() if cfg.augment else AugmentConfig.off()
    data = AugmentedSet(samples, aug, cfg.seed, cfg.disc_radius_px, with_discs=cfg.task == "landmarks")
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=gen, drop_last=len(data) > cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = max(1, cfg.epochs * len(loader))
    warmup = max(1, min(20, total_steps // 10))
    budget_s = None if cfg.max_minutes is None else 60.0 * cfg.max_minutes
    start = time.monotonic()
    losses: list[float] = []
    epochs_done = 0
    step = 0
    stopped_by_time = False
    for epoch in range(cfg.epochs):
        data.epoch = epoch
        model.train()
        running = []
        for batch in loader:
            # Cosine schedule over steps, or over the time budget when that runs out first
            # (a time-capped run still anneals, at the price of exact reproducibility).
            progress = step / total_steps
            if budget_s is not None:
                progress = max(progress, (time.monotonic() - start) / budget_s)
            if progress >= 1.0:
                stopped_by_time = True
                break
            factor = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress))
            for group in opt.param_groups:
                group["lr"] = cfg.lr * factor
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = _step_loss(model, batch, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            running.append(float(loss.detach()))
        if running:
            epochs_done = epoch + 1
            losses.append(float(np.mean(running)))
            log.info("epoch done", extra={"task": cfg.task, "epoch": epochs_done, "loss": round(losses[-1], 4),
                                          "elapsed_s": round(time.monotonic() - start, 1)})
            if on_epoch is not None:
                on_epoch(epochs_done, losses[-1])
        if stopped_by_time:
            log.warning("stopped at the time budget", extra={"epochs_done": epochs_done, "steps": step})
            break
    model.eval().cpu()
    summary = {
        "config": asdict(cfg),
        "epochs_done": epochs_done,
        "final_loss": losses[-1] if losses else None,
        "loss_per_epoch": [round(v, 5) for v in losses],
        "train_seconds": round(time.monotonic() - start, 1),
        "steps": step,
        "stopped_by_time_budget": stopped_by_time,
        "samples": len(samples),
        "torch_threads": torch.get_num_threads(),
    }
    return model, summary
