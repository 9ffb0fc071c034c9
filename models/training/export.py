"""ONNX export and the model manifest the inference classes and encoders read.

``manifest.json``: name, version, task, inputs (name, shape, preprocessing),
outputs with their label names, sha256 of the ONNX file, the training data and
run summary, and licences (code, weights, and the anatomy the data came from).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from models.algorithms.vocabulary import LANDMARKS, SEGMENTS
from models.inference.crops import FINE_LANDMARK_TYPES, FINE_SEGMENTATION
from models.inference.view import VIEW_CHANNELS, VIEWS
from models.training.networks import (
    SEGMENTATION_ARCHITECTURES,
    ExportLandmarks,
    ExportSegmentation,
    ExportView,
    SGRLandmarkNet,
    ViewNet,
)

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
OPSET = 17

LICENCES = {
    "code": "Apache-2.0 (HipNode)",
    "weights": "Apache-2.0 (HipNode); research use only, not a medical device",
    "training_anatomy": "MIT: pelvic label maps from yuta-hi/pelvic-annonation (TCIA Pelvic-Reference-Data), "
    "see models/synth/pelvic_ref/LICENSE",
}


COARSE_PREPROCESSING = (
    "models/inference/preprocess.py to_work_grid: isotropic resampling from the calibration (longer side fitted "
    "to the grid), 5-95 percentile clipping then min-max to [0,1], zero padding bottom/right; bright = dense "
    "(MONOCHROME1 inverted)")
VIEW_PREPROCESSING = (
    "models/inference/view.py view_channels: the segmentation model's probabilities on its own working grid, "
    "right and left merged by maximum per channel, the content area-resampled to half that grid, zero padding "
    "bottom/right")
FINE_PREPROCESSING = (
    "models/inference/crops.py: the radiograph area-resampled to crop.mm_per_px (isotropic, from the calibration), "
    "5-95 percentile clipping then min-max to [0,1] over the whole image, then a size x size crop centred on the "
    "coarse estimate, mirrored left-right for left-side structures (zeros outside the image); bright = dense")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_model(
    model: torch.nn.Module,
    task: str,
    out_dir: str | Path,
    size: int,
    version: str,
    training: dict[str, object],
    extra: dict[str, object] | None = None,
    segmentation: dict[str, str] | None = None,
    view_input: str = "maps",
) -> Path:
    """Write ``out_dir/model.onnx`` + ``manifest.json``; returns the manifest path.

    ``view_input``, ``segmentation``: for a view model, what it reads (the film or the segmentation's maps)
    and, for maps, the name and version of the segmentation that makes them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / MODEL_FILE
    channels = len(VIEW_CHANNELS) if task == "view" and view_input == "maps" else 1
    dummy = torch.zeros(1, channels, size, size)
    model = model.eval().cpu()
    if task == "segment" or task in FINE_SEGMENTATION:
        if not isinstance(model, tuple(SEGMENTATION_ARCHITECTURES.values())):
            raise TypeError(f"{task} task needs one of the segmentation networks {sorted(SEGMENTATION_ARCHITECTURES)}")
        labels = list(SEGMENTS) if task == "segment" else list(FINE_SEGMENTATION[task].segments)
        wrapper: torch.nn.Module = ExportSegmentation(model)
        output_names = ["probabilities"]
        outputs = [{"name": "probabilities", "shape": ["N", len(labels), size, size],
                    "meaning": "sigmoid probability per segment", "labels": labels}]
        name = f"hipnode-{task}"
    elif task in ("landmarks", "landmarks-fine"):
        if not isinstance(model, SGRLandmarkNet):
            raise TypeError(f"{task} task needs an SGRLandmarkNet")
        labels = list(LANDMARKS) if task == "landmarks" else list(FINE_LANDMARK_TYPES)
        wrapper = ExportLandmarks(model)
        output_names = ["disc_probabilities", "coordinates"]
        outputs = [
            {"name": "disc_probabilities", "shape": ["N", len(labels), size, size],
             "meaning": "probability of the disc around each landmark", "labels": labels},
            {"name": "coordinates", "shape": ["N", len(labels), 2],
             "meaning": "regressed (x, y) working-grid pixels per landmark", "labels": labels},
        ]
        name = "hipnode-landmarks" if task == "landmarks" else "hipnode-landmarks-fine"
    elif task == "view":
        if not isinstance(model, ViewNet):
            raise TypeError("view task needs a ViewNet")
        wrapper = ExportView(model)
        output_names = ["probabilities"]
        outputs = [{"name": "probabilities", "shape": ["N", len(VIEWS)], "meaning": "softmax probability per view",
                    "labels": list(VIEWS)}]
        name = f"hipnode-view-{view_input}"
    else:
        raise ValueError(f"unknown task {task!r}")
    wrapper.eval()  # export restores the wrapper's mode afterwards: it must be eval, or BN flips to training
    with torch.no_grad():
        torch.onnx.export(
            wrapper, (dummy,), str(onnx_path), input_names=["image"], output_names=output_names,
            dynamic_axes={"image": {0: "N"}, **{n: {0: "N"} for n in output_names}},
            opset_version=OPSET, dynamo=False,
        )
    manifest = {
        "name": name,
        "version": version,
        "task": task,
        "file": MODEL_FILE,
        "sha256": sha256_file(onnx_path),
        "inputs": [{
            "name": "image", "shape": ["N", channels, size, size], "dtype": "float32",
            "preprocessing": COARSE_PREPROCESSING if task in ("segment", "landmarks") else FINE_PREPROCESSING,
        } if task != "view" else {
            "name": "image", "shape": ["N", channels, size, size], "dtype": "float32", "source": "image",
            "preprocessing": COARSE_PREPROCESSING,
        } if view_input == "image" else {
            "name": "image", "shape": ["N", channels, size, size], "dtype": "float32", "source": "maps",
            "channels": list(VIEW_CHANNELS), "preprocessing": VIEW_PREPROCESSING, "segmentation": segmentation or {},
        }],
        "outputs": outputs,
        "work_size": size,
        "training": training,
        "licences": LICENCES,
        **(extra or {}),
    }
    path = out / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path
