"""What a training run writes beside its checkpoints and results: ``train_info.json`` and
the model card, the example predictions (``predict_examples=N``), and the best
checkpoint's validation mIoU read back (``train.py`` calls them; each imports what it
needs when called)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:
    import lightning as L


def write_card(cfg: DictConfig, module: Any, out_dir: Path, started: float) -> None:
    """Write ``train_info.json`` (wall time since ``started``, hardware) and ``MODEL_CARD.md``."""
    from omegaconf import OmegaConf

    from fashionseg.files import write_json
    from fashionseg.reporting.model_card import CARD_NAME, TRAIN_INFO, write_model_card
    from fashionseg.reporting.results_table import hardware

    seconds = round(time.perf_counter() - started, 1)
    write_json(out_dir / TRAIN_INFO, {"seconds": seconds, "hardware": hardware()})
    config = OmegaConf.to_container(cfg, resolve=True)
    card = write_model_card(out_dir / CARD_NAME, out_dir, module.task, config)
    print(f"model card:    {card}")


def saved_val_miou(path: Path) -> float | None:
    """The validation mIoU a checkpoint was saved with (its ``val_miou`` buffer)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    value = float(state["val_miou"]) if "val_miou" in state else float("nan")
    return None if value != value else value


def predict_examples(module: L.LightningModule, datamodule: Any, out_dir: Path, count: int) -> None:
    """Write label maps and overlays for the first ``count`` test photos."""
    from fashionseg.data.io import find_samples
    from fashionseg.predict import predict_files

    stems = set(datamodule.split_stems["test"][:count])
    images = [s.image for s in find_samples(datamodule.root, module.task) if s.stem in stems]
    predict_files(module, images, out_dir)
    print(f"predictions:   {out_dir}")
