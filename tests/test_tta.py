"""Multi-scale test-time augmentation (fashionseg.model.tta) of the semantic models and of
Panoptic FPN's semantic head: [1.0] is today's output exactly, more scales the average of
each scale's probabilities, at odd photo sizes too."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fashionseg.export import ExportError, export_graph
from fashionseg.model.module import MaskRCNNModule
from fashionseg.model.semantic import SemanticModule
from fashionseg.model.semantic_pipeline import padded
from fashionseg.model.tta import check_scales

ODD = [(33, 47), (61, 29)]  # H x W: resized, padded, of two sizes in one batch
SCALES = [0.75, 1.0, 1.25]


def semantic(scales: list[float] | None = None, hflip: bool = False) -> SemanticModule:
    torch.manual_seed(0)
    net = {"arch": "lraspp_mobilenet_v3_large", "weights": "none", "min_size": 48}
    net.update(max_size=80, tta_hflip=hflip)
    if scales is not None:
        net["tta_scales"] = scales
    return SemanticModule(task="clothing", net=net).eval()


def by_hand(module: SemanticModule, image: torch.Tensor, scale: float) -> torch.Tensor:
    """One photo's probabilities at one scale, computed here from the network alone (the
    arithmetic the pipeline had before multi-scale TTA, the resize times ``scale``)."""
    h, w = image.shape[-2:]
    base = min(module.min_size / min(h, w), module.max_size / max(h, w))
    size = (max(1, round(h * base * scale)), max(1, round(w * base * scale)))
    resized = F.interpolate(image[None], size, mode="bilinear", align_corners=False)[0]
    x = torch.zeros(1, 3, padded(size[0]), padded(size[1]))
    x[0, :, : size[0], : size[1]] = (resized - module.mean) / module.std
    logits = module.net(x)["out"]
    if module.tta_hflip:
        mirror = torch.zeros_like(x)
        mirror[0, :, : size[0], : size[1]] = x[0, :, : size[0], : size[1]].flip(-1)
        back = module.net(mirror)["out"]
        flipped = torch.zeros_like(back)
        flipped[0, :, : size[0], : size[1]] = back[0, :, : size[0], : size[1]].flip(-1)
        logits = (logits + flipped) / 2
    crop = logits[:, :, : size[0], : size[1]]
    return F.interpolate(crop, (h, w), mode="bilinear", align_corners=False)[0].softmax(0)


@pytest.mark.parametrize("hflip", [False, True])
def test_scales_one_is_todays_output_exactly(hflip: bool) -> None:
    images = [torch.rand(3, h, w) for h, w in [(40, 40)]]
    plain, one = semantic(hflip=hflip), semantic([1.0], hflip=hflip)
    with torch.no_grad():
        today = by_hand(plain, images[0], 1.0)
        assert torch.equal(plain(images)[0], today)
        assert torch.equal(one(images)[0], today)
    assert plain.tta_scales == one.tta_scales == (1.0,)


@pytest.mark.parametrize("hflip", [False, True])
def test_multi_scale_is_the_average_of_the_scales_probabilities(hflip: bool) -> None:
    module = semantic(SCALES, hflip=hflip)
    images = [torch.rand(3, h, w) for h, w in ODD]
    with torch.no_grad():
        # one photo at a time: LRASPP's global pooling sees a batch's padding
        got = [module([image])[0] for image in images]
        singles = [[by_hand(module, image, s) for s in SCALES] for image in images]
    for image, probs, single in zip(images, got, singles, strict=True):
        assert probs.shape == (7, *image.shape[-2:])
        expected = sum(single) / len(SCALES)
        torch.testing.assert_close(probs, expected, rtol=0, atol=2e-6)
        torch.testing.assert_close(probs.sum(0), torch.ones(image.shape[-2:]))
        assert (single[0] - single[2]).abs().max() > 1e-4  # the scales differ
    # the module's label maps are the averaged probabilities' argmax
    assert torch.equal(module.predict_maps(images[1:])[0], got[1].argmax(0))


def test_training_ignores_the_scales() -> None:
    module = semantic(SCALES).train()
    with torch.no_grad():
        module.eval()
        module.tta_scales = (1.0,)
        plain = module.pipeline.probs_at([torch.rand(3, 40, 40)])
    assert module.pipeline.train().tta_scales == (1.0,)
    assert len(plain) == 1


def panoptic(scales: list[float]) -> MaskRCNNModule:
    torch.manual_seed(0)
    net = {
        "arch": "maskrcnn_mobilenet_v3_large_fpn",
        "weights": "none",
        "min_size": 48,
        "max_size": 64,
        "semantic_head": True,
        "tta_scales": scales,
        # the head's probabilities are the point: a few detections, not torchvision's 100
        # (the mask head on 100 random boxes was 90 % of these tests' CPU)
        "rpn_post_nms_top_n_test": 100,
        "box_detections_per_img": 5,
    }
    module = MaskRCNNModule(task="clothing", net=net, fusion={"method": "semantic"}).eval()
    with torch.no_grad():  # the head starts near uniform: logits large enough to differ
        module.net.semantic_head.predictor.weight.normal_(std=100.0)
    return module


def test_panoptic_head_averages_its_scales_probabilities() -> None:
    module = panoptic(SCALES)
    assert module.tta_scales == tuple(SCALES)
    images = [torch.rand(3, h, w) for h, w in ODD]
    with torch.no_grad():
        got = [o["sem_probs"] for o in module.net(images)]
        singles = []
        for s in SCALES:  # the same network, the detector's resize times s, one scale
            net = copy.deepcopy(module.net)
            net.tta_scales = (1.0,)
            net.transform.min_size = (48 * s,)
            net.transform.max_size = 64 * s
            singles.append([o["sem_probs"] for o in net(images)])
        maps = module.predict_maps(images)
    for i, image in enumerate(images):
        expected = sum(single[i] for single in singles) / len(SCALES)
        torch.testing.assert_close(got[i], expected, rtol=0, atol=2e-6)
        assert got[i].shape[-2:] == image.shape[-2:]
        assert (singles[0][i] - singles[2][i]).abs().max() > 1e-4
        # predict's batched path (fusion semantic) labels by the averaged probabilities
        assert torch.equal(maps[i], got[i].argmax(0))


def test_scales_one_leaves_the_panoptic_head_as_it_was() -> None:
    images = [torch.rand(3, h, w) for h, w in ODD]
    module = panoptic([1.0])
    with torch.no_grad():
        plain = [o["sem_probs"] for o in module.net(images)]
        image_list, _ = module.net.transform(images)
        features = module.net.backbone(image_list.tensors)
        logits = module.net.semantic_outputs(features, image_list)
    for i, (h, w) in enumerate(ODD):
        ih, iw = image_list.image_sizes[i]
        crop = logits[i : i + 1, :, :ih, :iw]
        expected = F.interpolate(crop, (h, w), mode="bilinear", align_corners=False).softmax(1)
        assert torch.equal(plain[i], expected[0])


def test_bad_scales_and_unsupported_places_are_errors() -> None:
    assert check_scales([1, 0.5]) == (1.0, 0.5)
    for bad in ([], [0.0], [1.0, 1.0], ["a"], "1.0", [float("nan")]):
        with pytest.raises(ValueError, match="tta_scales"):
            check_scales(bad)
    with pytest.raises(ValueError, match="semantic_head"):
        MaskRCNNModule(
            task="person",
            net={
                "arch": "maskrcnn_mobilenet_v3_large_fpn",
                "weights": "none",
                "tta_scales": [1.0, 1.5],
            },
        )
    with pytest.raises(ExportError, match="multi-scale TTA is not exported"):
        export_graph(semantic(SCALES), "unused.onnx")
