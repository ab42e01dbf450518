"""callbacks.ema: validation, checkpoints and test use the averaged weights; resume keeps it."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import TINY_NET, quiet_trainer

from fashionseg.callbacks import EMA, BestCheckpoint, RNGState, ema
from fashionseg.data.datamodule import FashionDataModule
from fashionseg.model.checkpoint import load_module
from fashionseg.model.module import MaskRCNNModule

pytestmark = pytest.mark.filterwarnings("ignore:.*(does not have many workers|WeightAveraging)")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fashionseg.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("ema") / "data", 10, seed=3, height=40, width=32)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values (NaN equal to NaN: the buffers of a figure not measured)."""
    a, b = a.cpu(), b.cpu()
    if a.is_floating_point():
        return torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)
    return torch.equal(a, b)


def fit(data: Path, out: Path, epochs: int, resume: Path | None = None) -> tuple:
    L.seed_everything(0, workers=True)
    dm = FashionDataModule(root=str(data), task="clothing", batch_size=2, hflip=0.5)
    model = MaskRCNNModule(
        task="clothing",
        net={**TINY_NET, "min_size": 32, "max_size": 40},
        thresholds=[0.05, 0.3, 0.6],
        optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3},
    )
    average = EMA(decay=0.5)
    best = BestCheckpoint(dirpath=str(out), monitor="val/miou", mode="max", save_top_k=1)
    last = L.pytorch.callbacks.ModelCheckpoint(dirpath=str(out), filename="last")
    trainer = quiet_trainer(
        max_epochs=epochs,
        enable_checkpointing=True,
        num_sanity_val_steps=0,
        callbacks=[average, RNGState(), best, last],
    )
    trainer.fit(model, datamodule=dm, ckpt_path=resume)
    return model, average, best, trainer, dm


@pytest.mark.slow
def test_checkpoints_validation_and_test_use_the_average(data: Path, tmp_path: Path) -> None:
    model, average, best, trainer, dm = fit(data, tmp_path / "ckpt", epochs=1)
    ckpt = torch.load(best.best_model_path, weights_only=True)
    averaged = average._average_model.module.state_dict()
    assert ckpt["state_dict"].keys() == averaged.keys() == model.state_dict().keys()
    for name, value in ckpt["state_dict"].items():
        assert same(value, averaged[name]), name
        assert same(value, model.state_dict()[name]), name  # the model after fit
    raw = ckpt["current_model_state"]  # the trained weights, kept for resuming
    assert any(not torch.equal(raw[n], ckpt["state_dict"][n]) for n, _ in model.named_parameters())
    # the threshold chosen on validation of the averaged weights is what the checkpoint holds
    assert not torch.isnan(ckpt["state_dict"]["val_miou"])
    chosen = model.last_val_result["choice"].threshold
    assert float(ckpt["state_dict"]["best_threshold"]) == pytest.approx(chosen)
    assert float(ckpt["state_dict"]["val_miou"]) == pytest.approx(float(best.best_model_score))
    # validating the saved (averaged) weights again gives the validation figure they were saved with
    again = load_module(best.best_model_path)
    figures = quiet_trainer().validate(again, datamodule=dm, verbose=False)[0]
    assert figures["val/miou"] == pytest.approx(float(ckpt["state_dict"]["val_miou"]), abs=1e-6)
    # test scores the averaged weights (on_train_end left them in the model)
    trainer.test(model, datamodule=dm, ckpt_path=best.best_model_path, verbose=False)
    assert torch.equal(
        model.state_dict()["net.rpn.head.conv.0.0.weight"], averaged["net.rpn.head.conv.0.0.weight"]
    )


@pytest.mark.slow
def test_resume_keeps_the_average(data: Path, tmp_path: Path) -> None:
    straight, *_ = fit(data, tmp_path / "a", epochs=2)
    fit(data, tmp_path / "b", epochs=1)
    resumed, average, _, trainer, _ = fit(
        data, tmp_path / "c", epochs=2, resume=tmp_path / "b" / "last.ckpt"
    )
    # every step of both epochs is in the average (3 steps an epoch: 5 training photos)
    assert int(average._average_model.n_averaged) == trainer.global_step == 6
    for name, value in straight.state_dict().items():
        other = resumed.state_dict()[name].float()
        assert torch.allclose(value.float(), other, atol=1e-6, equal_nan=True), name


def test_one_word_override_turns_it_on() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from fashionseg.cli import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        off = compose("train", overrides=["data.root=x"])
        on = compose("train", overrides=["data.root=x", "callbacks.ema.decay=0.999"])
    assert instantiate(off.callbacks.ema) is None
    callback = instantiate(on.callbacks.ema)
    assert isinstance(callback, EMA) and callback.decay == 0.999
    assert ema(None) is None
    with pytest.raises(
        ValueError, match=r"callbacks\.ema\.decay=1\.5: must be a number in \(0, 1\)"
    ):
        ema(1.5)


def test_a_bad_decay_is_a_usage_error() -> None:
    from hydra import compose, initialize_config_dir

    from fashionseg.cli import CONF_DIR
    from fashionseg.errors import UsageError
    from fashionseg.settings import check_settings

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data.root=x", "callbacks.ema.decay=1"])
    with pytest.raises(UsageError, match=r"callbacks\.ema\.decay=1: must be a number in \(0, 1\)"):
        check_settings(cfg, "train")
