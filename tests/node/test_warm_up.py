"""Worker warm-up: every committed model runs once, in its own input shape, before any job."""

from __future__ import annotations

import numpy as np

from models.inference.analyzer import default_analyzer
from models.inference.runtime import session_for, warm_session
from node.pipeline.compute import warm_up


def test_every_committed_model_warms_in_its_declared_shape() -> None:
    models = default_analyzer().models
    channels = {m.manifest.name: session_for(m.manifest).get_inputs()[0].shape[1] for m in models}
    assert 4 in channels.values(), channels  # the view model on the segmentation's maps: not 1 channel
    for model in models:
        warm_session(model.manifest, batch=2)


def test_warm_up_reports_each_part() -> None:
    seconds = warm_up()
    assert set(seconds) == {"imports", "analysis_models", "matcher"}
    assert all(np.isfinite(v) and v >= 0 for v in seconds.values())
