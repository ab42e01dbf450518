"""ClassMix on a training batch (fashionseg.data.mix.class_mix): what is pasted, what is not."""

from __future__ import annotations

import pytest
import torch

from fashionseg.data.mix import class_mix

IGNORE = 255


def _batch(seed: int = 0, size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(size, 3, 12, 10, generator=g)
    labels = torch.randint(0, 5, (size, 12, 10), generator=g)
    labels[:, :3] = IGNORE  # ignored rows (uncertain pseudo labels, padding)
    labels[:, :, -2:] = IGNORE
    return images, labels


def test_every_pixel_is_its_own_or_the_next_photos_with_that_photos_label() -> None:
    images, labels = _batch()
    out_images, out_labels = class_mix(
        images, labels, 1.0, IGNORE, torch.Generator().manual_seed(1)
    )
    changed = 0
    for i in range(len(images)):
        j = (i + 1) % len(images)
        pasted = (out_images[i] != images[i]).any(0)
        changed += int(pasted.sum())
        # a pasted pixel carries the source's photo and label; the rest are untouched
        assert torch.equal(out_images[i][:, pasted], images[j][:, pasted])
        assert torch.equal(out_labels[i][pasted], labels[j][pasted])
        assert torch.equal(out_labels[i][~pasted], labels[i][~pasted])
        # only foreground classes travel, each one whole
        moved = labels[j][pasted].unique()
        assert 0 not in moved and IGNORE not in moved
        for cls in moved:
            assert pasted[labels[j] == cls].all()
    assert changed > 0


def test_ignored_and_background_pixels_are_never_pasted() -> None:
    images, labels = _batch(2)
    _, out_labels = class_mix(images, labels, 1.0, IGNORE, torch.Generator().manual_seed(3))
    for i in range(len(images)):
        src = labels[(i + 1) % len(images)]
        keep = (src == 0) | (src == IGNORE)
        assert torch.equal(out_labels[i][keep], labels[i][keep])
    # pixels ignored in both photos stay ignored
    both = (labels == IGNORE) & (labels.roll(-1, 0) == IGNORE)
    assert (out_labels[both] == IGNORE).all()


def test_inputs_unchanged_and_no_mix_cases() -> None:
    images, labels = _batch(4)
    before = images.clone(), labels.clone()
    class_mix(images, labels, 1.0, IGNORE)
    assert torch.equal(images, before[0]) and torch.equal(labels, before[1])
    assert class_mix(images, labels, 0.0, IGNORE)[1] is labels
    one_image, one_label = images[:1], labels[:1]
    assert class_mix(one_image, one_label, 1.0, IGNORE)[1] is one_label
    background = torch.zeros_like(labels)
    out = class_mix(images, background, 1.0, IGNORE)
    assert torch.equal(out[0], images) and torch.equal(out[1], background)
    with pytest.raises(ValueError, match="prob"):
        class_mix(images, labels, 1.5, IGNORE)


def test_probability_is_per_photo() -> None:
    images, labels = _batch(5, size=64)
    out_images, _ = class_mix(images, labels, 0.5, IGNORE, torch.Generator().manual_seed(6))
    mixed = sum(bool((out_images[i] != images[i]).any()) for i in range(64))
    assert 16 < mixed < 48
