"""The benchmark runs end to end (a smoke test at a tiny size; figures are not asserted)."""

from __future__ import annotations

import pytest

from fashionseg.bench import format_report, run

pytestmark = pytest.mark.slow


def test_bench_reports_every_figure() -> None:
    result = run(size="tiny", reps=1, warmup=1, batch_size=2)
    assert result["a_train_step"]["ratio"] > 0
    assert result["b_validation"]["thresholds"] == 19
    assert set(result["c_data_samples_per_s"]) == {"augmented", "augmented_hue", "plain"}
    assert result["d_inference_images_per_s"] > 0
    assert set(result["e_configs"]) == {"default", "cpu_fast"}
    report = format_report(result)
    for label in ("(a) train step", "(b) validation", "(c) data", "(d) inference", "cpu_fast"):
        assert label in report
