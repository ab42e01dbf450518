"""The predict benchmark runs end to end on a few tiny photos (figures not asserted)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from fashionseg.bench import format_predict_report, predict_benchmark

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """On one thread: on a busy 2-core machine, threads waiting on each other made small
    steps take seconds (figures are not asserted here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_predict_benchmark_end_to_end() -> None:
    result = predict_benchmark(
        photos=2,
        size=(48, 32),
        reps=1,
        memory_photos=24,
        memory_size=(32, 24),
        memory_after=10,
        options={"batch_size": 2, "num_workers": 1},
    )
    assert result["model"]["arch"] == "maskrcnn_resnet18_fpn"  # experiment=cpu_fast
    assert result["options"] == {"batch_size": 2, "num_workers": 1}
    for side in ("old_photos_per_s", "new_photos_per_s"):
        rate = result[side]
        assert rate["n"] == 1 and 0 < rate["min"] <= rate["median"] <= rate["max"]
    speedup = result["speedup"]
    assert speedup["ratio_min"] <= speedup["ratio"] <= speedup["ratio_max"]
    assert len(speedup["values"]["old"]) == len(speedup["values"]["new"]) == 1
    assert result["same_label_maps"] is True  # same model and photos: same label maps
    assert set(result["stages_s_per_photo"]) == {
        "decode",
        "model",
        "fusion",
        "label_png",
        "overlay_jpeg",
    }
    memory = result["memory"]
    # after: at most a tenth of the photos; near the end: 95 % of them
    assert memory["photos"] == 24 and memory["after"] == 2 and memory["near_end"] == 22
    assert memory["samples"] >= 2 and memory["peak_sampled_mib"] > 0
    # ru_maxrss is the process's peak: never below a sample of its resident memory
    assert memory["peak_rss_mib"]["self"] >= memory["process_rss_after_first_mib"] - 0.01
    assert isinstance(memory["flat"], bool)
    scaling = result["model_scaling"]
    assert set(scaling["s_per_photo"]) == {"one_thread", "all_threads", "batched"}
    assert scaling["photos"] == 2 and scaling["thread_speedup"]["n"] == 2
    report = format_predict_report(result)
    for label in (
        "thread speed-up",
        "old: single-photo loop",
        "new: Trainer.predict + writer",
        "new / old",
        "Memory over 24",
    ):
        assert label in report
