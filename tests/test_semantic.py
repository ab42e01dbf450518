"""The semantic-segmentation baseline: builder, batching, training, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from fashionseg.data.datamodule import collate
from fashionseg.model.checkpoint import load_module
from fashionseg.model.module import MaskRCNNModule, NonFiniteLossError
from fashionseg.model.semantic import IGNORE, SemanticModule, build_semantic

NET = {"arch": "lraspp_mobilenet_v3_large", "weights": "none", "min_size": 40, "max_size": 60}


def batch(n: int = 2) -> tuple[list[torch.Tensor], list[dict]]:
    """Photos of two sizes whose left half is class 1, right half class 2."""
    images, targets = [], []
    for i in range(n):
        h, w = (60, 40) if i % 2 == 0 else (30, 30)
        label = torch.zeros(h, w, dtype=torch.long)
        label[:, : w // 2], label[:, w // 2 :] = 1, 2
        image = torch.stack([label == 1, label == 2, torch.zeros_like(label, dtype=bool)]).float()
        images.append(image)
        targets.append({"semantic": label})
    return images, targets


def test_unknown_arch_and_weights() -> None:
    with pytest.raises(ValueError, match="unknown model.net.arch 'unet'"):
        build_semantic("unet", 3)
    with pytest.raises(ValueError, match="unknown model.net.weights 'voc'"):
        build_semantic(num_classes=3, weights="voc")


def test_coco_weights_come_from_the_hub_cache_with_a_new_classifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models.segmentation import LRASPP_MobileNet_V3_Large_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = LRASPP_MobileNet_V3_Large_Weights.DEFAULT
    reference = build_semantic(num_classes=21)
    marker = torch.full_like(reference.backbone["0"][0].weight, 0.125)
    state = {**reference.state_dict(), "backbone.0.0.weight": marker}
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / weights.url.rsplit("/", 1)[-1])
    model = build_semantic(num_classes=7, weights="auto")
    assert torch.equal(model.backbone["0"][0].weight, marker)
    assert model.classifier.low_classifier.out_channels == 7
    assert model.classifier.high_classifier.out_channels == 7


def test_random_init_batchnorm_follows_the_weights_quickly() -> None:
    from torch import nn

    model = build_semantic(num_classes=3)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.1 for m in norms)


def test_batch_resizes_pads_and_ignores_the_padding() -> None:
    module = SemanticModule(task="clothing", net=NET)
    images, targets = batch()
    x, y, sizes = module._batch(images, [t["semantic"] for t in targets])
    assert sizes == [(60, 40), (40, 40)]  # scales min(40/40, 60/60), min(40/30, 60/30)
    assert x.shape == (2, 3, 64, 64) and y.shape == (2, 64, 64)
    assert (y[1, 40:] == IGNORE).all() and (y[1, :, 40:] == IGNORE).all()
    assert (y[1, :40, :40] != IGNORE).all()
    assert set(y[0, :60, :40].unique().tolist()) == {1, 2}
    probs = module.eval()(images)
    assert [p.shape for p in probs] == [(7, 60, 40), (7, 30, 30)]
    torch.testing.assert_close(probs[0].sum(0), torch.ones(60, 40))


@pytest.mark.slow  # a 15-epoch fit: not in make test-fast
def test_trains_to_fit_a_toy_batch_and_round_trips_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = SemanticModule(
        task="clothing",
        net=NET,
        optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-2},
    )
    images, targets = batch(4)
    data = list(zip(images, targets, strict=True))
    loader = DataLoader(data, batch_size=2, collate_fn=collate)
    trainer = L.Trainer(
        max_epochs=15,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, loader, loader)
    assert module.last_val_result["miou"].reshape(-1)[0] > 0.5
    trainer.test(module, loader)
    assert module.test_results["threshold"] is None and module.test_results["miou"] > 0.5
    ckpt = tmp_path / "semantic.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = load_module(ckpt)
    assert isinstance(loaded, SemanticModule)
    for a, b in zip(loaded.predict_maps(images), module.eval().predict_maps(images), strict=True):
        assert torch.equal(a, b)


def test_non_finite_loss_names_the_step() -> None:
    module = SemanticModule(task="person", net=NET)
    images, targets = batch()
    images[0][:] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"step 0 .*loss_ce=nan"):
        module.training_step((images, [{**t, "semantic": t["semantic"] % 2} for t in targets]), 0)


def test_flip_tta_averages_the_logits_of_photo_and_mirror(tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = SemanticModule(task="clothing", net=NET).eval()
    tta = SemanticModule(task="clothing", net={**NET, "tta_hflip": True}).eval()
    tta.load_state_dict(plain.state_dict())
    images, _ = batch()
    x, _, sizes = plain._batch(images)
    # the expectation without the code under test: the mirror images batched as photos
    # of their own (padding at the right and bottom, as for any photo), the network's
    # output for each cropped to its photo and flipped back
    x_mirror, _, mirror_sizes = plain._batch([image.flip(-1) for image in images])
    assert mirror_sizes == sizes
    with torch.no_grad():
        out, out_mirror = plain.net(x)["out"], plain.net(x_mirror)["out"]
        probs = tta(images)
        assert not torch.allclose(probs[0], plain(images)[0])
        # each photo is mirrored inside its own region, so the mirror image's TTA map is
        # the photo's mirrored, padding or not
        flipped = tta([image.flip(-1) for image in images])
    assert any(s != x.shape[-2:] for s in sizes)  # the batch pads at least one photo
    for p, f in zip(probs, flipped, strict=True):
        torch.testing.assert_close(f.flip(-1), p, rtol=0, atol=1e-5)
    for i, (h, w) in enumerate(sizes):
        crop = (out[i, :, :h, :w] + out_mirror[i, :, :h, :w].flip(-1)) / 2
        full = torch.nn.functional.interpolate(crop[None], images[i].shape[-2:], mode="bilinear")
        torch.testing.assert_close(probs[i], full[0].softmax(0), rtol=1e-4, atol=1e-5)
    ckpt = tmp_path / "tta.ckpt"
    torch.save({"hyper_parameters": dict(tta.hparams), "state_dict": tta.state_dict()}, ckpt)
    assert load_module(ckpt).tta_hflip


def test_siblings_only_the_mask_rcnn_module_has_threshold_machinery() -> None:
    from fashionseg.model.base import SegmentationBase
    from fashionseg.model.module import MaskRCNNModule, SegmentationModule
    from fashionseg.thresholds import THRESHOLD_BUFFERS

    assert SegmentationModule is MaskRCNNModule
    semantic = SemanticModule(task="clothing", net=NET)
    maskrcnn = MaskRCNNModule(
        task="clothing", net={"arch": "maskrcnn_mobilenet_v3_large_fpn", "weights": "none"}
    )
    assert isinstance(semantic, SegmentationBase) and isinstance(maskrcnn, SegmentationBase)
    assert not isinstance(semantic, MaskRCNNModule)
    machinery = ("threshold_choice", "choose_thresholds", "store_choice", "sweep_thresholds")
    assert all(hasattr(maskrcnn, name) for name in machinery)
    assert not any(hasattr(semantic, name) for name in machinery + ("uses_threshold",))
    assert set(THRESHOLD_BUFFERS) <= set(maskrcnn.state_dict())
    assert not set(THRESHOLD_BUFFERS) & set(semantic.state_dict())
    assert "val_miou" in semantic.state_dict()  # the base's: validation's figure
    assert set(semantic.hparams) == {"family", "task", "net", "optimizer", "scheduler", "init_from"}
    assert {"fusion", "thresholds", "threshold"} <= set(maskrcnn.hparams)
    assert semantic.score_threshold is None and len(semantic.val_sweep.thresholds) == 1
    with pytest.raises(TypeError):
        SemanticModule(task="clothing", net=NET, thresholds=[0.5])


def test_checkpoints_from_when_it_inherited_mask_rcnn_still_load(tmp_path: Path) -> None:
    from fashionseg.thresholds import THRESHOLD_BUFFERS

    module = SemanticModule(task="clothing", net=NET)
    state = {**module.state_dict(), **{k: torch.tensor(0.5) for k in THRESHOLD_BUFFERS}}
    hparams = {
        **module.hparams,
        "fusion": {"method": "seed"},
        "thresholds": [0.5],
        "threshold": None,
        "log_images": 4,
        "log_images_every_n_epochs": 1,
    }
    ckpt = tmp_path / "old.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": hparams}, ckpt)
    loaded = load_module(ckpt, threshold=0.3)  # the override means nothing for argmax
    assert isinstance(loaded, SemanticModule)
    assert set(loaded.hparams) == {"family", "task", "net", "optimizer", "scheduler", "init_from"}
    checkpoint = {"state_dict": dict(state)}
    module.on_load_checkpoint(checkpoint)  # resuming or testing through Lightning
    module.load_state_dict(checkpoint["state_dict"])


def test_validation_with_tensorboard_pictures_draws_predictions_and_no_threshold_curve(
    tmp_path: Path,
) -> None:
    """The TensorBoard callback on a thresholdless module: pictures, no threshold curve
    (it used to index the sweep's single column as a threshold and crash the run)."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fashionseg.callbacks import TensorBoardPictures

    module = SemanticModule(task="clothing", net=NET)
    images, targets = batch(2)
    loader = DataLoader(list(zip(images, targets, strict=True)), batch_size=2, collate_fn=collate)
    logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=logger,
        callbacks=[TensorBoardPictures(images=2)],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, dataloaders=loader, verbose=False)
    logger.experiment.flush()
    events = EventAccumulator(str(tmp_path / "tb" / "version_0"))
    events.Reload()
    assert events.Tags()["images"] == ["val/predictions"]
    # the grid carries the class colour legend below its rows: every class's swatch
    import io

    import numpy as np
    from PIL import Image

    grid = Image.open(io.BytesIO(events.Images("val/predictions")[0].encoded_image_string))
    assert grid.height > 2 * 60 + 3 * 2  # two 60-pixel rows and their padding, and more
    # the overlays blend the colours with the photo: pure ones are the legend's swatches
    pixels = np.asarray(grid.convert("RGB")).reshape(-1, 3)
    assert set(module.task.colors) <= {tuple(int(v) for v in p) for p in pixels}


