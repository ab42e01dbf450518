"""Score a trained checkpoint on a dataset: the same IoU table as training's test.

    python -m fashionseg.evaluate ckpt=PATH data.root=DIR [data.split=test|all]
        [threshold=0.4] [thresholds=[0.3,0.4,0.5]] [tta_hflip=true|false]
        [tta_scales=[0.75,1.0,1.25] | tta_scales=choose | tta_scales=[[1.0],[0.75,1.0]]]

``data.split=test`` uses the training run's test split (its ``split.json`` beside the
``checkpoints/`` folder when present, else the same seed and ratios); ``all`` scores
every image in ``data.root``. ``thresholds`` re-chooses the score threshold (and the
per-class thresholds of a model trained with them) on the run's *validation* split, as
training does, then scores the requested split at that choice: a threshold is never
picked on the figures it reports. ``threshold`` fixes one instead. ``fusion_method`` other than the checkpoint's, without
``threshold``, re-chooses on validation over the checkpoint's threshold grid (the
stored choice belongs to the trained fusion). ``tta_hflip`` turns
the mirror-image averaging of the semantic models and of Panoptic FPN's semantic head on
or off (default: as trained). ``tta_scales`` sets their multi-scale TTA (a list of
scales; :func:`fashionseg.model.tta.scale_average`); ``choose`` (or a list of candidate
lists) scores each candidate set of :data:`SCALE_CANDIDATES` on the run's validation
split, prints each one's validation mIoU and scores the requested split once, at the best.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from fashionseg.cli import UsageError, run_cli, user_errors
from fashionseg.files import write_json
from fashionseg.settings import check_settings

if TYPE_CHECKING:  # torch and Lightning load after the settings check: fast errors
    import lightning as L

    from fashionseg.data.datamodule import FashionDataModule

SPLITS = ("train", "val", "test", "all")
# tta_scales=choose: the candidate sets scored on validation (the first wins ties)
SCALE_CANDIDATES = ([1.0], [0.75, 1.0], [1.0, 1.25], [0.75, 1.0, 1.25], [0.5, 0.75, 1.0, 1.25, 1.5])


def run_manifest(ckpt: str | Path) -> Path | None:
    """The ``split.json`` of the run a checkpoint belongs to, if it is still there."""
    candidate = Path(ckpt).resolve().parent.parent / "split.json"
    return candidate if candidate.is_file() else None


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.ckpt`` on ``cfg.data``; write metrics into the run directory."""
    check_settings(cfg, "evaluate")
    split = cfg.data.split
    if split not in SPLITS:
        raise UsageError(f"unknown data.split {split!r}: choose one of {', '.join(SPLITS)}")
    thresholds = cfg.get("thresholds")
    if thresholds is not None and not isinstance(thresholds, ListConfig | list | tuple):
        thresholds = [thresholds]  # thresholds=0.4: a list of one
    if thresholds and cfg.get("threshold") is not None:
        raise UsageError(
            f"threshold={cfg.threshold} and thresholds={list(thresholds)}: give one "
            "(a fixed threshold, or a list to choose from on validation)"
        )
    from fashionseg.data.datamodule import FashionDataModule
    from fashionseg.model.checkpoint import module_from_checkpoint, read_checkpoint
    from fashionseg.reporting.run_results import write_results

    ckpt = read_checkpoint(cfg.ckpt)
    module = module_from_checkpoint(
        ckpt,
        cfg.ckpt,
        task=cfg.get("task") or None,
        threshold=cfg.get("threshold"),
        thresholds=thresholds,
        fusion=_fusion_override(cfg, ckpt),
        **_ap_instances(ckpt),
    )
    if cfg.get("tta_hflip") is not None:
        if not hasattr(module, "tta_hflip"):
            raise UsageError(
                f"{cfg.ckpt}: tta_hflip applies to the semantic models and Panoptic FPN's "
                "semantic head only, "
                f"not {module.hparams.net.get('arch', 'this model')!r}"
            )
        module.tta_hflip = bool(cfg.tta_hflip)
    candidates = scale_candidates(cfg.get("tta_scales"))
    if candidates is not None:
        if not hasattr(module, "tta_scales"):
            raise UsageError(
                f"{cfg.ckpt}: tta_scales applies to the semantic models and Panoptic FPN's "
                f"semantic head only, not {module.hparams.net.get('arch', 'this model')!r}"
            )
        module.tta_scales = candidates[0]
    overrides = {
        k: v
        for k, v in OmegaConf.to_container(cfg.data, resolve=True).items()
        if v is not None and k != "split"
    }
    data_kwargs = {**ckpt.get("datamodule_hyper_parameters", {}), **overrides}
    if split != "all" and data_kwargs.get("manifest") is None:
        data_kwargs["manifest"] = str(run_manifest(cfg.ckpt) or "") or None
    # the labelled root alone: extra (pseudo-labelled) training roots are not scored
    data_kwargs.update(task=module.task, generate=None, augment=False, extra_roots=[])
    datamodule = FashionDataModule(**data_kwargs)
    datamodule.setup("test")
    loader = datamodule.dataloader(split)
    trainer: L.Trainer = instantiate(cfg.trainer)
    out_dir = Path(cfg.paths.output_dir)
    if thresholds or (_other_fusion(cfg, ckpt) and getattr(module, "uses_threshold", False)):
        if not thresholds:
            print(
                f"fusion_method={cfg.fusion_method}: the checkpoint's threshold was chosen for "
                f"its own fusion; choosing again on validation ({len(module.hparams.thresholds)} "
                "thresholds)"
            )
        _rechoose_thresholds(module, datamodule, trainer, split, out_dir)
    if candidates is not None and len(candidates) > 1:
        _choose_scales(module, candidates, datamodule, trainer, split, out_dir)
    trainer.test(module, dataloaders=loader, verbose=False)
    module.take_over(trainer)  # the results of spawned processes (hardware=ddp_cpu)
    results = dict(module.test_results or {})
    results.update({"checkpoint": str(cfg.ckpt), "data_root": str(cfg.data.root), "split": split})
    if hasattr(module, "tta_scales"):
        results["tta"] = {"hflip": bool(module.tta_hflip), "scales": list(module.tta_scales)}
    table = write_results(results, module.task, out_dir, title=f"{split} ({module.task.name})")
    print(table)
    print(f"results in: {out_dir}")
    return results


