"""The benchmark runs end to end (a smoke test at a tiny size; figures are not asserted)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from fashionseg.bench import format_report, run

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """On one thread: on a busy 2-core machine, threads waiting on each other made small
    steps take seconds (figures are not asserted here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_bench_reports_every_figure() -> None:
    result = run(size="tiny", reps=1, warmup=1, batch_size=2, steps=1)
    a = result["a_train_step"]
    assert a["ratio"] > 0 and a["ratio_min"] <= a["ratio"] <= a["ratio_max"]
    assert a["rounds"] == 1 and set(a["values"]) == {"lightning", "bare"}
    assert result["b_validation"]["thresholds"] == 19
    assert result["b_validation"]["rounds"] == 1
    assert set(result["c_data_samples_per_s"]) == {"augmented", "augmented_hue", "plain", "spread"}
    assert result["d_inference_images_per_s"] > 0
    assert set(result["e_configs"]) == {"default", "cpu_fast"}
    speedup = result["e_configs"]["cpu_fast"]["train_speedup"]
    assert set(speedup["values"]) == {"default", "cpu_fast"}
    report = format_report(result)
    for label in ("(a) train step", "(b) validation", "(c) data", "(d) inference", "cpu_fast"):
        assert label in report
    assert "(min-max over rounds)" in report and "1 round)" in report
