"""Diagnostic, not part of the test suite: the generator's ground truth in place of the models.

Separates "the pipeline's seams work" from "the trained weights are good enough".
With this folder first on PYTHONPATH and ``HIPNODE_GT_PAIR`` naming a ``hipnode synth``
pair folder, every Python process (the node, its spawned workers, ``hipnode process``)
answers ``analyze_radiograph`` for that pair's two images with their ground truth
(landmarks, measurements, masks; the true pelvis mask as the pelvis probability).
Other images go to the real models. Nothing else is replaced: alignment, pairing,
encoding, storage and delivery run as they are.

    HIPNODE_GT_PAIR=/tmp/p/pair_000 HIPNODE_TEST_PAIR=/tmp/p/pair_000 \
    PYTHONPATH=tests/node/gt_analysis:. .venv/bin/python -m pytest tests/node/test_pipeline_e2e.py
"""

import os

if os.environ.get("HIPNODE_GT_PAIR"):
    import json
    from pathlib import Path

    import numpy as np

    import models.inference.analyzer as _analyzer
    from models.algorithms.results import AlgorithmInfo, ImageAnalysis

    _real = _analyzer.analyze_radiograph
    _pair = Path(os.environ["HIPNODE_GT_PAIR"])

    def _uid(path: Path) -> str:
        from pydicom import dcmread

        return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)

    _roles = {_uid(_pair / f"{role}.dcm"): role for role in ("pre", "post")}

    def _ground_truth(radiograph):  # noqa: ANN001, ANN202
        role = _roles.get(str(radiograph.dataset.SOPInstanceUID))
        if role is None:
            return _real(radiograph)
        truth = json.loads((_pair / f"{role}.json").read_text())
        with np.load(_pair / f"{role}_masks.npz") as data:
            masks = {k: data[k].astype(bool) for k in data.files}
        return ImageAnalysis(
            landmarks={k: (None if v is None else tuple(v)) for k, v in truth["landmarks"].items()},
            measurements=truth["measurements"],
            masks=masks,
            calibration=truth["calibration"],
            pixel_spacing_mm=tuple(truth["pixel_spacing_mm"]),
            probabilities={"pelvis": masks["pelvis"].astype(np.float32)},
            algorithms=(AlgorithmInfo("ground-truth-segment", "gt"), AlgorithmInfo("ground-truth-landmarks", "gt")),
            timings_ms={"ground_truth": 0.0},
        )

    _analyzer.analyze_radiograph = _ground_truth
