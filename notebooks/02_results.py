# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Look at a training run
#
# Loss curves, the score-threshold sweep, per-class test IoU and predictions of one run
# directory (`logs/<task>/runs/<time>/`).
#
# - `RUN_DIR`: the run directory. Without it, a tiny run is trained first on generated
#   synthetic photos (about a minute on a CPU): `FASHIONSEG_NB_IMAGES` photos (16) of
#   `FASHIONSEG_NB_SIZE` = `HxW` pixels (96x64), `FASHIONSEG_NB_EPOCHS` epochs (3).
#   So small a model learns little: it shows the pictures, not good scores.
# - `DATA_ROOT`: the run's dataset, when its `data.root` is not reachable from here.

# %%
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fashionseg.data.io import find_samples, read_image, read_mask
from fashionseg.data.synthetic import generate
from fashionseg.model.checkpoint import load_module
from fashionseg.model.visualize import legend_handles, overlay
from fashionseg.tasks import get_task

# %%
# a small, fast model (conf/experiment/tiny.yaml) with a finer threshold sweep
TINY = ["experiment=tiny", "fusion.thresholds=[0.05,0.2,0.35,0.5,0.65,0.8,0.95]"]


def train_tiny_run(work: Path) -> Path:
    """Generate synthetic photos, train a tiny clothing model; return its run dir."""
    size = os.environ.get("FASHIONSEG_NB_SIZE", "96x64")
    height, width = (int(v) for v in size.split("x"))
    data = work / "data"
    generate(data, int(os.environ.get("FASHIONSEG_NB_IMAGES", "16")), 3, height, width)
    run_dir = work / "run"
    command = [
        *(sys.executable, "-m", "fashionseg.train", "task=clothing", *TINY),
        f"data.root={data}",
        f"hydra.run.dir={run_dir}",
        f"model.net.min_size={min(height, width)}",  # the photos' own size
        f"model.net.max_size={max(height, width)}",
        f"trainer.max_epochs={os.environ.get('FASHIONSEG_NB_EPOCHS', '3')}",
    ]
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"training failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    shown = [line for line in proc.stdout.splitlines() if "\x1b" not in line]
    print("\n".join(shown[-14:]))  # the IoU table, without the progress bars
    return run_dir


# %%
if os.environ.get("RUN_DIR"):
    run_dir = Path(os.environ["RUN_DIR"])
else:
    run_dir = train_tiny_run(Path(tempfile.mkdtemp()))
split = json.loads((run_dir / "split.json").read_text())
task = get_task(split["task"])
colours = [[c / 255 for c in rgb] for rgb in task.colors]
print(f"{run_dir}: task {task.name}, {len(split['test'])} test photos")

# %% [markdown]
# ## Loss curves
#
# Training losses per step and the validation mIoU of each epoch, from the run's
# TensorBoard events.

# %%
events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
events.Reload()
scalars = events.Tags()["scalars"]


def series(tag: str) -> tuple[list[int], list[float]]:
    points = events.Scalars(tag)
    return [p.step for p in points], [p.value for p in points]


fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
for tag in sorted(t for t in scalars if t.startswith("train/loss")):
    left.plot(*series(tag), label=tag.removeprefix("train/"))
left.set_xlabel("step")
left.legend(fontsize="small")
steps, miou = series("val/miou")
right.plot(steps, [100 * v for v in miou], marker="o")
right.set_xlabel("step")
right.set_ylabel("val mIoU (%)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Score threshold -> validation mIoU
#
# Every validation epoch scores the fused label maps at each swept score threshold
# (`val_sweep/miou@t`); this is the last epoch's curve and the threshold it chose.

# %%
sweep = sorted(
    (float(tag.split("@")[1]), 100 * events.Scalars(tag)[-1].value)
    for tag in scalars
    if tag.startswith("val_sweep/miou@")
)
chosen = events.Scalars("val/best_threshold")[-1].value
plt.figure(figsize=(5, 3.2))
plt.plot([t for t, _ in sweep], [m for _, m in sweep], marker="o")
plt.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen: {chosen:.2f}")
plt.xlabel("score threshold")
plt.ylabel("val mIoU (%)")
plt.legend()
plt.show()

# %% [markdown]
# ## Test IoU per class
#
# From `metrics.json`, written after testing the best checkpoint (a class that is in
# neither the ground truth nor the predictions has no IoU and no bar).

# %%
metrics = json.loads((run_dir / "metrics.json").read_text())
iou = [100 * v if v is not None else float("nan") for v in metrics["iou"].values()]
plt.figure(figsize=(7, 3.2))
plt.bar(list(metrics["iou"]), iou, color=colours, edgecolor="grey")
plt.axhline(100 * metrics["miou"], color="tab:red", linestyle="--", label="mean IoU")
plt.title(f"test mIoU {100 * metrics['miou']:.1f} % at threshold {metrics['threshold']:.2f}")
plt.ylabel("test IoU (%)")
plt.xticks(rotation=45)
plt.legend()
plt.show()

# %% [markdown]
# ## Predictions on test photos
#
# The best checkpoint, loaded safely (`weights_only`) with the threshold chosen on
# validation, on the first test photos of the run's split.

# %%
checkpoints = run_dir / "checkpoints"
# the best by val mIoU (file names end in -miou0.1234), else the last epoch's
best = sorted(checkpoints.glob("epoch*.ckpt"), key=lambda p: p.stem.split("miou")[-1])
best = best or [checkpoints / "last.ckpt"]
module = load_module(best[-1])
config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
data_root = Path(os.environ.get("DATA_ROOT") or config.data.root)
shown = set(split["test"][:4])
samples = [s for s in find_samples(data_root, task) if s.stem in shown]
print(f"{best[-1].name}: score threshold {module.score_threshold:.2f}")

# %%
fig, axes = plt.subplots(len(samples), 3, figsize=(6, 2.8 * len(samples)), squeeze=False)
for row, sample in zip(axes, samples, strict=True):
    photo = read_image(sample.image)
    truth = torch.from_numpy(read_mask(sample.mask, task))
    with torch.no_grad():
        predicted = module.fuse_outputs(module([photo.float() / 255])[0])
    pictures = [photo, overlay(photo, truth, task.colors)]
    pictures.append(overlay(photo, predicted, task.colors))
    titles = [sample.stem, "ground truth", "prediction"]
    for ax, picture, title in zip(row, pictures, titles, strict=True):
        ax.imshow(picture.permute(1, 2, 0))
        ax.set_title(title)
        ax.axis("off")
legend = legend_handles(task.class_names, task.colors)
fig.tight_layout(rect=(0, 0.06, 1, 1))
fig.legend(handles=legend, loc="lower center", ncol=(len(legend) + 1) // 2, fontsize="small")
plt.show()
