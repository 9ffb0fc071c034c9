"""Deterministic result UIDs: same inputs and models, same UID; anything else, another."""

from __future__ import annotations

import pytest

from models.algorithms.results import AlgorithmInfo
from node.results.uids import instance_uid, series_uid

SEG = AlgorithmInfo("hipnode-seg", "1.0.0")
LM = AlgorithmInfo("hipnode-landmarks", "1.0.0")


def test_instance_uid_is_stable_and_order_free() -> None:
    a = instance_uid("sr_pair", ["1.2.3", "1.2.4"], [SEG, LM])
    assert a == instance_uid("sr_pair", ["1.2.4", "1.2.3"], [LM, SEG])
    assert a.startswith("2.25.") and len(a) <= 64 and a.replace(".", "").isdigit()


@pytest.mark.parametrize(
    "other",
    [
        ("sr", ["1.2.3", "1.2.4"], [SEG, LM]),  # another kind
        ("sr_pair", ["1.2.3", "1.2.5"], [SEG, LM]),  # another input
        ("sr_pair", ["1.2.3", "1.2.4"], [SEG, AlgorithmInfo("hipnode-landmarks", "1.0.1")]),  # new weights
    ],
)
def test_any_change_gives_another_uid(other) -> None:
    assert instance_uid("sr_pair", ["1.2.3", "1.2.4"], [SEG, LM]) != instance_uid(*other)


def test_series_uid_per_kind_study_and_models() -> None:
    assert series_uid("seg", "1.2", [SEG]) == series_uid("seg", "1.2", [SEG])
    assert len({series_uid("seg", "1.2", [SEG]), series_uid("sr", "1.2", [SEG]), series_uid("seg", "1.3", [SEG])}) == 3


def test_refusals() -> None:
    with pytest.raises(ValueError, match="kind"):
        instance_uid("pdf", ["1.2"], [SEG])
    with pytest.raises(ValueError, match="input"):
        instance_uid("seg", [], [SEG])
