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
# # Browse a dataset
#
# Photos with their masks painted over them, then per-class statistics.
#
# - `DATA_ROOT`: a dataset in the project layout (`images/`, `person/`, `clothes/`).
#   Without it, a small synthetic dataset is generated into a temporary folder:
#   `FASHIONSEG_NB_IMAGES` photos (24) of `FASHIONSEG_NB_SIZE` = `HxW` pixels (240x160).
# - `FASHIONSEG_NB_TASK`: which masks, `clothing` (the default) or `person`.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from fashionseg.data.inspect import inspect_dataset
from fashionseg.data.io import find_samples, read_image, read_mask
from fashionseg.data.synthetic import generate
from fashionseg.model.visualize import legend_handles, overlay
from fashionseg.tasks import get_task

task = get_task(os.environ.get("FASHIONSEG_NB_TASK", "clothing"))
num_images = int(os.environ.get("FASHIONSEG_NB_IMAGES", "24"))
height, width = (int(v) for v in os.environ.get("FASHIONSEG_NB_SIZE", "240x160").split("x"))
colours = [[c / 255 for c in rgb] for rgb in task.colors]  # class colours for matplotlib

# %%
if os.environ.get("DATA_ROOT"):
    root = Path(os.environ["DATA_ROOT"])
else:
    root = Path(tempfile.mkdtemp()) / "synthetic"
    generate(root, num_images, seed=0, height=height, width=width)
samples = find_samples(root, task)
print(f"{len(samples)} photos with {task.name} masks in {root}")

# %% [markdown]
# ## Photos and masks
#
# Each photo above the same photo with its mask in the class colours (the VOC palette
# of the mask PNGs).

# %%
shown = samples[:8]
fig, axes = plt.subplots(2, len(shown), figsize=(1.4 * len(shown), 5), squeeze=False)
for column, sample in enumerate(shown):
    photo = read_image(sample.image)
    mask = torch.from_numpy(read_mask(sample.mask, task))
    axes[0, column].imshow(photo.permute(1, 2, 0))
    axes[0, column].set_title(sample.stem)
    axes[1, column].imshow(overlay(photo, mask, task.colors).permute(1, 2, 0))
for ax in axes.flat:
    ax.axis("off")
legend = legend_handles(task.class_names, task.colors)
fig.legend(handles=legend, loc="lower center", ncol=len(legend))
plt.show()

# %% [markdown]
# ## Class statistics
#
# `inspect_dataset` decodes and checks every photo and mask, as
# `python -m fashionseg.data.inspect ROOT` does: the share of all mask pixels per class
# and the number of images that hold each class.

# %%
report = inspect_dataset(root, [task])
stats = report.tasks[task.name]
share, counts = stats.pixel_share(), stats.image_counts()
table = ["| class | pixels % | images |", "|---|---:|---:|"]
table += [f"| {n} | {share[n]:.1f} | {counts[n]} |" for n in task.class_names]
display(Markdown("\n".join(table)))
print(f"{report.images} images; sizes (W, H): {dict(report.sizes)}")
print(f"{len(report.problems)} problems", *report.problems[:20], sep="\n  ")

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
left.bar(task.class_names, [share[n] for n in task.class_names], color=colours)
left.set_ylabel("% of mask pixels")
right.bar(task.class_names, [counts[n] for n in task.class_names], color=colours)
right.set_ylabel(f"images holding the class (of {stats.masks})")
for ax in (left, right):
    ax.tick_params(axis="x", rotation=45)
fig.tight_layout()
plt.show()
