"""Panoptic FPN: the semantic head, its joint loss, the panoptic/semantic fusions, checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from helpers import TINY
from omegaconf import OmegaConf

from fashionseg.cli import UsageError
from fashionseg.data.targets import IGNORE_INDEX
from fashionseg.fusion import fuse, fuse_sweep
from fashionseg.model.builder import build_maskrcnn
from fashionseg.model.checkpoint import load_module
from fashionseg.model.module import MaskRCNNModule
from fashionseg.model.panoptic import PanopticMaskRCNN, SemanticFPNHead
from fashionseg.model.tta import mirror_within
from fashionseg.settings import check_settings
from fashionseg.thresholds import InstanceCache

ODD_SIZES = [(37, 53), (64, 48)]


# few proposals and detections in eval mode: a random detector's boxes are not what these
# tests look at, the head's maps do not depend on them, and 1000 proposals and 100 random
# detections with their masks make each forward pass ~10x slower
FEW = {"rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 10, "box_detections_per_img": 5}


def _net(arch: str, num_classes: int = 3, **kwargs: object) -> PanopticMaskRCNN:
    torch.manual_seed(0)
    settings = {"min_size": 48, "max_size": 64, "semantic_head": True, **FEW, **kwargs}
    return build_maskrcnn(arch, num_classes=num_classes, weights="none", **settings)


def _target(height: int, width: int, num_classes: int = 3) -> dict[str, torch.Tensor]:
    semantic = torch.zeros(height, width, dtype=torch.int64)
    semantic[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1
    semantic[: height // 5, :] = num_classes - 1
    masks = (semantic == 1)[None].to(torch.uint8)
    box = [width // 4, height // 4, 3 * width // 4, 3 * height // 4]
    return {
        "boxes": torch.tensor([box], dtype=torch.float32),
        "labels": torch.tensor([1]),
        "masks": masks,
        "semantic": semantic,
    }


# ------------------------------------------------------------------------------ head
@pytest.mark.parametrize(
    ("arch", "levels", "stride"),
    [
        ("maskrcnn_resnet18_fpn", ["0", "1", "2", "3"], 4),
        ("maskrcnn_mobilenet_v3_large_fpn", ["0", "1"], None),
    ],
)
def test_head_outputs_probabilities_at_each_photos_own_size(
    arch: str, levels: list[str], stride: int | None
) -> None:
    net = _net(arch).eval()
    assert isinstance(net, PanopticMaskRCNN)
    head = net.semantic_head
    assert head.levels == levels  # the max-pooled extra level is left out
    if stride is not None:
        assert head.common_stride == stride
    with torch.no_grad():
        out = net([torch.rand(3, h, w) for h, w in ODD_SIZES])
    for output, (h, w) in zip(out, ODD_SIZES, strict=True):
        probs = output["sem_probs"]
        assert probs.shape == (3, h, w)
        assert torch.allclose(probs.sum(0), torch.ones(h, w), atol=1e-5)
        assert {"boxes", "labels", "scores", "masks"} <= set(output)


@pytest.mark.parametrize("arch", ["maskrcnn_resnet18_fpn", "maskrcnn_mobilenet_v3_large_fpn"])
def test_head_logits_are_at_the_finest_fpn_stride(arch: str) -> None:
    net = _net(arch).eval()
    with torch.no_grad():
        features = net.backbone(torch.rand(2, 3, 64, 96))
        logits = net.semantic_head(features)
    stride = net.semantic_head.common_stride
    assert logits.shape == (2, 3, 64 // stride, 96 // stride)
    finest = features[net.semantic_head.finest]
    assert finest.shape[-2:] == logits.shape[-2:]


def test_head_needs_power_of_two_strides() -> None:
    with pytest.raises(ValueError, match="power-of-two"):
        SemanticFPNHead(8, {"0": 4, "1": 12}, 2, channels=8)


# ------------------------------------------------------------- FPN levels of the light nets
def test_returned_layers_give_the_mobilenet_fpn_finer_levels_and_matching_heads() -> None:
    default = _net("maskrcnn_mobilenet_v3_large_fpn")
    assert default.semantic_head.common_stride == 32  # torchvision's [4, 5]: both at 1/32
    net = _net("maskrcnn_mobilenet_v3_large_fpn", returned_layers=[2, 3, 4, 5])
    assert net.semantic_head.common_stride == 8
    assert net.semantic_head.levels == ["0", "1", "2", "3"]
    heads = net.roi_heads
    assert heads.box_roi_pool.featmap_names == ["0", "1", "2", "3"]
    assert heads.mask_roi_pool.featmap_names == ["0", "1", "2", "3"]
    # one anchor-size pair per level (strides 8, 16, 32, 32) and the max-pooled one
    assert net.rpn.anchor_generator.sizes == (
        (32, 64),
        (64, 128),
        (128, 256),
        (128, 256),
        (256, 512),
    )
    losses = net.train()(
        [torch.rand(3, h, w) for h, w in ODD_SIZES], [_target(h, w) for h, w in ODD_SIZES]
    )
    assert all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        out = net.eval()([torch.rand(3, h, w) for h, w in ODD_SIZES])
    assert [tuple(o["sem_probs"].shape) for o in out] == [(3, h, w) for h, w in ODD_SIZES]


def test_mask_roi_size_pools_from_the_models_own_levels() -> None:
    for layers, levels in ((None, ["0", "1"]), ([3, 4, 5], ["0", "1", "2"])):
        net = build_maskrcnn(
            "maskrcnn_mobilenet_v3_large_fpn",
            weights="none",
            returned_layers=layers,
            mask_roi_size=28,
        )
        pool = net.roi_heads.mask_roi_pool
        assert pool.featmap_names == levels and pool.output_size == (28, 28)
    r18 = build_maskrcnn("maskrcnn_resnet18_fpn", weights="none", returned_layers=[2, 3, 4])
    assert r18.roi_heads.box_roi_pool.featmap_names == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("arch", "layers", "message"),
    [
        ("maskrcnn_resnet50_fpn", [1, 2, 3, 4], "applies to maskrcnn_resnet18_fpn"),
        ("maskrcnn_mobilenet_v3_large_fpn", [0, 6], r"does not fit .* from 0-5"),
        ("maskrcnn_mobilenet_v3_large_fpn", [5, 5], "distinct stages"),
        ("maskrcnn_mobilenet_v3_large_fpn", [4, 2], "increasing order"),
        ("maskrcnn_mobilenet_v3_large_fpn", [], "does not fit"),
        ("maskrcnn_resnet18_fpn", [5], r"from 1-4"),
    ],
)
def test_returned_layers_mistakes_are_value_errors(arch: str, layers: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_maskrcnn(arch, weights="none", returned_layers=layers)


# ----------------------------------------------------------------------- flip TTA
def test_mirror_within_flips_each_photo_inside_its_own_region() -> None:
    batch = torch.arange(2 * 1 * 2 * 4, dtype=torch.float32).view(2, 1, 2, 4) + 1
    out = mirror_within(batch, [(2, 3), (1, 4)])
    assert out[0, 0].tolist() == [[3, 2, 1, 0], [7, 6, 5, 0]]  # padding stays at the right
    assert out[1, 0].tolist() == [[12, 11, 10, 9], [0, 0, 0, 0]]
    assert torch.equal(mirror_within(out, [(2, 3), (1, 4)])[0], batch[0] * (batch[0] % 4 != 0))


@pytest.mark.parametrize(("min_size", "max_size"), [(64, 96), (48, 64)])
def test_flip_tta_averages_the_head_over_the_photo_and_its_mirror(
    min_size: int, max_size: int
) -> None:
    # (64, 96): 64x96 photos keep their size, no padding; (48, 64): odd sizes, resized and
    # padded at the right and bottom. Either way the mirror image's TTA map is the photo's
    # mirrored: each photo is mirrored inside its own region, never across the padding.
    net = _net("maskrcnn_resnet18_fpn", min_size=min_size, max_size=max_size).eval()
    sizes = [(64, 96)] if max_size == 96 else ODD_SIZES
    images = [torch.rand(3, h, w) for h, w in sizes]
    mirrors = [image.flip(-1) for image in images]
    with torch.no_grad():
        plain = [o["sem_probs"] for o in net(images)]
        plain_mirror = [o["sem_probs"].flip(-1) for o in net(mirrors)]
        net.tta_hflip = True
        tta = net(images)
        tta_mirror = [o["sem_probs"].flip(-1) for o in net(mirrors)]
    for i in range(len(images)):
        # a random net is not symmetric
        assert not torch.allclose(plain[i], plain_mirror[i], atol=1e-4)
        torch.testing.assert_close(tta[i]["sem_probs"], tta_mirror[i], rtol=0, atol=1e-4)
        assert {"boxes", "labels", "scores", "masks"} <= set(tta[i])
    if max_size == 96:  # no resize: the average of the logits, not of the probabilities
        between = ((plain[0].log() + plain_mirror[0].log()) / 2).softmax(0)
        torch.testing.assert_close(tta[0]["sem_probs"], between, rtol=0, atol=1e-4)


def test_flip_tta_needs_the_head_and_is_a_module_setting() -> None:
    with pytest.raises(ValueError, match="semantic_head=true"):
        build_maskrcnn("maskrcnn_resnet18_fpn", weights="none", tta_hflip=True)
    module = MaskRCNNModule(task="person", net={**TINY_HEAD, "tta_hflip": True})
    assert module.tta_hflip and module.net.tta_hflip
    module.tta_hflip = False
    assert not module.net.tta_hflip
    plain = MaskRCNNModule(
        task="person", net={k: v for k, v in TINY_HEAD.items() if k != "semantic_head"}
    )
    assert not hasattr(plain, "tta_hflip")  # evaluate's one-line error relies on this


# ------------------------------------------------------------------------ joint loss
@pytest.mark.parametrize("arch", ["maskrcnn_resnet18_fpn", "maskrcnn_mobilenet_v3_large_fpn"])
def test_joint_loss_dict_has_the_five_losses_and_the_semantic_one(arch: str) -> None:
    net = _net(arch).train()
    images = [torch.rand(3, h, w) for h, w in ODD_SIZES]
    losses = net(images, [_target(h, w) for h, w in ODD_SIZES])
    assert set(losses) == {
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_semantic",
    }
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_semantic"].backward()
    grad = net.semantic_head.predictor.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def _semantic_loss(net: PanopticMaskRCNN, image: torch.Tensor, semantic: torch.Tensor) -> tuple:
    """(loss_semantic, the head's logits at the input size) for one unresized image."""
    captured = {}
    hook = net.semantic_head.register_forward_hook(lambda m, i, o: captured.update(out=o))
    target = {**_target(*semantic.shape), "semantic": semantic}
    torch.manual_seed(0)
    loss = net([image], [target])["loss_semantic"]
    hook.remove()
    size = tuple(semantic.shape)
    logits = F.interpolate(captured["out"], size=size, mode="bilinear", align_corners=False)
    return loss, logits


def test_semantic_loss_ignores_ignore_index_pixels_and_takes_its_weight() -> None:
    # a 64x64 photo at min_size = max_size = 64: no resize and no padding
    net = _net("maskrcnn_resnet18_fpn", min_size=64, max_size=64).train()
    image = torch.rand(3, 64, 64)
    full = torch.randint(0, 3, (64, 64))
    ignored = full.clone()
    ignored[:, :40] = IGNORE_INDEX
    loss, logits = _semantic_loss(net, image, ignored)
    expected = F.cross_entropy(logits[0][:, :, 40:][None], full[None, :, 40:])
    assert torch.allclose(loss, expected, atol=1e-5)
    everywhere = F.cross_entropy(logits, full[None])
    assert not torch.allclose(loss, everywhere, atol=1e-4)
    # every pixel ignored: zero loss, still finite
    nothing, _ = _semantic_loss(net, image, torch.full((64, 64), IGNORE_INDEX))
    assert float(nothing.detach()) == 0.0
    half = _net("maskrcnn_resnet18_fpn", min_size=64, max_size=64, semantic_loss_weight=0.5)
    half.load_state_dict(net.state_dict())
    halved, _ = _semantic_loss(half.train(), image, ignored)
    assert torch.allclose(halved, loss * 0.5, atol=1e-5)


def test_training_needs_the_semantic_map() -> None:
    net = _net("maskrcnn_mobilenet_v3_large_fpn").train()
    target = {k: v for k, v in _target(37, 53).items() if k != "semantic"}
    with pytest.raises(ValueError, match="semantic"):
        net([torch.rand(3, 37, 53)], [target])


# ---------------------------------------------------------------------------- fusion
def _scene() -> tuple[torch.Tensor, ...]:
    """A 4x6 semantic map (class 1 everywhere, class 3 in the last column) and two
    class-2 instances: A (score 0.9) confident on the top-left 2x2, B (score 0.4)
    confident on rows 2-3, columns 0-3, overlapping A nowhere; A's mask is 0.3 elsewhere."""
    semantic = torch.ones(4, 6, dtype=torch.int64)
    semantic[:, 5] = 3
    probs = torch.full((2, 4, 6), 0.3)
    probs[0, :2, :2] = 0.8
    probs[1] = 0.1
    probs[1, 2:, :4] = 0.7
    labels = torch.tensor([2, 2])
    scores = torch.tensor([0.9, 0.4])
    return labels, scores, probs, semantic


def test_panoptic_paints_instances_above_threshold_only_where_confident() -> None:
    labels, scores, probs, semantic = _scene()
    out = fuse(labels, scores, probs, method="panoptic", threshold=0.5, semantic=semantic)
    expected = semantic.clone()
    expected[:2, :2] = 2  # A passes the threshold: its confident pixels only
    assert torch.equal(out, expected)
    low = fuse(labels, scores, probs, method="panoptic", threshold=0.3, semantic=semantic)
    expected[2:, :4] = 2  # B passes too
    assert torch.equal(low, expected)
    high = fuse(labels, scores, probs, method="panoptic", threshold=0.95, semantic=semantic)
    assert torch.equal(high, semantic)  # nobody passes: the semantic map
    # class scores [C, H, W] work as the semantic input too (their argmax)
    scores_map = F.one_hot(semantic, 4).permute(2, 0, 1).float()
    same = fuse(labels, scores, probs, method="panoptic", threshold=0.5, semantic=scores_map)
    assert torch.equal(same, out)


def test_panoptic_most_confident_instance_wins_overlaps() -> None:
    semantic = torch.zeros(3, 3, dtype=torch.int64)
    probs = torch.full((2, 3, 3), 0.9)
    labels = torch.tensor([1, 2])
    for scores, winner in ((torch.tensor([0.6, 0.8]), 2), (torch.tensor([0.8, 0.6]), 1)):
        out = fuse(labels, scores, probs, method="panoptic", threshold=0.5, semantic=semantic)
        assert torch.equal(out, torch.full((3, 3), winner))


def test_semantic_fusion_is_the_heads_argmax_whatever_the_instances() -> None:
    labels, scores, probs, semantic = _scene()
    class_scores = torch.rand(4, 4, 6)
    for threshold in (0.0, 0.5, 1.0):
        out = fuse(labels, scores, probs, method="semantic", threshold=threshold, semantic=semantic)
        assert torch.equal(out, semantic)
    out = fuse(labels, scores, probs, method="semantic", semantic=class_scores)
    assert torch.equal(out, class_scores.argmax(0))
    sweep = fuse_sweep(
        labels, scores, probs, torch.tensor([0.1, 0.9]), method="semantic", semantic=semantic
    )
    assert torch.equal(sweep, semantic[None].repeat(2, 1, 1))


@pytest.mark.parametrize("method", ["panoptic", "semantic"])
def test_semantic_fusions_need_the_semantic_map(method: str) -> None:
    labels, scores, probs, _ = _scene()
    with pytest.raises(ValueError, match="semantic_head=true"):
        fuse(labels, scores, probs, method=method)
    with pytest.raises(ValueError, match="masks' size"):
        fuse(labels, scores, probs, method=method, semantic=torch.zeros(3, 3, dtype=torch.long))


def _random_case(seed: int, n: int = 7, classes: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(1, classes, (n,), generator=g)
    # scores on the threshold grid too, so ties with thresholds are exercised
    scores = torch.where(
        torch.rand(n, generator=g) < 0.3,
        torch.tensor([0.1, 0.5, 0.9])[torch.randint(0, 3, (n,), generator=g)],
        torch.rand(n, generator=g),
    )
    probs = torch.rand(n, 1, 9, 11, generator=g)
    semantic = torch.rand(classes, 9, 11, generator=g)
    return labels, scores, probs, semantic


@pytest.mark.parametrize("seed", range(12))
def test_panoptic_sweeps_equal_fuse_at_each_threshold(seed: int) -> None:
    labels, scores, probs, semantic = _random_case(seed)
    thresholds = torch.tensor([0.05, 0.1, 0.3, 0.5, 0.7, 0.9])
    kw = {"method": "panoptic", "mask_threshold": 0.5, "semantic": semantic}
    sweep = fuse_sweep(labels, scores, probs, thresholds, **kw)
    for i, t in enumerate(thresholds.tolist()):
        assert torch.equal(sweep[i], fuse(labels, scores, probs, threshold=t, **kw))
    class_thresholds = torch.tensor([0.5, 0.3, 0.7, 0.1])
    cache = InstanceCache("panoptic", 0.5, float(thresholds.min()))
    cache.add(labels, scores, probs, torch.zeros(9, 11, dtype=torch.long), semantic)
    for cls in (1, 2, 3):
        maps = fuse_sweep(
            labels, scores, probs, thresholds, class_thresholds=class_thresholds, cls=cls, **kw
        )
        cached = cache.class_sweep(cache.images[0], class_thresholds, cls, thresholds)
        for i, t in enumerate(thresholds.tolist()):
            moved = class_thresholds.clone()
            moved[cls] = t
            want = fuse(labels, scores, probs, class_thresholds=moved, **kw)
            assert torch.equal(maps[i], want)
            assert torch.equal(cached[i], want)


# --------------------------------------------------------------- module and settings
TINY_HEAD = {
    "arch": "maskrcnn_mobilenet_v3_large_fpn",
    "weights": "none",
    "min_size": 32,
    "max_size": 32,
    "semantic_head": True,
    "mask_head_channels": [16],  # as helpers.TINY_NET: one narrow conv, not four of 256
}


def test_module_refuses_semantic_fusions_without_the_head() -> None:
    net = {k: v for k, v in TINY_HEAD.items() if k != "semantic_head"}
    for method in ("panoptic", "semantic"):
        with pytest.raises(ValueError, match="semantic_head=true"):
            MaskRCNNModule(task="person", net=net, fusion={"method": method})


def test_semantic_fusion_module_has_no_threshold() -> None:
    module = MaskRCNNModule(task="clothing", net=TINY_HEAD, fusion={"method": "semantic"})
    assert not module.uses_threshold and module.score_threshold is None
    assert list(module.validation_columns()) == [0.5]
    assert module.test_settings() == {}
    panoptic = MaskRCNNModule(task="clothing", net=TINY_HEAD, fusion={"method": "panoptic"})
    assert panoptic.uses_threshold and panoptic.score_threshold == 0.5
    maps = panoptic.eval().predict_maps([torch.rand(3, 37, 53)])
    assert maps[0].shape == (37, 53)


@pytest.mark.parametrize("method", ["panoptic", "semantic"])
def test_settings_check_names_the_missing_head_in_one_line(method: str) -> None:
    cfg = OmegaConf.create(
        {"fusion": {"method": method}, "model": {"net": {"arch": "maskrcnn_resnet18_fpn"}}}
    )
    with pytest.raises(UsageError) as err:
        check_settings(cfg, "train")
    assert str(err.value) == (
        f"fusion.method={method}: needs the semantic head "
        "(add model.net.semantic_head=true or use model=maskrcnn_panoptic)"
    )
    net = {k: v for k, v in TINY_HEAD.items() if k != "semantic_head"}
    with pytest.raises(ValueError) as built:  # the module's own check: the same rule
        MaskRCNNModule(task="person", net=net, fusion={"method": method})
    assert str(built.value) == str(err.value)
    cfg.model.net.semantic_head = True
    check_settings(cfg, "train")


def test_weights_only_checkpoint_of_a_panoptic_model_loads(tmp_path: Path) -> None:
    module = MaskRCNNModule(task="clothing", net=TINY_HEAD, fusion={"method": "panoptic"})
    module.best_threshold.fill_(0.35)
    path = tmp_path / "panoptic.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    loaded = load_module(path, task="clothing")
    assert isinstance(loaded.net, PanopticMaskRCNN)
    assert loaded.score_threshold == 0.35
    for key, value in module.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, equal_nan=True)
    image = torch.rand(3, 37, 53)
    module.eval()
    assert torch.equal(loaded.predict_maps([image])[0], module.predict_maps([image])[0])


# ------------------------------------------------------------------------ end to end
@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["panoptic", "semantic"])
def test_tiny_panoptic_training_writes_ap_into_metrics_json(tmp_path: Path, fusion: str) -> None:
    from fashionseg.data.synthetic import generate

    generate(tmp_path / "data", num_images=10, seed=3, height=64, width=48)
    cmd = [
        sys.executable,
        "-m",
        "fashionseg.train",
        "task=clothing",
        f"data.root={tmp_path / 'data'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        *TINY,
        "model.net.semantic_head=true",
        f"fusion={fusion}",
        "fusion.per_class_thresholds=true",
        "data.instances=components",
        "trainer.max_epochs=1",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = (tmp_path / "logs" / "clothing" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["ap"]) == {
        "mask_ap",
        "mask_ap50",
        "mask_ap75",
        "box_ap",
        "box_ap50",
        "box_ap75",
    }
    assert all(v is None or 0.0 <= v <= 1.0 for v in metrics["ap"].values())
    assert metrics["miou"] is not None
    # semantic: pixels by the head's argmax, no threshold (the results table's "argmax")
    assert (metrics["threshold"] is None) == (fusion == "semantic")
    (ckpt,) = [p for p in (run / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
    module = load_module(ckpt)
    assert isinstance(module.net, PanopticMaskRCNN)
    assert module.hparams.fusion["method"] == fusion
    assert module.hparams.instances == "components"
    if fusion == "panoptic":  # the same checkpoint, labelled by the semantic head alone
        cmd = [
            sys.executable,
            "-m",
            "fashionseg.evaluate",
            f"ckpt={ckpt}",
            f"data.root={tmp_path / 'data'}",
            "fusion_method=semantic",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ]
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
        assert evaluated["threshold"] is None and evaluated["miou"] is not None
        # the figures are the semantic head's argmax, computed here without the fusion
        expected = _head_argmax_confmat(module, run, tmp_path / "data", tta=False)
        assert evaluated["confusion_matrix"] == expected.tolist()
        # and with the semantic head averaged over the mirror image, still fusion semantic
        cmd[-1:] = ["tta_hflip=true", f"hydra.run.dir={tmp_path / 'eval_tta'}"]
        assert "fusion_method=semantic" in cmd
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        evaluated = json.loads((tmp_path / "eval_tta" / "metrics.json").read_text())
        assert evaluated["threshold"] is None
        expected = _head_argmax_confmat(module, run, tmp_path / "data", tta=True)
        assert evaluated["confusion_matrix"] == expected.tolist()
    # the AP figures are those of the tested (best) checkpoint's instances on the test split
    assert metrics["ap"] == pytest.approx(_test_ap(module, run, tmp_path / "data"), nan_ok=True)


def _test_split(run: Path, root: Path) -> list:
    from fashionseg.data.datamodule import FashionDataModule

    data = FashionDataModule(
        root=str(root), task="clothing", manifest=str(run / "split.json"), instances="components"
    )
    data.setup("test")
    return list(data.dataset("test"))


def _head_argmax_confmat(module: MaskRCNNModule, run: Path, root: Path, tta: bool) -> torch.Tensor:
    """The test split's confusion matrix of the semantic head's own argmax, one photo at a
    time (with ``tta``: the mean of the photo's and its mirror image's probabilities)."""
    from fashionseg.metrics import ThresholdSweep

    module.eval()
    module.net.tta_hflip = False
    sweep = ThresholdSweep(module.task.num_classes, [0.5], ignore_index=IGNORE_INDEX)
    with torch.no_grad():
        for image, target in _test_split(run, root):
            image = image.float() / 255 if image.dtype == torch.uint8 else image
            probs = module.net([image])[0]["sem_probs"]
            if tta:
                mirror = module.net([image.flip(-1)])[0]["sem_probs"].flip(-1)
                probs = (probs + mirror) / 2
            sweep.update(probs.argmax(0)[None], target["semantic"])
    return sweep.compute()["confmat"][0]


def _test_ap(module: MaskRCNNModule, run: Path, root: Path) -> dict:
    from fashionseg.instance_ap import (
        ap_summary,
        gt_instances,
        instance_ap_metric,
        predicted_instances,
    )

    module.eval()
    metric = instance_ap_metric()
    with torch.no_grad():
        for image, target in _test_split(run, root):
            image = image.float() / 255 if image.dtype == torch.uint8 else image
            output = module.net([image])[0]
            truth = gt_instances(target["semantic"], module.task.num_classes, "components")
            metric.update(
                [predicted_instances(output, module.hparams.fusion["mask_threshold"])], [truth]
            )
    return ap_summary(metric.compute())


# ------------------------------------------------- evaluate fusion_method=... (no model)
def _evaluate_cfg(method: str | None) -> Any:
    return OmegaConf.create({"ckpt": "run/last.ckpt", "fusion_method": method})


def test_evaluate_fusion_method_keeps_the_checkpoints_other_fusion_settings() -> None:
    from fashionseg.evaluate import _fusion_override

    hparams = {
        "net": {"semantic_head": True},
        "fusion": {"method": "panoptic", "mask_threshold": 0.4},
    }
    ckpt = {"hyper_parameters": hparams}
    assert _fusion_override(_evaluate_cfg("semantic"), ckpt) == {
        "method": "semantic",
        "mask_threshold": 0.4,
    }
    assert _fusion_override(_evaluate_cfg(None), ckpt) is None  # as trained


@pytest.mark.parametrize(
    ("hparams", "method", "message"),
    [
        (
            {"net": {"arch": "lraspp_mobilenet_v3_large"}},
            "semantic",
            "is not a Mask R-CNN checkpoint",
        ),
        ({"net": {}, "fusion": {"method": "seed"}}, "blend", "choose one of seed, score_order"),
        ({"net": {}, "fusion": {"method": "seed"}}, "panoptic", "has no semantic head"),
    ],
)
def test_evaluate_fusion_method_mistakes_are_one_line(
    hparams: dict, method: str, message: str
) -> None:
    from fashionseg.evaluate import _fusion_override

    with pytest.raises(UsageError, match=message) as err:
        _fusion_override(_evaluate_cfg(method), {"hyper_parameters": hparams})
    assert str(err.value).startswith(f"fusion_method={method}: ") and "\n" not in str(err.value)


def test_evaluate_scores_ap_of_older_checkpoints_with_their_runs_instance_mode() -> None:
    """Checkpoints from before the module kept ``instances`` take it from the run's data."""
    from fashionseg.evaluate import _ap_instances

    data = {"instances": "components", "min_area": 16}
    older = {
        "hyper_parameters": {"fusion": {"method": "score_order"}},
        "datamodule_hyper_parameters": data,
    }
    assert _ap_instances(older) == {"instances": "components", "min_area": 16}
    newer = {
        "hyper_parameters": {"fusion": {}, "instances": "class"},
        "datamodule_hyper_parameters": data,
    }
    assert _ap_instances(newer) == {}  # the module's own setting stands
    semantic = {"hyper_parameters": {"net": {}}, "datamodule_hyper_parameters": data}
    assert _ap_instances(semantic) == {}  # no instances, no AP


def test_the_panoptic_sweep_can_choose_the_semantic_head_alone(tmp_path: Path) -> None:
    from fashionseg.bench import compose_config

    labels, scores, probs, semantic = _random_case(3)
    scores[0] = 1.0  # a float32 score can round to 1.0: still not painted at 1.0
    kw = {"mask_threshold": 0.5, "semantic": semantic}
    sweep = fuse_sweep(labels, scores, probs, torch.tensor([0.5, 1.0]), method="panoptic", **kw)
    alone = fuse(labels, scores, probs, method="semantic", **kw)
    assert torch.equal(sweep[1], alone) and not torch.equal(sweep[0], alone)
    cfg = compose_config(tmp_path, ["experiment=ccp_panoptic"])
    assert cfg.model.thresholds[-1] == 1.0 and cfg.model.fusion.method == "panoptic"
