"""Train, validate (sweeping score thresholds) and test a Mask R-CNN.

    python -m fashionseg.train task=clothing data.root=DIR [key=value ...]
    python -m fashionseg.train -m optimizer.lr=1e-2,1e-3 data.batch_size=2,10
    python -m fashionseg.train --cfg job          # print the composed config

Compose -> instantiate -> fit -> test with the best checkpoint. The run directory
(``logs/<task>/runs/<time>/``) holds the composed config (``.hydra/``), ``split.json``,
``checkpoints/`` (best and ``last.ckpt``), TensorBoard events, ``metrics.json``,
``results.md`` and ``confusion_matrix.png``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from fashionseg.results import write_results

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job from a composed config; return its test metrics."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    module: L.LightningModule = instantiate(cfg.model, _recursive_=False)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)

    datamodule.prepare_data()
    datamodule.setup("fit")
    if trainer.is_global_zero:
        datamodule.write_manifest(out_dir / "split.json")

    ckpt_path = None
    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        ckpt_path = trainer.checkpoint_callback.best_model_path or None
    elif cfg.get("ckpt_path"):
        ckpt_path = cfg.ckpt_path
    if not cfg.get("test", True):
        return {}
    trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path)
    results = module.test_results or {}
    if trainer.is_global_zero and results:
        table = write_results(results, module.task, out_dir, title=f"test ({cfg.task.name})")
        print(table)
        print(f"run directory: {out_dir}")
        print(f"checkpoint:    {ckpt_path}")
        if cfg.get("predict_examples"):
            _predict_examples(module, datamodule, out_dir / "predictions", cfg.predict_examples)
    return results


def _predict_examples(
    module: L.LightningModule, datamodule: Any, out_dir: Path, count: int
) -> None:
    """Write label maps and overlays for the first ``count`` test photos."""
    from fashionseg.data.io import find_samples
    from fashionseg.predict import predict_files

    stems = set(datamodule.split_stems["test"][:count])
    images = [s.image for s in find_samples(datamodule.root, module.task) if s.stem in stems]
    predict_files(module, images, out_dir)
    print(f"predictions:   {out_dir}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns test mIoU (for sweepers)."""
    results = train(cfg)
    return results.get("miou")


if __name__ == "__main__":
    main()
