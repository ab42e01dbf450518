"""The GPU checklist's code, run on a CPU at tiny sizes (the figures need a GPU)."""

from __future__ import annotations

import sys

import pytest

from fashionseg.bench.gpu_bench import UtilisationSampler, run_all, utilisation_summary


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


def test_report_is_written_once_and_never_over_a_file(tmp_path) -> None:  # noqa: ANN001
    from fashionseg.bench.gpu_bench import format_report, write_report

    spread = {"median": 2.0, "min": 1.5, "max": 2.5, "n": 3}
    ratio = {"ratio": 1.02, "ratio_min": 1.0, "ratio_max": 1.1, "rounds": 3}
    result = {
        "device": "test card", "date": "2026-12-06 22:00 UTC", "torch": "x",
        "size": [600, 400], "precision": "bf16",
        "model": {"arch": "maskrcnn_resnet50_fpn", "resize": "600/1000"},
        "a_train_vs_bare": {
            "batch": 8, **ratio, "img_per_s": {"ours": spread, "bare": spread},
            "gpu_utilisation": {"ours": {"samples": 0}, "bare": {"median": 70.0, "share_ge_60": 0.9}},
        },
        "b_cudnn_benchmark": {"batch": 8, **ratio, "img_per_s": {"on": spread, "off": spread}},
        "c_inference": [{"batch": 1, **ratio, "img_per_s": {"fused": spread, "network": spread}}],
    }  # fmt: skip
    text = format_report(result)
    assert "(a) training, batch 8: ours 2.0 (1.5-2.5) img/s" in text
    assert "bare 70.0 / 0.9" in text and "batch  1: fused 2.0" in text
    json_path, md_path = write_report(result, tmp_path)
    assert md_path.read_text() == text and json_path.is_file()
