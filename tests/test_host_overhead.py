"""The host-overhead measure: operator calls and host round trips, before and after."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import one_line_error, one_line_error_in_process

from fashionseg.host_overhead import count_calls, load_fusion, measure

REFERENCE = Path(__file__).with_name("reference_fusion.py")


def test_batched_path_needs_5x_fewer_calls_and_no_round_trip() -> None:
    before = load_fusion(REFERENCE).fuse  # today's fusion (commit 2ca2a05)
    for method in ("seed", "argmax"):
        result = measure(batch=3, detections=12, size=(30, 20), method=method, before=before)
        assert result["after"]["calls"] * 5 <= result["before"]["calls"], result
        assert result["after"]["syncs"] == 0, result
        assert result["before"]["syncs"] > 0, result  # the measure sees round trips
        assert result["pixels_equal"] >= 0.999, result


def test_count_calls_counts_round_trips() -> None:
    import torch

    x = torch.arange(4)
    assert count_calls(lambda: x.sum().item())["syncs"] == 1
    assert count_calls(lambda: x + 1)["syncs"] == 0


@pytest.mark.slow  # the command line end to end; the fast set has the in-process twin below
def test_a_missing_before_file_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(
        "fashionseg.host_overhead", "--before", str(tmp_path / "nope.py"), cwd=tmp_path
    )
    assert "nope.py: no such file" in line


def test_a_missing_before_file_is_one_line_in_process(tmp_path: Path) -> None:
    line = one_line_error_in_process(
        "fashionseg.host_overhead", "--before", str(tmp_path / "nope.py"), cwd=tmp_path
    )
    assert "nope.py: no such file" in line