def scale_candidates(value: Any) -> list[tuple[float, ...]] | None:
    """``tta_scales=``: None (as trained), one list of scales, ``choose`` (the
    :data:`SCALE_CANDIDATES`) or a list of candidate lists (UsageError otherwise)."""
    from fashionseg.model.tta import check_scales

    if value is None:
        return None
    if value == "choose":
        value = [list(c) for c in SCALE_CANDIDATES]
    if not isinstance(value, ListConfig | list | tuple):
        value = [value]
    value = list(value)
    nested = [list(v) if isinstance(v, ListConfig | list | tuple) else v for v in value]
    sets = nested if all(isinstance(v, list) for v in nested) else [nested]
    try:
        return [check_scales(s) for s in sets]
    except ValueError as err:
        raise UsageError(f"{err} (or tta_scales=choose)") from None


def _choose_scales(
    module: L.LightningModule,
    candidates: list[tuple[float, ...]],
    datamodule: FashionDataModule,
    trainer: L.Trainer,
    split: str,
    out_dir: Path,
) -> None:
    """Score each candidate set of scales on the run's validation split; keep the best.

    The module's buffers (a Mask R-CNN's validated thresholds) are restored after each
    validation: only the scales are chosen here."""
    import copy

    buffers = {k: v.clone() for k, v in module.named_buffers()}
    rows: dict[str, float] = {}
    for scales in candidates:
        module.tta_scales = scales
        module.last_val_result = None
        trainer.validate(module, dataloaders=datamodule.dataloader("val"), verbose=False)
        module.take_over(trainer)
        rows[",".join(f"{s:g}" for s in scales)] = float(module.last_val_result["val_miou"])
        module.load_state_dict(copy.deepcopy(buffers), strict=False)
    best = max(range(len(candidates)), key=lambda i: list(rows.values())[i])
    module.tta_scales = candidates[best]
    module.last_val_result = None
    print(f"tta_scales -> mIoU on the validation split ({len(datamodule.dataset('val'))} photos)")
    for name, value in rows.items():
        print(f"  [{name}]  {100 * value:6.2f}")
    print(f"chosen on validation: tta_scales={list(candidates[best])}")
    if split in ("val", "all"):
        print(f"note: data.split={split} holds the validation photos the scales were chosen on")
    write_json(
        out_dir / "tta_scales.json",
        {"split": "val", "miou": rows, "chosen": list(candidates[best])},
    )


