"""The batched, vectorised post-processing and fusion against today's implementation.

Today's fusion (``tests/reference_fusion.py``, commit 2ca2a05) and torchvision's own
``paste_masks_in_image`` are the references: the label maps must be bit-identical where
the arithmetic is unchanged (the fusion) and equal on >= 99.9 % of pixels where it is
not (the batched paste).
"""

from __future__ import annotations

import pytest
import reference_fusion as ref
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from fashionseg.fusion import ALL_METHODS, METHODS, fuse, fuse_sweep
from fashionseg.postprocess import detections_to_label_maps, paste_masks

THRESHOLDS = torch.tensor([0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0])


def _instances(seed: int, n: int = 12, size: tuple[int, int] = (9, 11), classes: int = 4):
    """Overlapping random instances with tied scores and tied score x probability."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(1, classes, (n,), generator=g)
    scores = (torch.randint(1, 20, (n,), generator=g) / 20).float()  # many ties
    masks = (torch.randint(0, 11, (n, 1, *size), generator=g) / 10).float()
    semantic = torch.rand(classes, *size, generator=g)
    return labels, scores, masks, semantic


def _boxes(g: torch.Generator, b: int, n: int, height: int, width: int) -> torch.Tensor:
    a = torch.rand(b, n, 2, generator=g) * torch.tensor([width, height])
    c = torch.rand(b, n, 2, generator=g) * torch.tensor([width, height])
    return torch.cat([torch.minimum(a, c), torch.maximum(a, c)], -1)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("seed", range(4))
def test_fuse_is_bit_identical_to_todays(method: str, seed: int) -> None:
    labels, scores, masks, semantic = _instances(seed)
    for threshold in (0.0, 0.3, 0.5, 0.9):
        kw = {"method": method, "threshold": threshold, "semantic": semantic}
        assert torch.equal(fuse(labels, scores, masks, **kw), ref.fuse(labels, scores, masks, **kw))
    per_class = torch.tensor([0.5, 0.2, 0.6, 0.4])
    kw = {"method": method, "class_thresholds": per_class, "semantic": semantic}
    assert torch.equal(fuse(labels, scores, masks, **kw), ref.fuse(labels, scores, masks, **kw))


@pytest.mark.parametrize("method", ALL_METHODS)
def test_sweeps_are_bit_identical_to_todays(method: str) -> None:
    labels, scores, masks, semantic = _instances(7, n=15)
    kw = {"method": method, "semantic": semantic}
    got = fuse_sweep(labels, scores, masks, THRESHOLDS, **kw)
    assert torch.equal(got, ref.fuse_sweep(labels, scores, masks, THRESHOLDS, **kw))
    per_class = torch.tensor([0.5, 0.2, 0.6, 0.4])
    for cls in (1, 2, 3):
        kw = {**kw, "class_thresholds": per_class, "cls": cls}
        got = fuse_sweep(labels, scores, masks, THRESHOLDS, **kw)
        assert torch.equal(got, ref.fuse_sweep(labels, scores, masks, THRESHOLDS, **kw))


@pytest.mark.parametrize("method", METHODS)
def test_no_instances_and_unsorted_scores(method: str) -> None:
    labels, scores, masks, _ = _instances(3)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))
    shuffled = labels[perm], scores[perm], masks[perm]
    assert torch.equal(fuse(*shuffled, method=method), ref.fuse(*shuffled, method=method))
    empty = labels[:0], scores[:0], masks[:0]
    assert torch.equal(fuse(*empty, method=method), torch.zeros(9, 11, dtype=torch.long))
    sweep = fuse_sweep(*empty, THRESHOLDS, method=method)
    assert torch.equal(sweep, torch.zeros(len(THRESHOLDS), 9, 11, dtype=torch.long))


@pytest.mark.parametrize("method", ALL_METHODS)
def test_a_batch_equals_its_photos_fused_alone(method: str) -> None:
    photos = [_instances(seed) for seed in range(3)]
    labels, scores, masks, semantic = (torch.stack(x) for x in zip(*photos, strict=True))
    # the third photo has 5 detections: the rest of its rows are zero-mask padding
    scores[2, 5:] = 0.0
    masks[2, 5:] = 0.0
    batch = fuse(labels, scores, masks, method=method, threshold=0.3, semantic=semantic)
    for i, (lab, sco, mas, sem) in enumerate(photos):
        n = 5 if i == 2 else len(lab)
        alone = ref.fuse(lab[:n], sco[:n], mas[:n], method=method, threshold=0.3, semantic=sem)
        assert torch.equal(batch[i], alone)


def test_batched_paste_matches_torchvision() -> None:
    g = torch.Generator().manual_seed(0)
    b, n, height, width = 2, 40, 90, 70
    masks = torch.rand(b, n, 1, 28, 28, generator=g)
    boxes = _boxes(g, b, n, height, width)
    boxes[0, 0] = torch.tensor([3.0, 4.0, 3.2, 4.1])  # a box under one pixel
    boxes[0, 1] = torch.tensor([0.0, 0.0, width, height])  # the whole photo
    ours = paste_masks(masks, boxes, (height, width))
    theirs = torch.stack(
        [paste_masks_in_image(masks[i], boxes[i], (height, width))[:, 0] for i in range(b)]
    )
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() < 1e-4
    assert ((ours > 0.5) == (theirs > 0.5)).float().mean() >= 0.999


@pytest.mark.parametrize("method", ("seed", "argmax", "panoptic"))
def test_raw_detections_to_label_maps_match_torchvision_then_todays_fusion(method: str) -> None:
    g = torch.Generator().manual_seed(1)
    b, n, height, width = 3, 25, 60, 40
    resized = torch.tensor([[120, 80]] * b)
    boxes = _boxes(g, b, n, 120, 80)
    labels = torch.randint(1, 4, (b, n), generator=g)
    scores = torch.rand(b, n, generator=g).sort(descending=True).values
    masks = torch.rand(b, n, 1, 28, 28, generator=g)
    semantic = torch.rand(b, 4, height, width, generator=g)
    kw = {"method": method, "threshold": 0.4}
    ours = detections_to_label_maps(
        boxes, labels, scores, masks, resized, (height, width), semantic=semantic, **kw
    )
    for i in range(b):
        scale = torch.tensor([width / 80, height / 120] * 2)
        pasted = paste_masks_in_image(masks[i], boxes[i] * scale, (height, width))
        want = ref.fuse(labels[i], scores[i], pasted, semantic=semantic[i], **kw)
        assert (ours[i] == want).float().mean() >= 0.999


def _op_count(n: int) -> int:
    g = torch.Generator().manual_seed(2)
    boxes = _boxes(g, 2, n, 30, 20)
    labels = torch.randint(1, 3, (2, n), generator=g)
    scores = torch.rand(2, n, generator=g)
    masks = torch.rand(2, n, 1, 28, 28, generator=g)
    sizes = torch.tensor([[30, 20], [30, 20]])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        detections_to_label_maps(boxes, labels, scores, masks, sizes, (30, 20), method="seed")
    return sum(event.count for event in prof.key_averages())


def test_operator_calls_do_not_grow_with_the_detections() -> None:
    """No loop over instances: 5 or 60 detections cost the same operator calls."""
    assert _op_count(5) == _op_count(60)


class _Export(torch.nn.Module):
    """Raw detections -> label maps, as an ONNX export wraps it."""

    def __init__(self, method: str) -> None:
        super().__init__()
        self.method = method

    def forward(self, boxes, labels, scores, masks, sizes, threshold, semantic):  # noqa: ANN001, ANN201
        return detections_to_label_maps(
            boxes, labels, scores, masks, sizes, (30, 20), method=self.method,
            threshold=threshold, semantic=semantic,
        )  # fmt: skip


def _export_inputs(n: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(n)
    return (
        _boxes(g, 2, n, 60, 40),
        torch.randint(1, 3, (2, n), generator=g),
        torch.rand(2, n, generator=g),
        torch.rand(2, n, 1, 28, 28, generator=g),
        torch.tensor([[60, 40], [60, 40]]),
        torch.tensor(0.3),
        torch.rand(2, 3, 30, 20, generator=g),
    )


@pytest.mark.parametrize("method", ("seed", "argmax"))
def test_exports_to_onnx_with_a_dynamic_number_of_detections(method: str, tmp_path) -> None:  # noqa: ANN001
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    names = ["boxes", "labels", "scores", "masks", "sizes", "threshold", "semantic"]
    dynamic = {name: {1: "detections"} for name in names[:4]}
    path = tmp_path / "fusion.onnx"
    torch.onnx.export(
        _Export(method), _export_inputs(7), str(path), dynamo=False, opset_version=17,
        input_names=names, output_names=["maps"], dynamic_axes=dynamic,
    )  # fmt: skip
    session = ort.InferenceSession(str(path))
    wanted = {i.name for i in session.get_inputs()}
    for n in (0, 1, 30):
        inputs = _export_inputs(n)
        feed = {k: v.numpy() for k, v in zip(names, inputs, strict=True) if k in wanted}
        got = torch.from_numpy(session.run(None, feed)[0])
        assert torch.equal(got, _Export(method)(*inputs))


@pytest.mark.parametrize(
    ("method", "semantic_head"), [("seed", False), ("argmax", False), ("panoptic", True)]
)
def test_models_label_maps_match_todays_on_the_demos_synthetic_photos(
    method: str, semantic_head: bool, tmp_path
) -> None:  # noqa: ANN001
    """A Mask R-CNN's batched label maps vs torchvision's postprocess + today's fusion, on
    synthetic photos of two sizes (two groups)."""
    from helpers import TINY_NET

    from fashionseg.data.io import read_image
    from fashionseg.data.synthetic import generate
    from fashionseg.model.module import MaskRCNNModule

    torch.manual_seed(0)
    # 100 proposals and 15 detections per photo, not 1000 and 100: still dozens of
    # overlapping detections over the four photos, at a fraction of the cost
    few = {"rpn_post_nms_top_n_test": 100, "box_detections_per_img": 15}
    net = {**TINY_NET, "min_size": 64, "max_size": 96, "semantic_head": semantic_head, **few}
    module = MaskRCNNModule(task="clothing", net=net, fusion={"method": method}).eval()
    photos = []
    for height, width in ((96, 64), (80, 64)):
        data = generate(tmp_path / f"{height}", num_images=2, seed=0, height=height, width=width)
        photos += sorted((data / "images").glob("*.jpg"))
    images = [read_image(p).float() / 255 for p in photos]
    images = [images[0], images[2], images[1], images[3]]  # sizes interleaved
    with torch.no_grad():
        ours = module.predict_maps(images)
        outputs = module.net(images)
    detections = sum(len(o["scores"]) for o in outputs)
    assert detections > 20  # an untrained head detects plenty: the test sees overlaps
    for image, label_map, output in zip(images, ours, outputs, strict=True):
        assert label_map.shape == image.shape[-2:]
        want = ref.fuse(
            output["labels"],
            output["scores"],
            output["masks"],
            method=method,
            threshold=0.5,
            semantic=output.get("sem_probs"),
        )
        assert (label_map == want).float().mean() >= 0.999


class _DynamicSize(torch.nn.Module):
    """An export whose photo size comes from an input image's shape."""

    def forward(self, image, boxes, labels, scores, masks, sizes):  # noqa: ANN001, ANN201
        height, width = image.shape[-2:]
        return detections_to_label_maps(
            boxes, labels, scores, masks, sizes, (height, width), threshold=0.3,
            original_sizes=torch._shape_as_tensor(image)[-2:],
        )  # fmt: skip