def test_a_setting_it_does_not_have_is_refused() -> None:
    with pytest.raises(TypeError, match="SemanticModule got unexpected settings: fusion"):
        SemanticModule(task="person", net=NET, fusion={"method": "seed"})


def test_a_misspelt_setting_of_the_mask_rcnn_module_is_refused() -> None:
    # its constructor passes the base's settings through **common: a typo must not be
    # saved as a hyper-parameter
    net = {"arch": "maskrcnn_mobilenet_v3_large_fpn", "weights": "none"}
    with pytest.raises(TypeError, match="MaskRCNNModule got unexpected settings: treshold"):
        MaskRCNNModule(task="person", net=net, treshold=0.3)
    assert MaskRCNNModule.accepted_settings() >= {"task", "net", "optimizer", "fusion", "ap"}
    assert SemanticModule.accepted_settings() == {
        "family",
        "task",
        "net",
        "optimizer",
        "scheduler",
        "init_from",
    }


def _macro_dice(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 - Dice per photo and class present among its labelled pixels, averaged."""
    probs = logits.softmax(1)
    losses = []
    for p, y in zip(probs, labels, strict=True):
        valid = y != IGNORE
        per_class = []
        for c in y[valid].unique():
            x, t = p[c][valid], (y[valid] == c).float()
            per_class.append(1 - 2 * (x * t).sum() / (x.sum() + t.sum()))
        losses.append(torch.stack(per_class).mean())
    return torch.stack(losses).mean()


def test_dice_term_is_macro_dice_over_labelled_pixels_only() -> None:
    torch.manual_seed(0)
    module = SemanticModule(task="clothing", net={**NET, "dice_weight": 0.5})
    module.log = lambda *args, **kwargs: None  # no trainer attached
    images, targets = batch()
    targets[0]["semantic"][:20] = IGNORE  # pixels a pseudo label leaves out
    x, y, _ = module._batch(images, [t["semantic"] for t in targets])
    logits = module.net(x)["out"]
    ce = torch.nn.functional.cross_entropy(logits, y, ignore_index=IGNORE)
    expected = ce + 0.5 * _macro_dice(logits, y)
    loss = module.training_step((images, targets), 0)
    assert torch.allclose(loss, expected, atol=1e-5)
    plain = SemanticModule(task="clothing", net=NET)
    plain.load_state_dict(module.state_dict())
    plain.log = module.log
    assert torch.allclose(plain.training_step((images, targets), 0), ce, atol=1e-6)


def test_class_mix_runs_on_the_padded_training_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def spy(x: torch.Tensor, y: torch.Tensor, prob: float, ignore: int) -> tuple:
        seen.append((x.shape, y.shape, prob, ignore))
        return x, y

    monkeypatch.setattr("fashionseg.model.semantic.class_mix", spy)
    module = SemanticModule(task="clothing", net={**NET, "class_mix": 0.5})
    module.log = lambda *args, **kwargs: None
    module.training_step(batch(), 0)
    assert seen == [(torch.Size([2, 3, 64, 64]), torch.Size([2, 64, 64]), 0.5, IGNORE)]


@pytest.mark.parametrize("setting", [{"dice_weight": -1.0}, {"class_mix": 1.5}])
def test_loss_and_mix_settings_out_of_range_are_refused(setting: dict) -> None:
    with pytest.raises(ValueError, match="model.net"):
        SemanticModule(task="clothing", net={**NET, **setting})
