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
from fashionseg.settings import check_settings

if TYPE_CHECKING:  # Lightning (and torch) load after the settings check: fast errors
    import lightning as L

log = logging.getLogger(__name__)
# checkpoints a run can continue from: the end of its last epoch, or an interruption
RESUMABLE = ("last.ckpt", "interrupted.ckpt")


def progress(path: Path) -> tuple[int, int] | None:
    """(epoch, global step) saved in a checkpoint; None when it cannot be read."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ckpt["epoch"]), int(ckpt["global_step"])
    except Exception as err:  # a corrupt or foreign file is not a place to resume from
        log.warning("%s: not a resumable checkpoint (%s)", path, " ".join(str(err).split())[:200])
        return None


def run_checkpoint(run_dir: Path) -> Path | None:
    """The most advanced (epoch, step) resumable checkpoint of a run directory that
    trained at least one step, if any."""
    found = []
    for path in (run_dir / "checkpoints" / name for name in RESUMABLE):
        saved = progress(path) if path.is_file() else None
        if saved is not None and saved[1] > 0:
            found.append((saved, path))
    return max(found, key=lambda item: item[0])[1] if found else None


def resume_checkpoint(resume: Any, runs_dir: Path, current: Path | None = None) -> Path | None:
    """The checkpoint ``resume`` asks for: ``true`` -> the newest run in ``runs_dir`` that
    trained at least one step (its most advanced checkpoint).

    ``resume`` may also be a run directory or a checkpoint file; ``false``/``null``
    means start afresh. ``current`` (this run's own directory) is never chosen. Runs that
    stopped before their first step (a bad setting, say) are passed over.
    """
    if resume is None or resume is False:
        return None
    if resume is True:
        runs = [d for d in runs_dir.glob("*") if d.is_dir() and d != current]
        candidates = [c for c in map(run_checkpoint, runs) if c is not None]
        if not candidates:
            raise UsageError(
                f"resume=true: no run under {runs_dir} has a checkpoints/last.ckpt or "
                "interrupted.ckpt that trained at least one step"
            )
        return max(candidates, key=lambda p: p.stat().st_mtime)
    path = Path(str(resume)).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        found = run_checkpoint(path)
        if found is None:
            raise UsageError(
                f"resume={path}: no checkpoints/last.ckpt or interrupted.ckpt that trained "
                "at least one step in this run directory"
            )
        return found
    raise UsageError(f"resume={path}: no such run directory or checkpoint")


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
            best = _saved_val_miou(Path(ckpt_path))
        best_val = None if best is None else float(best)
    elif cfg.get("ckpt_path"):
        ckpt_path = cfg.ckpt_path
    if not cfg.get("test", True):
        if trainer.is_global_zero:
            _write_card(cfg, module, out_dir, started)
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
            _predict_examples(module, datamodule, out_dir / "predictions", cfg.predict_examples)
    if trainer.is_global_zero:
        _write_card(cfg, module, out_dir, started)
    return results


def _write_card(cfg: DictConfig, module: Any, out_dir: Path, started: float) -> None:
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


def _saved_val_miou(path: Path) -> float | None:
    """The validation mIoU a checkpoint was saved with (its ``val_miou`` buffer)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    value = float(state["val_miou"]) if "val_miou" in state else float("nan")
    return None if value != value else value


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
