"""The GPU-facing settings on a CPU: the profiler switch, cuDNN autotuning, and pinned
memory, persistent workers and non-blocking copies under ``hardware=gpu``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import TINY, one_line_error, run
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

CONF = Path(__file__).resolve().parents[1] / "conf"


def _compose(*overrides: str, config: str = "train"):  # noqa: ANN202
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config, overrides=list(overrides))


def test_cudnn_benchmark_is_a_hardware_setting() -> None:
    assert _compose("hardware=gpu").trainer.benchmark is True  # today's behaviour
    assert _compose("hardware=gpu", "hardware.cudnn_benchmark=false").trainer.benchmark is False
    assert _compose("hardware=ddp").trainer.benchmark is True
    assert _compose("hardware=gpu", config="predict").trainer.benchmark is True
    assert _compose().trainer.get("benchmark") is None  # the CPU: cuDNN untouched


def test_gpu_training_pins_memory_keeps_workers_and_copies_without_blocking(
    tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _compose("hardware=gpu", f"data.root={tiny_dataset}", "data.num_workers=1")
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    assert loader.pin_memory and loader.persistent_workers and loader.num_workers == 1

    from helpers import TINY_NET

    from fashionseg.model.module import MaskRCNNModule

    module = MaskRCNNModule(task="person", net=TINY_NET)
    images, targets = next(iter(datamodule.dataloader("val")))  # no workers' start-up cost
    calls: list[dict] = []
    real_to = torch.Tensor.to

    def spy(self: torch.Tensor, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(kwargs)
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    # the hook Lightning moves every training batch with, to a non-CPU device
    moved_images, _ = module.transfer_batch_to_device((images, targets), torch.device("meta"), 0)
    assert calls and all(kw.get("non_blocking") is True for kw in calls)
    assert all(image.device.type == "meta" for image in moved_images)


@pytest.mark.slow
def test_profile_switch_writes_a_trace(tmp_path: Path) -> None:
    from fashionseg.data.synthetic import generate

    data = generate(tmp_path / "data", num_images=12, seed=1, height=48, width=32)
    run_dir = tmp_path / "run"
    run(
        "fashionseg.train",
        f"data.root={data}",
        f"hydra.run.dir={run_dir}",
        *TINY,
        "trainer.max_epochs=1",
        "test=false",
        "profile=1",
        cwd=tmp_path,
    )
    traces = list((run_dir / "profile").glob("*.pt.trace.json"))
    assert traces, sorted(p.name for p in run_dir.rglob("*"))
    assert any('"aten::' in p.read_text() for p in traces)  # operators recorded


@pytest.mark.parametrize("value", ["0", "abc", "-2"])
def test_a_bad_profile_value_is_one_line(value: str, tmp_path: Path) -> None:
    line = one_line_error("fashionseg.train", f"profile={value}", "data.root=x", cwd=tmp_path)
    assert "profile=" in line
