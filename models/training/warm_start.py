"""Start training from an exported model: fine-tuning the reference weights (or a user's) without their torch file.

Only ``model.onnx`` is committed, and the exporter folds every BatchNorm into
the conv before it. So the folded conv weights come back into the conv, and its
BatchNorm becomes the identity plus the folded bias (weight 1, mean 0, variance
``1 - eps``). Fine-tuning then has to keep the BatchNorm statistics frozen
(:func:`freeze_batch_norm`): batch statistics would replace the identity and
undo what was loaded. Parameters the exporter kept by name (heads, the landmark
regressor) are matched by name; the folded ones by their order in the graph,
which is the order the network runs its ConvBlocks in. A mismatch of any kind
is an error naming what differs, and the loaded network must reproduce the
ONNX model's outputs (:func:`verify_against_export`).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from torch import nn

EXPORT_PREFIX = "net."
"""The export wrappers (``ExportSegmentation``, ``ExportLandmarks``) hold the network as ``net``."""


class WarmStartError(ValueError):
    """The exported model does not fit the network being trained."""


def _conv_norm_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Every conv directly followed by a BatchNorm in a Sequential, in module (= execution) order."""
    pairs = []
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module.children())
            pairs += [(a, b) for a, b in pairwise(children)
                      if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d)]
    return pairs


def load_exported(model: nn.Module, onnx_path: str | Path) -> None:
    """Copy the weights of an exported ``model.onnx`` of the same architecture into ``model`` (in place)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state = model.state_dict()
    named = {name: weights[EXPORT_PREFIX + name] for name in state if EXPORT_PREFIX + name in weights}
    folded = []
    for node in graph.node:
        if node.op_type == "Conv" and node.input[1] in weights and node.input[1][len(EXPORT_PREFIX):] not in named:
            bias = weights.get(node.input[2]) if len(node.input) > 2 else None
            folded.append((weights[node.input[1]], bias))
    pairs = _conv_norm_pairs(model)
    if len(folded) != len(pairs):
        raise WarmStartError(f"{onnx_path}: {len(folded)} folded convs, the network has {len(pairs)} conv-BatchNorm "
                             f"layers (a different depth or task)")
    with torch.no_grad():
        for name, value in named.items():
            if tuple(state[name].shape) != value.shape:
                raise WarmStartError(f"{onnx_path}: {name} is {value.shape}, the network's is "
                                     f"{tuple(state[name].shape)} (different width or labels)")
            state[name].copy_(torch.from_numpy(np.array(value)))
        for i, ((weight, bias), (conv, norm)) in enumerate(zip(folded, pairs)):
            if tuple(conv.weight.shape) != weight.shape:
                raise WarmStartError(f"{onnx_path}: folded conv {i} is {weight.shape}, the network's is "
                                     f"{tuple(conv.weight.shape)} (different width)")
            conv.weight.copy_(torch.from_numpy(np.array(weight)))
            norm.weight.fill_(1.0)
            norm.bias.copy_(torch.from_numpy(np.array(bias)) if bias is not None else torch.zeros_like(norm.bias))
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)
    folded_owners = {id(m) for pair in pairs for m in pair}
    missing = [n for n in state if EXPORT_PREFIX + n not in weights
               and id(model.get_submodule(n.rpartition(".")[0])) not in folded_owners]
    if missing:
        raise WarmStartError(f"{onnx_path}: no weights for {', '.join(missing[:5])}")


def freeze_batch_norm(model: nn.Module) -> None:
    """Keep every BatchNorm on its loaded statistics (call after each ``model.train()``)."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


def warm_start(model: nn.Module, weights_dir: str | Path, size: int) -> float:
    """Load ``weights_dir/model.onnx`` into ``model`` and check it reproduces the ONNX model; returns the largest difference."""
    from models.training.export import MODEL_FILE
    from models.training.networks import (
        SEGMENTATION_ARCHITECTURES,
        ExportLandmarks,
        ExportSegmentation,
    )

    onnx_path = Path(weights_dir) / MODEL_FILE
    if not onnx_path.is_file():
        raise WarmStartError(f"no {MODEL_FILE} in {weights_dir}")
    load_exported(model, onnx_path)
    segmentation = isinstance(model, tuple(SEGMENTATION_ARCHITECTURES.values()))
    wrapper = ExportSegmentation(model) if segmentation else ExportLandmarks(model)
    return verify_against_export(wrapper, onnx_path, size)


def verify_against_export(wrapper: nn.Module, onnx_path: str | Path, size: int, tolerance: float = 1e-3) -> float:
    """Largest difference between ``wrapper`` (eval) and the ONNX model on one input; raises beyond ``tolerance``.

    ``wrapper`` is the export wrapper around the loaded network, so both sides
    produce the same outputs (probabilities, coordinates).
    """
    import onnxruntime as ort

    image = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: image})
    was_training = wrapper.training
    wrapper.eval()
    with torch.no_grad():
        got = wrapper(torch.from_numpy(image))
    wrapper.train(was_training)
    got = got if isinstance(got, tuple) else (got,)
    worst = max(float(np.max(np.abs(g.numpy() - e))) for g, e in zip(got, expected))
    if worst > tolerance:
        raise WarmStartError(f"{onnx_path}: the loaded network differs from the ONNX model by {worst:.3g}")
    return worst
