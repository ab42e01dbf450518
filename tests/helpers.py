"""Helpers shared by test modules: running the CLIs, fingerprinting folders, a tiny model."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L

# The smallest training recipe (conf/experiment/tiny.yaml), for tests that run train.
TINY = ["experiment=tiny"]

# A small untrained Mask R-CNN: enough to run predict end to end in a fraction of a second.
# Its mask head is one 3x3 conv of 16 channels, not four of 256: on an untrained model's
# dozens of detections torchvision's head was 85 % of a prediction's CPU.
TINY_NET = {
    "arch": "maskrcnn_mobilenet_v3_large_fpn",
    "weights": "none",
    "min_size": 32,
    "max_size": 32,
    "mask_head_channels": [16],
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
    return succeeded(proc)


def succeeded(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """``proc``, insisting that it exited 0 (its output's tail in the message if not)."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def one_line_error(module: str, *args: str, cwd: Path) -> str:
    """Run a CLI that must fail on the user's input: exit 2, no traceback; its last line."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    return last_error_line(proc)


def last_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The last line of a failed run's stderr, insisting on exit 2 and no traceback."""
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def call_main(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` in this process (``runpy``, as ``-m`` runs it), stdout
    and stderr captured, the exit status taken from ``SystemExit``.

    For tests of what a command does with its arguments (errors, exit status, outputs)
    rather than of the process itself: a new Python spends ~5 s of CPU importing torch and
    Lightning before it reads its first argument. What a run changes in this process is
    put back: argv, environment, working directory, random states (``seed_everything``
    sets them), Hydra's global state, the root logger's handlers.
    An exception other than ``SystemExit`` propagates (a new Python would print its
    traceback and exit 1).
    """
    import random

    import numpy as np
    import torch
    from hydra.core.global_hydra import GlobalHydra

    rng = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    env = dict(os.environ)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    argv, where = sys.argv, os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        sys.argv = [module, *args]  # run_module puts the module's file in argv[0]
        if cwd is not None:
            os.chdir(cwd)
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            warnings.catch_warnings(),
        ):
            # the module is imported already (by the test): runpy warns, and runs it anew
            warnings.filterwarnings("ignore", ".*found in sys.modules", RuntimeWarning)
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as exit_:
                if exit_.code is None or isinstance(exit_.code, int):
                    code = exit_.code or 0
                else:  # sys.exit("message"): Python prints it and exits 1
                    print(exit_.code, file=sys.stderr)
                    code = 1
    finally:
        sys.argv = argv
        os.chdir(where)
        os.environ.clear()
        os.environ.update(env)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.random.set_rng_state(rng[2])
        GlobalHydra.instance().clear()
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def run_in_process(
    module: str, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """:func:`run` without a new Python (:func:`call_main`): insist that it succeeds."""
    return succeeded(call_main(module, *args, cwd=cwd))


def one_line_error_in_process(module: str, *args: str, cwd: Path | None = None) -> str:
    """:func:`one_line_error` without a new Python (:func:`call_main`): exit 2, no
    traceback; the last line of stderr."""
    return last_error_line(call_main(module, *args, cwd=cwd))


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


def colour_dataset(root: Path, count: int = 6) -> Path:
    """Photos of 16 x 16 blocks whose colour tells their class (plus noise): learnable in
    a few steps, unlike noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (7, 3))
    for sub in ("images", "clothes"):
        (root / sub).mkdir(parents=True)
    for i in range(count):
        classes = rng.integers(0, 7, (3, 4)).repeat(16, 0).repeat(16, 1)
        noise = rng.integers(-40, 40, (48, 64, 3))
        photo = np.clip(colours[classes] + noise, 0, 255).astype(np.uint8)
        Image.fromarray(photo).save(root / "images" / f"00{i}.png")
        Image.fromarray(classes.astype(np.uint8)).save(root / "clothes" / f"00{i}.png")
    return root


def train_teacher(root: Path, steps: int = 30) -> Path:
    """A tiny LRASPP trained for ``steps`` steps on :func:`colour_dataset` photos, saved as
    training leaves a run: ``root/data/`` (the labelled photos), ``root/run/split.json``
    and ``root/run/checkpoints/last.ckpt`` (returned)."""
    import json

    import torch

    from fashionseg.data.io import read_image, read_mask
    from fashionseg.model.semantic import SemanticModule

    data = colour_dataset(root / "data")
    torch.manual_seed(0)
    net = {"arch": "lraspp_mobilenet_v3_large", "weights": "none", "min_size": 48, "max_size": 64}
    module = SemanticModule(task="clothing", net=net)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    images = [read_image(data / "images" / f"00{i}.png").float() / 255 for i in range(3)]
    labels = [
        torch.from_numpy(read_mask(data / "clothes" / f"00{i}.png", "clothing")).long()
        for i in range(3)
    ]
    module.train()
    for _ in range(steps):  # a few steps: confident on some pixels, not on others
        x, y, _ = module._batch(images, labels)
        loss = torch.nn.functional.cross_entropy(module.net(x)["out"], y, ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    split = {"train": ["000", "001", "002"], "val": ["003", "004"], "test": ["005"]}
    (run / "split.json").write_text(json.dumps(split))
    ckpt = run / "checkpoints" / "last.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "datamodule_hyper_parameters": {"root": str(data), "ignore_index": 255},
        },
        ckpt,
    )
    return ckpt
