"""The dataset of one task: photos as float tensors, masks as Mask R-CNN targets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from fashionseg.data.allocator import keep_freed_memory
from fashionseg.data.io import (
    DataError,
    MaskRules,
    Sample,
    find_samples,
    photo_info,
    read_image,
    read_mask,
    size_problem,
)
from fashionseg.data.targets import check_instances, mask_to_target
from fashionseg.data.transforms import PairTransform, augment
from fashionseg.tasks import Task, get_task


class FashionDataset(Dataset):
    """Photos and targets of one task (``person`` or ``clothing``).

    Item ``i`` is ``(image, target)``: ``image`` float32 3 x H x W with pixel values / 255;
    ``target`` holds ``semantic`` (H x W int64 label map, what IoU is scored on),
    ``image_id`` (int64 scalar: the stem's position among all the dataset's sorted stems, so
    it is the same in every split), ``stem`` and, with ``with_instances`` (the training
    split; validation and test are scored on ``semantic`` alone), the Mask R-CNN instances
    derived after augmentation: ``masks`` (N x H x W uint8), ``boxes`` (N x 4 float32, x1 y1
    x2 y2, pixel-edge coordinates: :func:`torchvision.ops.masks_to_boxes` maxima + 1) and
    ``labels`` (N int64, never background). ``stems`` restricts it to a split (in that
    order). ``instances``/``min_area``: see :func:`fashionseg.data.targets.mask_to_target`.
    ``transforms`` (e.g. :func:`fashionseg.data.transforms.build_train_transforms`) runs on
    the uint8 photo and the label map through :func:`fashionseg.data.transforms.augment`.
    ``ignore_index``/``binary_255``: see :class:`fashionseg.data.io.MaskRules`; ignored
    pixels are :data:`fashionseg.data.targets.IGNORE_INDEX` in ``semantic`` and in no
    instance. ``id_offset`` is added to ``image_id`` and ``source`` (when given) is the
    items' ``root`` entry: how the photos of an extra training root
    (:mod:`fashionseg.data.roots`) stay distinct from another root's of the same stem.
    """

    def __init__(
        self,
        root: str | Path,
        task: str | Task,
        stems: Sequence[str] | None = None,
        instances: str = "class",
        min_area: int = 0,
        transforms: PairTransform | None = None,
        ignore_index: int | None = 255,
        binary_255: bool | None = None,
        with_instances: bool = True,
        id_offset: int = 0,
        source: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.task = task if isinstance(task, Task) else get_task(task)
        check_instances(instances)
        self.rules = MaskRules(ignore_index, binary_255).check(self.task)
        samples = find_samples(self.root, self.task)
        self._ids = {s.stem: i for i, s in enumerate(samples)}
        if stems is not None:
            by_stem = {s.stem: s for s in samples}
            missing = [s for s in stems if s not in by_stem]
            if missing:
                raise DataError(
                    f"{self.root}: stem {missing[0]!r} is not in the dataset "
                    f"({len(missing)} requested stem(s) missing)"
                )
            samples = [by_stem[s] for s in stems]
        self.samples: list[Sample] = samples
        self.instances = instances
        self.min_area = min_area
        self.transforms = transforms
        self.with_instances = with_instances
        self.id_offset = int(id_offset)
        self.source = source

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        sample = self.samples[index]
        # the decoder's H x W x 3 bytes, not copied: the transforms' resize is fastest on
        # them (ContiguousPlanes ends that part); without transforms the float conversion
        # below lays the photo out in planes
        image = read_image(sample.image, planes=False)
        ids = read_mask(sample.mask, self.task, self.rules)
        if tuple(ids.shape) != tuple(image.shape[1:]):  # files changed since the check
            problem = size_problem(
                sample.mask, (ids.shape[1], ids.shape[0]), photo_info(sample.image)
            )
            raise DataError(problem or f"{sample.mask}: mask and photo sizes differ")
        semantic = torch.from_numpy(ids).to(torch.int64)
        if self.transforms is not None:  # on the uint8 photo and the label map only
            keep_freed_memory()  # in each loader worker: its first item sets it
            image, semantic = augment(self.transforms, image, semantic)
        target: dict[str, Any] = {"semantic": semantic}
        if self.with_instances:
            target.update(
                mask_to_target(
                    semantic.numpy(), self.task.num_classes, self.instances, self.min_area
                )
            )
        image_id = self._ids[sample.stem] + self.id_offset
        target["image_id"] = torch.tensor(image_id, dtype=torch.int64)
        target["stem"] = sample.stem
        if self.source is not None:
            target["root"] = self.source
        if image.dtype == torch.uint8:
            image = image.to(torch.float32, memory_format=torch.contiguous_format).div_(255)
        return image.contiguous(), target  # a no-op unless custom transforms kept the view