def test_exports_to_onnx_with_a_dynamic_photo_size(tmp_path) -> None:  # noqa: ANN001
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")

    def inputs(n: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(n)
        return (
            torch.zeros(3, height, width),
            _boxes(g, 1, n, 2 * height, 2 * width),
            torch.randint(1, 3, (1, n), generator=g),
            torch.rand(1, n, generator=g),
            torch.rand(1, n, 1, 28, 28, generator=g),
            torch.tensor([[2 * height, 2 * width]]),
        )

    names = ["image", "boxes", "labels", "scores", "masks", "sizes"]
    dynamic = {"image": {1: "h", 2: "w"}, **{k: {1: "n"} for k in names[1:5]}}
    path = tmp_path / "sized.onnx"
    torch.onnx.export(
        _DynamicSize(), inputs(5, 30, 20), str(path), dynamo=False, opset_version=17,
        input_names=names, output_names=["maps"], dynamic_axes=dynamic,
    )  # fmt: skip
    session = ort.InferenceSession(str(path))
    for n, height, width in ((5, 30, 20), (9, 50, 33)):
        x = inputs(n, height, width)
        got = session.run(None, {k: v.numpy() for k, v in zip(names, x, strict=True)})[0]
        assert torch.equal(torch.from_numpy(got), _DynamicSize()(*x))
