"""Lightning callbacks of the training run (configured in ``conf/callbacks/``)."""

from __future__ import annotations

import os
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities import rank_zero_warn


class RNGState(L.Callback):
    """Keep the Python, NumPy and torch random states in every checkpoint.

    Lightning restores weights, optimizer, scheduler and loop counters on resume but
    not the random generators, so a resumed run would shuffle and augment its next
    epochs differently from an uninterrupted one. The states are stored as tensors and
    plain Python values, so checkpoints stay loadable with ``weights_only=True``.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "kind": str(kind),
                "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached),
            },
            "python": {"version": version, "internal": list(internal), "gauss": gauss},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        npy = state_dict["numpy"]
        np.random.set_state(
            (
                npy["kind"],
                npy["keys"].numpy().astype(np.uint32),
                npy["pos"],
                npy["has_gauss"],
                npy["cached_gaussian"],
            )
        )
        py = state_dict["python"]
        random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class InterruptCheckpoint(Checkpoint):
    """Save ``dirpath/filename.ckpt`` on Ctrl-C or a crash, but never a diverged model.

    A non-finite loss, or weights that already hold NaN/inf, would make a checkpoint
    that ``resume=true`` picks up and cannot train from; then the last good
    ``last.ckpt`` is what a user should continue from, so nothing is written. A run that
    ends normally removes the file, so a stale one never outlives the run that finished.

    Not Lightning's ``OnExceptionCheckpoint`` (which does the same saving): while one of
    those is registered, Lightning turns ``fit(ckpt_path=None)`` into ``"last"``, warns
    twice in every fresh run and silently resumes from any checkpoint already in a reused
    run directory, overriding ``resume=false``. Here resuming is ``resume=``'s job.
    """

    def __init__(self, dirpath: str, filename: str = "interrupted") -> None:
        super().__init__()
        if not filename:
            raise ValueError("InterruptCheckpoint needs a file name")
        self.ckpt_path = os.path.join(dirpath, f"{filename}.ckpt")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        from fashionseg.model.module import NonFiniteLossError

        if isinstance(exception, NonFiniteLossError) or not all(
            torch.isfinite(p).all() for p in pl_module.parameters()
        ):
            rank_zero_warn("training diverged: no interrupted.ckpt; last.ckpt is the last good one")
            return
        trainer.save_checkpoint(self.ckpt_path)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        trainer.strategy.remove_checkpoint(self.ckpt_path)
