"""Train, validate (sweeping score thresholds) and test a Mask R-CNN.

    python -m fashionseg.train task=clothing data.root=DIR [key=value ...]
    python -m fashionseg.train -m optimizer.lr=1e-2,1e-3 data.batch_size=2,10
    python -m fashionseg.train --cfg job          # print the composed config
    python -m fashionseg.train ... resume=true    # continue the latest run of the task

Compose -> instantiate -> fit -> test with the best checkpoint. The run directory
(``logs/<task>/runs/<time>/``) holds the composed config (``.hydra/``), ``split.json``,
``checkpoints/`` (best and ``last.ckpt``), TensorBoard events, ``metrics.json``,
``results.md``, ``confusion_matrix.png``, ``train_info.json`` (wall time, hardware) and
``MODEL_CARD.md`` (:mod:`fashionseg.reporting.model_card`).

Resuming: ``resume=true`` continues the newest run of the task under ``paths.log_dir``,
``resume=RUN_DIR`` a given run and ``ckpt_path=FILE`` a given checkpoint; the weights,
optimizer, scheduler, epoch, step, validated thresholds and random states come back,
and the continued run writes into a new run directory, to which the best checkpoint so
far is carried over (:class:`fashionseg.callbacks.BestCheckpoint`): the continued run
tests the same best checkpoint as an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from fashionseg.cli import UsageError, disk_full_is_one_line, run_cli, user_errors
from fashionseg.resume import resume_checkpoint
from fashionseg.settings import check_settings
from fashionseg.train_outputs import predict_examples, saved_val_miou, write_card

if TYPE_CHECKING:  # Lightning (and torch) load after the settings check: fast errors
    import lightning as L

log = logging.getLogger(__name__)


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``instantiate(node)``; a setting the class refuses (ValueError/TypeError, e.g. an
    unknown ``model.net.arch`` or a misspelt ``+model.net.key``) becomes a UsageError."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ValueError | TypeError) and not isinstance(cause, UsageError):
            raise UsageError(" ".join(str(cause).split())) from None
        raise


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job from a composed config; return its test metrics.

    A full disk ends the run with one line naming the folder (a :class:`DiskFullError`);
    checkpoints are written atomically, so the last good one stays as it was."""
    check_settings(cfg, "train")
    with disk_full_is_one_line(Path(cfg.paths.output_dir)):
        return _train(cfg)


def _train(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    import lightning as L

    from fashionseg.reporting.run_results import write_results

    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    datamodule: L.LightningDataModule = build(cfg.data)
    module: L.LightningModule = build(cfg.model, _recursive_=False)
    # a callback whose factory answers None is switched off (callbacks.ema.decay=null)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    callbacks = [c for c in callbacks if c is not None]
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values()]
    from fashionseg.profiling import active_steps, trace_profiler

    extra = {}
    steps = active_steps(cfg.get("profile"))
    if steps:
        extra["profiler"] = trace_profiler(out_dir / "profile", steps)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, **extra)

    start = None
    if cfg.get("train", True):
        start = cfg.get("ckpt_path") or resume_checkpoint(
            cfg.get("resume"), Path(cfg.paths.log_dir) / cfg.task.name / "runs", out_dir
        )
    init_from = module.hparams.get("init_from")
    if init_from and start is None:  # a resumed run has its own weights already
        from fashionseg.model.checkpoint import init_from_checkpoint

        init_from_checkpoint(module, init_from)
        print(f"initialised from {init_from}")

    datamodule.prepare_data()
    datamodule.setup("fit")
    if trainer.is_global_zero:
        datamodule.write_manifest(out_dir / "split.json")

    ckpt_path, best_val = None, None
    if cfg.get("train", True):
        if start is not None:
            log.info("resuming from %s", start)
            print(f"resuming from {start}")
        trainer.fit(module, datamodule=datamodule, ckpt_path=start)
        ckpt_path = trainer.checkpoint_callback.best_model_path or None
        best = trainer.checkpoint_callback.best_model_score
        if best is None and ckpt_path:  # spawned processes send back the path, not the score
            best = saved_val_miou(Path(ckpt_path))
        best_val = None if best is None else float(best)
    elif cfg.get("ckpt_path"):
        ckpt_path = cfg.ckpt_path
    if not cfg.get("test", True):
        if trainer.is_global_zero:
            write_card(cfg, module, out_dir, started)
        return {"best_val_miou": best_val}
    trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path)
    module.take_over(trainer)  # the results of spawned processes (hardware=ddp_cpu)
    results = {**(module.test_results or {}), "best_val_miou": best_val}
    if trainer.is_global_zero and module.test_results:
        table = write_results(results, module.task, out_dir, title=f"test ({cfg.task.name})")
        print(table)
        print(f"run directory: {out_dir}")
        print(f"checkpoint:    {ckpt_path}")
        if cfg.get("predict_examples"):
            predict_examples(module, datamodule, out_dir / "predictions", cfg.predict_examples)
    if trainer.is_global_zero:
        write_card(cfg, module, out_dir, started)
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@user_errors
def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the best validation mIoU (what sweepers optimise).

    Sweepers see validation, never test, figures: a search tuned on test mIoU would
    report an optimistic test score.
    """
    return train(cfg).get("best_val_miou")


def main() -> None:
    """Command-line entry point: the command line is checked, then Hydra runs."""
    run_cli(hydra_main, "train", "train")


if __name__ == "__main__":
    main()
