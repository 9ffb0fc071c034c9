"""The ingest benchmark's summary: medians over interleaved rounds, paired per round."""

from __future__ import annotations

import pytest

from tests.bench.bench_ingest import Run, main, summarize


def _run(target: str, senders: int, seconds: float) -> Run:
    return Run(target, senders, 100, 1000.0, seconds, 0, machine_cpu_s=seconds)


def test_ratio_is_of_medians_and_rounds_are_paired_in_order() -> None:
    runs = [
        _run("storescp", 4, 2.0),  # 500 MB/s
        _run("node/r1", 4, 2.5),  # 400
        _run("storescp", 4, 1.0),  # 1000: an outlier round
        _run("node/r1", 4, 2.0),  # 500
        _run("storescp", 4, 2.5),  # 400
        _run("node/r1", 4, 4.0),  # 250
        _run("storescp", 1, 1.0),  # another sender count: ignored
    ]
    (line,) = summarize(runs, 4)
    assert "node/r1 400.0 MB/s, storescp 500.0 MB/s (medians of 3), ratio 0.80" in line
    assert "per round 0.50, 0.62, 0.80" in line  # 500/1000, 250/400, 400/500, sorted


def test_zero_rounds_is_refused_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--repeat", "0"])
    assert info.value.code == 2
    assert "--repeat: must be at least 1, got 0" in capsys.readouterr().err
