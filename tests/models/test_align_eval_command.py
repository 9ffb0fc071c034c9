"""``hipnode eval align`` end to end: a label-map pair is scored, a pair the segmentation refuses counts as refused."""

from __future__ import annotations

import json

import pytest

from node.cli import main
from tests.models.test_synth_ct import _phantom

METHODS = ("plain", "ours")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("eval-align")
    data = root / "pairs"
    assert main(["synth", "--out", str(root / "labels"), "--pairs", "1", "--seed", "7", "--size", "640"]) == 0
    _phantom(root / "ct.nii")
    assert main(["synth", "--ct", str(root / "ct.nii"), "--out", str(root / "ct"), "--pairs", "1", "--seed", "3",
                 "--size", "320"]) == 0
    data.mkdir()
    (root / "labels" / "pair_000").rename(data / "labels_pair")
    (root / "ct" / "pair_000").rename(data / "phantom_pair")
    out = root / "eval.json"
    argv = ["eval", "align", "--data", str(data), "--matcher", "disk_lightglue", "--weighting", "oracle",
            "--weighting", "segmentation_model", "--json", str(out)]
    for method in METHODS:
        argv += ["--method", method]
    assert main(argv) == 0
    return json.loads(out.read_text())


def _outcomes(report: dict[str, object], pair: str, weighting: str) -> list[dict[str, object]]:
    return [o for o in report["outcomes"] if o["pair"] == pair and o["weighting"] == weighting]  # type: ignore[index, union-attr]


def test_every_pair_weighting_and_method_has_an_outcome(report: dict[str, object]) -> None:
    assert set(report["best"]) == {"labels_pair", "phantom_pair"}  # type: ignore[arg-type]
    for pair in ("labels_pair", "phantom_pair"):
        for weighting in ("oracle", "segmentation_model"):
            assert sorted(o["method"] for o in _outcomes(report, pair, weighting)) == sorted(METHODS)
    labels = _outcomes(report, "labels_pair", "segmentation_model")
    assert all(o["failure"] is None or not str(o["failure"]).startswith(("pre-op image", "post-op image"))
               for o in labels)
    assert any(o["mre_norm"] is not None for o in labels)  # an AP pelvis film the model knows is aligned


def test_a_film_the_segmentation_refuses_is_refused_not_warped(report: dict[str, object]) -> None:
    """A rigid phantom with no hips: ``hipnode analyze`` finds no pelvis with a hip, so the model's pelvis map
    is off its domain and every method counts the pair as refused, with the reason, as ``hipnode align`` does."""
    refused = _outcomes(report, "phantom_pair", "segmentation_model")
    for outcome in refused:
        assert outcome["mre_norm"] is None
        assert str(outcome["failure"]).startswith(("pre-op image: ", "post-op image: "))
    oracle = _outcomes(report, "phantom_pair", "oracle")  # the true bone mask is not refused
    assert not any(str(o["failure"] or "").startswith(("pre-op image", "post-op image")) for o in oracle)
