"""Helpers shared by test modules: running the CLIs, fingerprinting folders, a tiny model."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import lightning as L

# The smallest training recipe (conf/experiment/tiny.yaml), for tests that run train.
TINY = ["experiment=tiny"]

# A small untrained Mask R-CNN: enough to run predict end to end in seconds.
TINY_NET = {
    "arch": "maskrcnn_mobilenet_v3_large_fpn",
    "weights": "none",
    "min_size": 32,
    "max_size": 32,
}


def run(module: str, *args: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` and insist that it succeeds."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,  # type: ignore[call-overload]
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def one_line_error(module: str, *args: str, cwd: Path) -> str:
    """Run a CLI that must fail on the user's input: exit 2, no traceback; its last line."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def tree_digest(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (hidden ones too), and
    ``{relative path: "<dir>"}`` for folders: equal before and after means nothing changed.
    """
    digest = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            digest[str(Path(dirpath, name).relative_to(root))] = "<dir>"
        for name in filenames:
            path = Path(dirpath, name)
            digest[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def save_untrained_checkpoint(path: Path, task: str = "clothing") -> Path:
    """A weights-only checkpoint of an untrained tiny model, as predict and evaluate read it."""
    import torch

    from fashionseg.model.module import SegmentationModule

    module = SegmentationModule(task=task, net=TINY_NET)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def quiet_trainer(**kwargs: object) -> L.Trainer:
    """A CPU Trainer without logger, checkpoints, progress bar or summary (module tests)."""
    settings = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **kwargs,
    }
    return L.Trainer(**settings)
