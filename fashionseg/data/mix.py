"""Batch-level mixing of photos for semantic training: ClassMix (Olsson et al. 2021).

Each photo of a batch may take, from the batch's next photo (a cyclic shift, so every
photo is a source once), the pixels of a random subset of the source's foreground classes,
with their labels: garments and body parts pasted onto another photo, as in ClassMix and
in the copy-paste augmentation of Ghiasi et al. 2021, which adds to self-training. The
background is never pasted (it would erase the person of the photo it lands on), and an
ignored or padded source pixel is never pasted either, so the photo keeps its own pixel
and label there: ignored pixels stay ignored and no pixel takes a label it does not show.

torchvision's ``v2.CutMix`` / ``v2.MixUp`` mix classification labels only; a label map
needs the paste mask applied to both tensors, which is what this does.
"""

from __future__ import annotations

import torch
from torch import Tensor


def class_mix(
    images: Tensor,
    labels: Tensor,
    prob: float,
    ignore_index: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """ClassMix a batch: ``images`` [B, 3, H, W], ``labels`` [B, H, W] (class ids, 0 the
    background, ``ignore_index`` ignored or padding).

    With probability ``prob`` each photo ``i`` takes from photo ``(i + 1) % B`` the pixels
    of each foreground class that photo shows, each class drawn with probability 1/2 (at
    least one). Returns new tensors; the inputs are not changed. A batch of one photo,
    ``prob`` 0 or a source without foreground comes back unchanged.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"class_mix prob must lie in [0, 1], got {prob}")
    batch = images.shape[0]
    if batch < 2 or prob == 0.0:
        return images, labels
    out_images, out_labels = images.clone(), labels.clone()
    draws = torch.rand(batch, generator=generator)
    for i in range(batch):
        if draws[i] >= prob:
            continue
        j = (i + 1) % batch
        src = labels[j]
        classes = torch.unique(src)
        classes = classes[(classes != 0) & (classes != ignore_index)]
        if classes.numel() == 0:
            continue
        keep = torch.rand(classes.numel(), generator=generator) < 0.5
        if not keep.any():
            keep[torch.randint(classes.numel(), (1,), generator=generator)] = True
        paste = torch.isin(src, classes[keep.to(classes.device)])
        out_images[i] = torch.where(paste, images[j], images[i])
        out_labels[i] = torch.where(paste, src, labels[i])
    return out_images, out_labels
