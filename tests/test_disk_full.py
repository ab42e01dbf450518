"""A full disk during training: one line naming the folder, exit 2, and the last good
checkpoint as it was (issue 27, item 8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import TINY

# train in a child process whose checkpoint saving fails with ENOSPC from its third save
# on (the first epoch writes the best and last.ckpt; the second epoch's save fails)
CHILD = """
import errno, sys
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
saves = []
original = TorchCheckpointIO.save_checkpoint
def save_checkpoint(self, checkpoint, path, storage_options=None):
    saves.append(str(path))
    if len(saves) > 2:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return original(self, checkpoint, path, storage_options)
TorchCheckpointIO.save_checkpoint = save_checkpoint
import runpy
sys.argv = ["fashionseg.train", *sys.argv[1:]]
runpy.run_module("fashionseg.train", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    from fashionseg.data.synthetic import generate

    root = generate(tmp_path / "data", num_images=6, seed=4, height=48, width=32)
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-c",
        CHILD,
        "task=clothing",
        f"data.root={root}",
        *TINY,
        "trainer.max_epochs=2",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: {run_dir / 'checkpoints'}: no space left on device")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0 and last["global_step"] > 0  # the first epoch's, intact
    assert not (run_dir / "checkpoints" / "interrupted.ckpt").exists()
