"""Fusion of instance outputs into label maps: literal expected maps for every method."""

from __future__ import annotations

import pytest
import torch

from fashionseg.fusion import METHODS, fuse, fuse_sweep


def _two_overlapping() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 1 x 4 image. A (class 1, score 0.9) covers columns 0-2, B (class 2, 0.6) 1-3.

    Column 1: A 0.9*0.6 = 0.54 < B 0.6*0.95 = 0.57; column 2: A 0.54 > B 0.6*0.55 = 0.33.
    """
    labels = torch.tensor([1, 2])
    scores = torch.tensor([0.9, 0.6])
    masks = torch.tensor(
        [
            [[[0.6, 0.6, 0.6, 0.1]]],
            [[[0.1, 0.95, 0.55, 0.9]]],
        ]
    )
    return labels, scores, masks


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("seed", [[1, 2, 2, 2]]),  # output order: the less confident B paints last
        ("score_order", [[1, 1, 1, 2]]),  # the more confident A wins the overlap
        ("argmax", [[1, 2, 1, 2]]),  # highest score x probability per pixel
    ],
)
def test_methods_differ_on_overlaps(method: str, expected: list[list[int]]) -> None:
    out = fuse(*_two_overlapping(), method=method, threshold=0.5)
    assert out.dtype == torch.int64
    assert out.tolist() == expected


@pytest.mark.parametrize("method", ["seed", "score_order"])
def test_threshold_drops_instances_without_blanking_pixels(method: str) -> None:
    # At 0.7 only A is kept: it paints every column it covers.
    out = fuse(*_two_overlapping(), method=method, threshold=0.7)
    assert out.tolist() == [[1, 1, 1, 0]]


def test_argmax_thresholds_the_per_pixel_value() -> None:
    # Best score x probability per column: 0.54 (A), 0.57 (B), 0.54 (A), 0.54 (B).
    labels, scores, masks = _two_overlapping()
    assert fuse(labels, scores, masks, method="argmax", threshold=0.55).tolist() == [[0, 2, 0, 0]]
    assert fuse(labels, scores, masks, method="argmax", threshold=0.7).tolist() == [[0, 0, 0, 0]]
    # a pixel whose winner fails the threshold stays background even if a loser would pass
    sweep = fuse_sweep(labels, scores, masks, torch.tensor([0.5, 0.55, 0.6]), method="argmax")
    assert sweep.tolist() == [[[1, 2, 1, 2]], [[0, 2, 0, 0]], [[0, 0, 0, 0]]]


@pytest.mark.parametrize("method", METHODS)
def test_score_must_exceed_threshold_strictly(method: str) -> None:
    labels, scores, masks = _two_overlapping()
    assert fuse(labels, scores, masks, method=method, threshold=0.9).tolist() == [[0, 0, 0, 0]]


@pytest.mark.parametrize("method", ["seed", "score_order"])
def test_mask_threshold(method: str) -> None:
    # At 0.58 B's 0.55 no longer covers column 2 and A's 0.6 still covers columns 0-2.
    out = fuse(*_two_overlapping(), method=method, threshold=0.7, mask_threshold=0.58)
    assert out.tolist() == [[1, 1, 1, 0]]
    out = fuse(*_two_overlapping(), method=method, threshold=0.7, mask_threshold=0.6)
    assert out.tolist() == [[0, 0, 0, 0]]


@pytest.mark.parametrize("method", ["seed", "score_order"])
def test_class_thresholds_replace_the_global_threshold(method: str) -> None:
    class_thresholds = torch.tensor([0.0, 0.95, 0.5])  # drops A (0.9), keeps B (0.6)
    out = fuse(*_two_overlapping(), method=method, threshold=0.0, class_thresholds=class_thresholds)
    assert out.tolist() == [[0, 2, 2, 2]]


def test_argmax_class_thresholds_apply_to_the_winner() -> None:
    # A wins columns 0 and 2 with 0.54 < 0.95 (its class's threshold): background;
    # B wins columns 1 and 3 with 0.57 and 0.54 > 0.5.
    class_thresholds = torch.tensor([0.0, 0.95, 0.5])
    out = fuse(*_two_overlapping(), method="argmax", class_thresholds=class_thresholds)
    assert out.tolist() == [[0, 2, 0, 2]]
    out = fuse(*_two_overlapping(), method="argmax", mask_threshold=0.58, threshold=0.5)
    assert out.tolist() == [[1, 2, 1, 2]]  # B's 0.55 at column 2 no longer covers it


def test_equal_scores() -> None:
    labels = torch.tensor([1, 2])
    scores = torch.tensor([0.7, 0.7])
    masks = torch.ones(2, 1, 1, 2)
    assert fuse(labels, scores, masks, method="seed").tolist() == [[2, 2]]
    assert fuse(labels, scores, masks, method="score_order").tolist() == [[1, 1]]
    assert fuse(labels, scores, masks, method="argmax").tolist() == [[1, 1]]


def test_argmax_equal_products_go_to_the_higher_score() -> None:
    # 0.75 * 1.0 == 1.0 * 0.75 exactly; the second instance has the higher score.
    labels = torch.tensor([1, 2])
    scores = torch.tensor([0.75, 1.0])
    masks = torch.tensor([[[1.0]], [[0.75]]])
    assert fuse(labels, scores, masks, method="argmax").tolist() == [[2]]


def test_unsorted_outputs_seed_paints_in_output_order() -> None:
    labels = torch.tensor([3, 1, 2])
    scores = torch.tensor([0.6, 0.9, 0.8])
    masks = torch.tensor([[[1.0, 1.0, 0.0]], [[1.0, 0.0, 1.0]], [[0.0, 1.0, 1.0]]])
    assert fuse(labels, scores, masks, method="seed").tolist() == [[1, 2, 2]]
    assert fuse(labels, scores, masks, method="score_order").tolist() == [[1, 2, 1]]


@pytest.mark.parametrize("method", METHODS)
def test_three_dim_masks_match_four_dim(method: str) -> None:
    labels, scores, masks = _two_overlapping()
    assert torch.equal(
        fuse(labels, scores, masks[:, 0], method=method), fuse(labels, scores, masks, method=method)
    )


@pytest.mark.parametrize("method", METHODS)
def test_empty_input_is_background(method: str) -> None:
    labels = torch.zeros(0, dtype=torch.int64)
    scores = torch.zeros(0)
    masks = torch.zeros(0, 1, 3, 5)
    out = fuse(labels, scores, masks, method=method)
    assert out.dtype == torch.int64
    assert out.tolist() == [[0] * 5] * 3
    sweep = fuse_sweep(labels, scores, masks, torch.tensor([0.1, 0.5]), method=method)
    assert sweep.shape == (2, 3, 5)
    assert not sweep.any()


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown fusion method 'vote'"):
        fuse(*_two_overlapping(), method="vote")
    with pytest.raises(ValueError, match="unknown fusion method 'vote'"):
        fuse_sweep(*_two_overlapping(), torch.tensor([0.5]), method="vote")


def test_mismatched_inputs() -> None:
    labels, scores, masks = _two_overlapping()
    with pytest.raises(ValueError, match="must both be"):
        fuse(labels[:1], scores, masks)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sweep_equals_stacked_fuse(method: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    n = 12
    labels = torch.randint(1, 7, (n,), generator=gen)
    # Unsorted scores with ties and values equal to thresholds.
    scores = torch.tensor([0.9, 0.3, 0.3, 0.55, 0.7, 0.05, 0.95, 0.62, 0.7, 0.41, 0.2, 0.88])
    scores = scores[torch.randperm(n, generator=gen)]
    masks = torch.rand(n, 1, 9, 7, generator=gen)
    masks[masks < 0.3] = 0.75  # exact ties of mask probabilities too
    thresholds = torch.tensor([round(0.05 * i, 2) for i in range(1, 20)])
    sweep = fuse_sweep(labels, scores, masks, thresholds, method=method, mask_threshold=0.5)
    stacked = torch.stack(
        [fuse(labels, scores, masks, method=method, threshold=float(t)) for t in thresholds]
    )
    assert sweep.shape == (19, 9, 7)
    assert torch.equal(sweep, stacked)
    assert sweep[0].any()
