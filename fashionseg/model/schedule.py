"""Learning-rate schedules from plain config: optional linear warmup, then a decay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    SequentialLR,
)

SCHEDULES = ("constant", "cosine", "step")


def build_scheduler(
    optimizer: Optimizer, cfg: Mapping[str, Any] | None, total_steps: int
) -> LRScheduler | None:
    """A per-step LR schedule, or ``None`` for a constant LR without warmup.

    ``cfg`` keys: ``name`` (constant | cosine | step), ``warmup_steps`` (linear ramp from
    ``warmup_factor`` x lr), ``min_lr_ratio`` (cosine floor), ``milestones`` (fractions of
    the run for ``step``) and ``gamma``.
    """
    cfg = dict(cfg or {})
    name = cfg.get("name", "constant")
    if name not in SCHEDULES:
        raise ValueError(f"unknown scheduler.name {name!r}: choose one of {', '.join(SCHEDULES)}")
    total_steps = max(int(total_steps), 1)
    warmup = min(int(cfg.get("warmup_steps", 0)), total_steps - 1)
    rest = max(total_steps - warmup, 1)
    if name == "cosine":
        base_lr = optimizer.param_groups[0]["lr"]
        eta_min = base_lr * float(cfg.get("min_lr_ratio", 0.0))
        decay: LRScheduler | None = CosineAnnealingLR(optimizer, T_max=rest, eta_min=eta_min)
    elif name == "step":
        milestones = [max(int(f * rest), 1) for f in cfg.get("milestones", (0.67, 0.89))]
        decay = MultiStepLR(optimizer, milestones=milestones, gamma=float(cfg.get("gamma", 0.1)))
    else:
        decay = None
    if warmup <= 0:
        return decay
    ramp = LinearLR(
        optimizer,
        start_factor=float(cfg.get("warmup_factor", 0.001)),
        end_factor=1.0,
        total_iters=warmup,
    )
    if decay is None:
        decay = ConstantLR(optimizer, factor=1.0, total_iters=0)
    return SequentialLR(optimizer, [ramp, decay], milestones=[warmup])
