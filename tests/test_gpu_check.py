"""gpu_check and bench --device cuda: the no-GPU exits, the report never overwriting a
file, and the GPU code paths run on the CPU (tiny model; no timing asserted)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import torch
from helpers import call_main

from fashionseg import gpu_check
from fashionseg.bench import gpu
from fashionseg.bench.gpu import PrecisionTrainer, format_gpu_report, gpu_benchmark
from fashionseg.bench.gpu_check import _write_new, output_paths, run_check
from fashionseg.data.synthetic import generate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on one thread: on a busy 2-core machine, threads waiting on each other
    made a 64x48 step take seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# A tiny Mask R-CNN in place of the R50-FPN (the code path, not the figures)
TINY_NET = [
    "model.net.arch=maskrcnn_mobilenet_v3_large_fpn",
    "model.net.min_size=48",
    "model.net.max_size=64",
    "model.net.rpn_pre_nms_top_n_train=50",
    "model.net.rpn_post_nms_top_n_train=20",
    "model.net.rpn_pre_nms_top_n_test=20",
    "model.net.rpn_post_nms_top_n_test=10",
    "model.net.box_batch_size_per_image=16",
    "model.net.box_detections_per_img=5",
]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine with one
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # the command line end to end; the fast set has the in-process twin below
def test_gpu_check_without_a_gpu_says_so_in_one_line_and_exits_0(tmp_path: Path) -> None:
    proc = _run("fashionseg.gpu_check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines() == [
        "gpu-check: no CUDA GPU on this machine (torch.cuda.is_available() is False): "
        "nothing to check, exit 0"
    ]
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no gpu_check/ folder made


def test_gpu_check_main_without_cuda(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [
        "gpu-check: no CUDA GPU on this machine (torch.cuda.is_available() is False): "
        "nothing to check, exit 0"
    ]
    assert not (tmp_path / "out").exists()


NO_CUDA_FOR_BENCH = (
    "error: --device cuda: no CUDA GPU on this machine (torch.cuda.is_available() is False)"
)


@pytest.mark.slow  # the command line end to end; the fast set has the in-process twin below
def test_bench_device_cuda_without_a_gpu_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = _run("fashionseg.bench", "--device", "cuda", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [NO_CUDA_FOR_BENCH]


def test_bench_device_cuda_without_a_gpu_in_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    proc = call_main("fashionseg.bench", "--device", "cuda", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [NO_CUDA_FOR_BENCH]


def test_output_paths_never_name_an_existing_file(tmp_path: Path) -> None:
    now = dt.datetime(2026, 11, 26, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert output_paths(tmp_path, now) == (tmp_path / "gpu_check.json", tmp_path / "gpu_check.md")
    (tmp_path / "gpu_check.md").write_text("the user's notes")  # one of the two is taken
    stamped = (
        tmp_path / "gpu_check-20261126T030405Z.json",
        tmp_path / "gpu_check-20261126T030405Z.md",
    )
    assert output_paths(tmp_path, now) == stamped
    stamped[0].write_text("{}")
    assert output_paths(tmp_path, now) == (
        tmp_path / "gpu_check-20261126T030405Z-2.json",
        tmp_path / "gpu_check-20261126T030405Z-2.md",
    )
    with pytest.raises(FileExistsError):
        _write_new(tmp_path / "gpu_check.md", "over it")
    assert (tmp_path / "gpu_check.md").read_text() == "the user's notes"


def test_fp16_steps_use_a_grad_scaler_bf16_and_fp32_do_not(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    from fashionseg.bench import compose_config

    root = generate(tmp_path / "d", num_images=2, height=64, width=48)
    cfg = compose_config(root, ["task=clothing", "experiment=seed_report", *TINY_NET])
    module = instantiate(cfg.model, _recursive_=False)
    cpu = torch.device("cpu")
    enabled = {p: PrecisionTrainer(module, [], p, cpu).scaler.is_enabled() for p in gpu.PRECISIONS}
    assert enabled == {"fp32": False, "fp16": True, "bf16": False}
    assert PrecisionTrainer(module, [], "bf16", cpu).dtype == torch.bfloat16


def test_gpu_benchmark_time_guard_skips_batches_not_started() -> None:
    result = gpu_benchmark(
        "cpu", size=(64, 48), batch_sizes=(1, 2), overrides=TINY_NET, deadline=time.monotonic() - 1
    )
    assert result["skipped"] == [
        {"batch": 1, "why": "time guard"},
        {"batch": 2, "why": "time guard"},
    ]
    assert result["train"] == result["infer"] == result["ratios"] == []
    assert "batch 2 skipped (time guard)" in format_gpu_report(result)


@pytest.mark.slow
def test_gpu_benchmark_code_path_on_the_cpu() -> None:
    result = gpu_benchmark(
        "cpu",
        size=(64, 48),
        batch_sizes=(1, 2),
        precisions=("fp32", "bf16"),
        warmup=1,
        rounds=2,
        steps=1,
        weights="none",
        overrides=TINY_NET,
    )
    assert result["weights"] == "none" and result["cudnn_benchmark"] is True
    assert torch.backends.cudnn.benchmark is False  # restored
    for kind in ("train", "infer"):
        rows = {(r["batch"], r["precision"]): r for r in result[kind]}
        assert set(rows) == {(1, "fp32"), (1, "bf16"), (2, "fp32"), (2, "bf16")}
        for (batch, _), row in rows.items():
            speed = row["img_per_s"]
            assert speed["n"] == 2 and 0 < speed["min"] <= speed["median"] <= speed["max"]
            assert speed["median"] == pytest.approx(batch / row["step_s"]["median"])
            assert row["peak_mem_mib"] is None  # no GPU memory counters on a CPU
    assert {(q["kind"], q["batch"], q["ratio"]) for q in result["ratios"]} == {
        (k, b, "bf16/fp32") for k in ("train", "infer") for b in (1, 2)
    }
    for q in result["ratios"]:
        assert q["min"] <= q["median"] <= q["max"] and q["n"] == 2
    report = format_gpu_report(result)
    assert "| train | 2 | bf16 |" in report and "| infer | 1 | bf16/fp32 |" in report


@pytest.mark.slow
def test_run_check_on_the_cpu_writes_reports_and_never_overwrites(tmp_path: Path) -> None:
    """The whole check (benchmark, short seed_report run, reports) with a tiny model and
    hardware=cpu in place of the GPU; run twice, the first reports stay."""
    data = generate(tmp_path / "data", num_images=12, height=64, width=48)
    bench = partial(
        gpu_benchmark,
        size=(64, 48),
        batch_sizes=(1,),
        precisions=("fp32",),
        warmup=1,
        rounds=1,
        steps=1,
        overrides=TINY_NET,
    )
    extra = [*TINY_NET, "data.batch_size=2", "+callbacks.gpu_check_throughput.skip=1"]
    out = tmp_path / "gpu_check"
    json_path, md_path = run_check(
        out, steps=2, budget_s=400, data=data, bench=bench, hardware="cpu", extra=extra
    )
    assert (json_path.name, md_path.name) == ("gpu_check.json", "gpu_check.md")
    report = json.loads(json_path.read_text())
    run = report["training"]
    assert run["status"] == "completed", run.get("log_tail")
    assert run["train"]["steps"] == 2 and run["train"]["batch_size"] == 2
    assert run["train"]["images"] == 2  # the warm-up step left out
    assert run["train"]["img_per_s"] > 0
    assert 0 <= run["test_miou"] <= 1
    assert report["benchmark"] is not None, report.get("benchmark_error")
    assert report["benchmark"]["train"][0]["batch"] == 1
    text = md_path.read_text()
    assert "## Short run of `experiment=seed_report`" in text and "| status | completed |" in text
    assert report["environment"]["torch"] == torch.__version__

    before = md_path.read_text()
    second_json, second_md = run_check(
        out, steps=1, budget_s=400, data=data, bench=bench, hardware="cpu", extra=extra
    )
    assert second_md != md_path and second_md.name.startswith("gpu_check-")
    assert md_path.read_text() == before


def test_a_precision_that_fails_is_reported_and_the_others_still_timed() -> None:
    """An error in one precision's step (say fp16 kernels a card lacks) costs that row
    only: the others keep their figures (seen on a GPU: one bad row must not lose all)."""
    module = torch.nn.Linear(2, 2)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    calls = {"fp32": 0, "fp16": 0}

    def ok() -> None:
        calls["fp32"] += 1
        module(torch.ones(1, 2))

    def broken() -> None:
        calls["fp16"] += 1
        raise RuntimeError("no kernel for Half\nsecond line")

    rows, ratios = gpu._measure_group(
        "train", {"fp32": ok, "fp16": broken}, 2, module, state, torch.device("cpu"), 1, 2, 1
    )
    by_precision = {r["precision"]: r for r in rows}
    assert "img_per_s" in by_precision["fp32"]
    assert by_precision["fp16"]["error"] == "RuntimeError: no kernel for Half"
    assert calls["fp16"] == 1 and calls["fp32"] >= 3  # warm-up, memory, two timed rounds
    assert ratios == []  # nothing to compare fp32 with
