"""onnxruntime sessions: created lazily, cached per process, best provider first.

Providers in order of preference: TensorRT, CUDA, CPU (whatever this
onnxruntime build offers). One session per (model file, sha256) per process,
so the node's worker and ``hipnode analyze`` pay the load cost once.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.inference.preprocess import GridTransform, to_work_grid

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
WEIGHTS_ROOT = Path(os.environ.get("HIPNODE_WEIGHTS_DIR") or Path(__file__).resolve().parent.parent / "weights")
"""Where ``segment/`` and ``landmarks/`` live: the committed weights, or ``HIPNODE_WEIGHTS_DIR``
(candidate weights under evaluation, without touching the committed ones)."""

_sessions: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


class ModelUnavailable(RuntimeError):
    """The weights are missing or do not match their manifest; ``str()`` says which."""


def available_providers() -> list[str]:
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in have] or ["CPUExecutionProvider"]


@dataclass(frozen=True)
class Manifest:
    """The parts of ``manifest.json`` inference needs (the full dict is kept in ``raw``)."""

    directory: Path
    name: str
    version: str
    task: str
    file: str
    sha256: str
    work_size: int
    labels: tuple[str, ...]
    raw: dict[str, Any]

    @classmethod
    def read(cls, directory: str | Path) -> Manifest:
        d = Path(directory)
        path = d / "manifest.json"
        if not path.is_file():
            raise ModelUnavailable(f"no manifest.json in {d} (train with `hipnode train`, see docs/models.md)")
        raw = json.loads(path.read_text())
        try:
            return cls(d, raw["name"], raw["version"], raw["task"], raw["file"], raw["sha256"],
                       int(raw["work_size"]), tuple(raw["outputs"][0]["labels"]), raw)
        except (KeyError, IndexError, TypeError) as exc:
            raise ModelUnavailable(f"{path} lacks a required field: {exc}") from exc


def session_options() -> Any:
    """Options for every onnxruntime session of the project (the analysis models and the matcher).

    Intra-op threads that finish their share do not spin waiting for the next:
    in the node's worker two sessions run at once (the pair job's matcher beside
    the study job's models) with Python encoding beside them on 2 cores, and
    spinning threads burn the cores the others need. (``HIPNODE_ORT_SPIN=1`` lets
    them spin again, to compare.)
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if os.environ.get("HIPNODE_ORT_SPIN", "0") != "1":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def session_for(manifest: Manifest, providers: list[str] | None = None) -> Any:
    """The cached ``InferenceSession`` of a model; checks the file's sha256 on first load."""
    key = (str((manifest.directory / manifest.file).resolve()), manifest.sha256)
    with _lock:
        sess = _sessions.get(key)
        if sess is not None:
            return sess
        import hashlib

        import onnxruntime as ort

        path = manifest.directory / manifest.file
        if not path.is_file():
            raise ModelUnavailable(f"model file {path} is missing")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != manifest.sha256:
            raise ModelUnavailable(f"{path} sha256 {digest[:12]}... does not match its manifest")
        sess = ort.InferenceSession(str(path), sess_options=session_options(), providers=providers or available_providers())
        _sessions[key] = sess
        return sess


def warm_session(manifest: Manifest, batch: int = 1) -> None:
    """Create the model's session and run it once on zeros of its declared input shape.

    The shape comes from the ONNX graph, not from the manifest's ``work_size``:
    models differ in channels (the view model on the segmentation's maps takes 4).
    """
    sess = session_for(manifest)
    (declared,) = sess.get_inputs()
    shape = [dim if isinstance(dim, int) else manifest.work_size for dim in declared.shape]
    if declared.shape and not isinstance(declared.shape[0], int):
        shape[0] = batch
    sess.run(None, {declared.name: np.zeros(shape, np.float32)})


def run_session(manifest: Manifest, image: np.ndarray) -> list[np.ndarray]:
    """Run a model on one (S, S) working-grid image; returns its outputs without the batch axis."""
    return [o[0] for o in run_batch(manifest, np.asarray(image)[None])]


def run_batch(manifest: Manifest, images: np.ndarray) -> list[np.ndarray]:
    """Run a model on a stack of (N, S, S) images at once; returns its outputs with the batch axis."""
    sess = session_for(manifest)
    outputs = sess.run(None, {"image": np.ascontiguousarray(images[:, None], dtype=np.float32)})
    return [np.asarray(o) for o in outputs]


class OnnxModel:
    """A committed model: its manifest, checked once against the spec's labels, and its work grid.

    Subclasses name their ``task`` and the ``labels`` they must carry; the
    onnxruntime session itself is created on first use by :func:`run_session`.
    """

    task: str = ""
    labels: tuple[str, ...] = ()
    description: str = ""

    def __init__(self, weights_dir: str | Path) -> None:
        self.weights_dir = Path(weights_dir)
        self._manifest: Manifest | None = None

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            m = Manifest.read(self.weights_dir)
            if m.task != self.task or tuple(m.labels) != self.labels:
                raise ModelUnavailable(f"{self.weights_dir} is not a {self.description}")
            self._manifest = m
        return self._manifest

    def preprocess(
        self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None
    ) -> tuple[np.ndarray, GridTransform]:
        """The source image on the model's working grid, with the transform back."""
        return to_work_grid(pixels, spacing_mm, self.manifest.work_size)