def _ap_instances(ckpt: dict[str, Any]) -> dict[str, Any]:
    """For checkpoints written before the module kept them: AP's ground-truth instance
    mode and minimum area, from the run's data settings (empty when the module has them)."""
    hparams = ckpt.get("hyper_parameters", {})
    data = ckpt.get("datamodule_hyper_parameters", {})
    if "fusion" not in hparams or "instances" in hparams:
        return {}
    return {"instances": data.get("instances"), "min_area": data.get("min_area")}


def _other_fusion(cfg: DictConfig, ckpt: dict[str, Any]) -> bool:
    """Whether ``fusion_method=`` names a fusion other than the checkpoint's own, with no
    fixed ``threshold=``: its stored threshold(s) and validation figure belong to the
    other fusion, so they are chosen again on validation (never mixed)."""
    method = cfg.get("fusion_method")
    trained = ckpt.get("hyper_parameters", {}).get("fusion", {}).get("method")
    return method is not None and method != trained and cfg.get("threshold") is None


def _fusion_override(cfg: DictConfig, ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint's fusion settings with ``cfg.fusion_method`` as the method (None: as
    trained)."""
    method = cfg.get("fusion_method")
    if method is None:
        return None
    from fashionseg.fusion import ALL_METHODS, SEMANTIC_METHODS

    hparams = ckpt.get("hyper_parameters", {})
    if "fusion" not in hparams:
        raise UsageError(
            f"fusion_method={method}: {cfg.ckpt} is not a Mask R-CNN checkpoint (argmax only)"
        )
    if method not in ALL_METHODS:
        raise UsageError(f"fusion_method={method}: choose one of {', '.join(ALL_METHODS)}")
    if method in SEMANTIC_METHODS and not hparams.get("net", {}).get("semantic_head"):
        raise UsageError(
            f"fusion_method={method}: {cfg.ckpt} has no semantic head (trained without "
            "model.net.semantic_head=true)"
        )
    return {**hparams["fusion"], "method": str(method)}


def _rechoose_thresholds(
    module: L.LightningModule,
    datamodule: FashionDataModule,
    trainer: L.Trainer,
    split: str,
    out_dir: Path,
) -> None:
    """Sweep ``module.hparams.thresholds`` on the run's validation split and keep the choice."""
    if not getattr(module, "uses_threshold", False):
        raise UsageError(
            f"thresholds: {module.hparams.net.get('arch', 'this model')!r} labels pixels by "
            "argmax and has no score threshold to choose"
        )
    trainer.validate(module, dataloaders=datamodule.dataloader("val"), verbose=False)
    module.take_over(trainer)  # validation's choice, from spawned processes
    result = module.last_val_result
    choice = result["choice"]
    thresholds = module.hparams.thresholds
    rows = {
        f"{t:.2f}": v for t, v in zip(thresholds, result["miou"].reshape(-1).tolist(), strict=True)
    }
    print(
        f"score threshold -> mIoU on the validation split ({len(datamodule.dataset('val'))} photos)"
    )
    for t, v in rows.items():
        print(f"  {t}  {100 * v:6.2f}")
    print(f"chosen on validation: threshold {choice.threshold:.2f}", end="")
    if choice.use_class_thresholds:
        shown = "/".join(f"{t:.2f}" for t in choice.class_thresholds[1:])
        print(
            f", per class {shown} (val mIoU {100 * choice.val_miou_per_class:.2f} vs "
            f"{100 * choice.val_miou_global:.2f} global)",
            end="",
        )
    print()
    if split in ("val", "all"):
        print(f"note: data.split={split} holds the validation photos the threshold was chosen on")
    write_json(
        out_dir / "threshold_sweep.json",
        {"split": "val", "miou": rows, "choice": choice.as_dict()},
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
@user_errors
def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns mIoU."""
    return evaluate(cfg).get("miou")


def main() -> None:
    """Command-line entry point: the command line is checked, then Hydra runs."""
    run_cli(hydra_main, "evaluate", "evaluate")


if __name__ == "__main__":
    main()
