"""The GPU checklist's code, run on a CPU at tiny sizes (the figures need a GPU)."""

from __future__ import annotations

import sys

import pytest

from fashionseg.gpu_bench import UtilisationSampler, run_all, utilisation_summary


def test_utilisation_sampler_reads_a_tools_numbers() -> None:
    fake = [sys.executable, "-c", "print('12'); print('80'); print('95')"]
    with UtilisationSampler(fake) as sampler:
        sampler.proc.wait(timeout=60)  # the real tool runs until stopped
    assert sampler.samples == [12.0, 80.0, 95.0]
    summary = utilisation_summary(sampler.samples)
    assert summary["median"] == 80.0 and summary["share_ge_60"] == pytest.approx(2 / 3)
    with UtilisationSampler(["/nonexistent/nvidia-smi"]) as missing:
        pass
    assert missing.samples == [] and utilisation_summary([]) == {"samples": 0}


@pytest.mark.slow
def test_all_three_parts_run_at_tiny_sizes_on_a_cpu() -> None:
    result = run_all(
        "cpu", (48, 32), train_batch=2, batch_sizes=(1, 2), precision="fp32",
        rounds=1, steps=1, experiment="tiny",
    )  # fmt: skip
    assert result["model"]["arch"] == "maskrcnn_mobilenet_v3_large_fpn"
    a = result["a_train_vs_bare"]
    assert a["ours_s"] > 0 and a["bare_s"] > 0 and a["rounds"] == 1
    assert set(a["gpu_utilisation"]) == {"ours", "bare"}
    b = result["b_cudnn_benchmark"]
    assert b["on_s"] > 0 and b["off_s"] > 0
    c = result["c_inference"]
    assert [row["batch"] for row in c] == [1, 2]
    assert all(row["fused_s"] > 0 and row["network_s"] > 0 for row in c)
