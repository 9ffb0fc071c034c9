"""Training loops for the segmentation and landmark networks (torch, CPU or CUDA).

Reproducible: every random draw (weights, batch order, augmentation) comes
from ``seed``; on CPU with a fixed thread count two runs give the same weights.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from models.algorithms.vocabulary import LANDMARKS, SEGMENTS
from models.inference.crops import FINE_LANDMARK_TYPES, FINE_SEGMENTATION
from models.inference.view import VIEW_CHANNELS, VIEWS
from models.training.augment import AugmentConfig, WorkSample
from models.training.crop_dataset import CropAugment, FineSample, LandmarkCropSet, SegmentCropSet
from models.training.dataset import AugmentedSet
from models.training.losses import dice_bce_loss, landmark_loss
from models.training.networks import SEGMENTATION_ARCHITECTURES, SGRLandmarkNet, ViewNet
from models.training.view_dataset import ViewSet
from models.training.warm_start import freeze_batch_norm, warm_start

log = logging.getLogger(__name__)

TASKS = ("segment", "landmarks", "landmarks-fine", "hip-fine", "pelvis-fine", "view")
FINE_TASKS = ("landmarks-fine", "hip-fine", "pelvis-fine")
SEGMENTATION_TASKS = ("segment", "hip-fine", "pelvis-fine")
FINE_DEFAULTS = {"landmarks-fine": {"size": 96, "mm_per_px": 0.75, "jitter_mm": 6.0},
                 "hip-fine": {"size": 144, "mm_per_px": 0.55, "jitter_mm": 3.0},
                 "pelvis-fine": {"size": 128, "mm_per_px": 0.4, "jitter_mm": 4.0}}
"""Fine-stage crops: 72 mm around a landmark at 0.75 mm (covers the coarse stage's p95 error of
about 20 mm), 79 mm around a head centre at 0.55 mm (head, roof and joint space with margin),
51 mm around a tuberosity at 0.4 mm (the 20 mm the tuberosity rule searches, at a third of a
millimetre's resolution more than the coarse mask's 1.4 mm)."""


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
    mm_per_px: float | None = None  # fine tasks: the crop grid
    jitter_mm: float | None = None  # fine tasks: sigma of the crop centre's offset from the truth
    workers: int = 0  # DataLoader processes; results do not depend on it (augmentation is seeded per item)
    init: str | None = None  # a weights folder to fine-tune from (models.training.warm_start); BatchNorm frozen
    view_input: str = "maps"  # view task: what the classifier reads (models.inference.view.VIEW_SOURCES)
    architecture: str = "unet"  # segmentation tasks: a key of networks.SEGMENTATION_ARCHITECTURES

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.task in FINE_TASKS:
            defaults = FINE_DEFAULTS[self.task]
            self.mm_per_px = self.mm_per_px or float(defaults["mm_per_px"])
            self.jitter_mm = defaults["jitter_mm"] if self.jitter_mm is None else self.jitter_mm
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (load in this process) or more, got {self.workers}")
        if self.architecture not in SEGMENTATION_ARCHITECTURES:
            raise ValueError(f"architecture must be one of {sorted(SEGMENTATION_ARCHITECTURES)}, got {self.architecture!r}")
        if self.architecture != "unet" and self.task not in SEGMENTATION_TASKS:
            raise ValueError(f"--architecture applies to the segmentation tasks {SEGMENTATION_TASKS}, not {self.task}")
        if self.size % (2**self.depth):
            raise ValueError(f"size {self.size} must be divisible by 2**depth = {2**self.depth}")


def weights_folder(task: str) -> str:
    """The folder a task's model lives in under a weights root (``landmarks-fine`` -> ``landmarks_fine``)."""
    return task.replace("-", "_")


def manifest_extra(cfg: TrainConfig) -> dict[str, object] | None:
    """What inference needs beyond the common manifest: the crop grid of a fine model."""
    if cfg.task not in FINE_TASKS:
        return None
    return {"crop": {"size": cfg.size, "mm_per_px": cfg.mm_per_px, "mirror_left": True, "jitter_mm": cfg.jitter_mm}}


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """A fresh network for ``cfg.task``."""
    if cfg.task == "segment":
        return SEGMENTATION_ARCHITECTURES[cfg.architecture](1, len(SEGMENTS), base=cfg.base_channels, depth=cfg.depth)
    if cfg.task == "view":
        return ViewNet(len(VIEWS), base=cfg.base_channels, depth=cfg.depth,
                       in_ch=1 if cfg.view_input == "image" else len(VIEW_CHANNELS))
    if cfg.task in FINE_SEGMENTATION:
        net = SEGMENTATION_ARCHITECTURES[cfg.architecture]
        return net(1, len(FINE_SEGMENTATION[cfg.task].segments), base=cfg.base_channels, depth=cfg.depth)
    n = len(FINE_LANDMARK_TYPES) if cfg.task == "landmarks-fine" else len(LANDMARKS)
    return SGRLandmarkNet(n, base=cfg.base_channels, depth=cfg.depth, reg_ch=cfg.reg_channels)


def _step_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> torch.Tensor:
    if cfg.task == "view":
        return torch.nn.functional.cross_entropy(model(batch["image"]), batch["view"])
    if cfg.task in SEGMENTATION_TASKS:
        return dice_bce_loss(model(batch["image"]), batch["masks"], batch["mask_valid"])
    disc_logits, coords = model(batch["image"])
    return landmark_loss(disc_logits, batch["discs"], coords, batch["coords"],
                         batch["lm_labelled"], batch["lm_present"], alpha=cfg.alpha)


def train(
    samples: list[WorkSample],
    cfg: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[torch.nn.Module, dict[str, object]]:
    """Train a coarse network on working-grid ``samples``; returns it (eval mode, on CPU) and a run summary."""
    if not samples:
        raise ValueError("no training samples")
    aug = AugmentConfig() if cfg.augment else AugmentConfig.off()
    return fit(AugmentedSet(samples, aug, cfg.seed, cfg.disc_radius_px, with_discs=cfg.task == "landmarks"),
               cfg, on_epoch)


def train_view(
    samples: list[tuple[np.ndarray, int]],
    cfg: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[torch.nn.Module, dict[str, object]]:
    """Train the view classifier on films' segmentation maps (``view_dataset``) labelled with their view."""
    if cfg.task != "view":
        raise ValueError(f"{cfg.task} is not the view task")
    if not samples:
        raise ValueError("no training samples: no film is labelled with a 'view'")
    counts = np.bincount([label for _, label in samples], minlength=len(VIEWS))
    if (counts == 0).any():
        missing = [v for v, n in zip(VIEWS, counts, strict=True) if n == 0]
        raise ValueError(f"no training film of view {missing}: the classifier needs every view")
    aug = AugmentConfig() if cfg.augment else AugmentConfig.off()
    return fit(ViewSet(samples, aug, cfg.seed, cfg.size, cfg.view_input, reframing=cfg.augment), cfg, on_epoch)


def train_fine(
    samples: list[FineSample],
    cfg: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[torch.nn.Module, dict[str, object]]:
    """Train a fine-stage network on crops of ``samples`` (loaded at ``cfg.mm_per_px``)."""
    if cfg.task not in FINE_TASKS:
        raise ValueError(f"{cfg.task} is not a fine-stage task")
    aug = CropAugment(jitter_mm=float(cfg.jitter_mm or 0.0)) if cfg.augment else CropAugment.off()
    mm = float(cfg.mm_per_px or 0.0)
    if cfg.task in FINE_SEGMENTATION:
        data: Dataset = SegmentCropSet(samples, FINE_SEGMENTATION[cfg.task], cfg.size, mm, cfg.seed, aug)
    else:
        data = LandmarkCropSet(samples, cfg.size, mm, cfg.seed, aug, cfg.disc_radius_px)
    if not len(data):
        raise ValueError("no training crops: no sample has the landmarks (and, for a segmentation, the masks) "
                         "this model needs")
    return fit(data, cfg, on_epoch)


def fit(
    data: Dataset,
    cfg: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[torch.nn.Module, dict[str, object]]:
    """The training loop shared by every task: AdamW, warm-up then cosine (by step or time budget)."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = torch.device(cfg.device)
    model = build_model(cfg)
    if cfg.init:
        difference = warm_start(model, cfg.init, cfg.size)
        log.info("started from exported weights", extra={"weights": cfg.init, "max_output_difference": difference})
    model = model.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=gen, drop_last=len(data) > cfg.batch_size,
                        num_workers=cfg.workers, pin_memory=device.type == "cuda")
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
        if cfg.init:
            freeze_batch_norm(model)  # the loaded BatchNorms are folded identities (warm_start)
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
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
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
        "samples": len(data),
        "torch_threads": torch.get_num_threads(),
        "hardware": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "torch": torch.__version__,
    }
    return model, summary
