"""Settings checked before any work: one exact line per mistake, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import one_line_error_in_process

from fashionseg.cli import QUOTE_HINT, UsageError, check_command_line

DATA = ["experiment=tiny", "data.root=/nowhere"]
EVAL = ["ckpt=/nowhere/last.ckpt", "data.root=/nowhere"]
PREDICT = ["ckpt=/nowhere/last.ckpt", "input=/nowhere", "output=/nowhere-out"]
CASES = [
    # (cli, arguments, the exact message after "error: ")
    (
        "train",
        [*DATA, "model.threshold=2"],
        "model.threshold=2: a score threshold must be a number in [0, 1]",
    ),
    (
        "evaluate",
        [*EVAL, "threshold=2"],
        "threshold=2: a score threshold must be a number in [0, 1]",
    ),
    (
        "evaluate",
        [*EVAL, "threshold=-5"],
        "threshold=-5: a score threshold must be a number in [0, 1]",
    ),
    (
        "predict",
        [*PREDICT, "threshold=1.5"],
        "threshold=1.5: a score threshold must be a number in [0, 1]",
    ),
    (
        "evaluate",
        [*EVAL, "thresholds=[0.3,abc]"],
        "thresholds=[0.3,abc]: 'abc' is not a score threshold in [0, 1]",
    ),
    (
        "train",
        [*DATA, "fusion.thresholds=[0.3,1.2]"],
        "fusion.thresholds=[0.3,1.2]: 1.2 is not a score threshold in [0, 1]",
    ),
    ("train", [*DATA, "trainer.max_epochs=0"], "trainer.max_epochs=0: must be a whole number >= 1"),
    ("train", [*DATA, "data.batch_size=0"], "data.batch_size=0: must be a whole number >= 1"),
    ("evaluate", [*EVAL, "data.batch_size=0"], "data.batch_size=0: must be a whole number >= 1"),
    ("train", [*DATA, "data.num_workers=-1"], "data.num_workers=-1: must be a whole number >= 0"),
    (
        "predict",
        [*PREDICT, "predict.batch_size=0"],
        "predict.batch_size=0: must be a whole number >= 1",
    ),
    (
        "predict",
        [*PREDICT, "predict.num_workers=-1"],
        "predict.num_workers=-1: must be a whole number >= 0",
    ),
    (
        "train",
        [*DATA, "optimizer.lr=-0.01"],
        "optimizer.lr=-0.01: the learning rate must be a number > 0",
    ),
    ("train", [*DATA, "optimizer.lr=0"], "optimizer.lr=0: the learning rate must be a number > 0"),
    (
        "train",
        [*DATA, "optimizer=sgd", "optimizer.momentum=1.5"],
        "optimizer.momentum=1.5: must be a number in [0, 1)",
    ),
    (
        "train",
        [*DATA, "data.split=[0.5,0.1,0.1]"],
        "data.split=[0.5,0.1,0.1]: the ratios sum to 0.7, not 1",
    ),
    (
        "train",
        [*DATA, "data.split=[0.5,0.5]"],
        "data.split=[0.5,0.5]: need three non-negative ratios [train, val, test] summing to 1",
    ),
    ("train", ["data=fashion"], "data.root: not given (add data.root=DIR to the command)"),
    ("evaluate", ["data.root=/x"], "ckpt: not given (add ckpt=PATH to the command)"),
    ("predict", ["ckpt=a", "input=b"], "output: not given (add output=PATH to the command)"),
    ("train", [*DATA, "seed=abc"], "seed=abc: must be a whole number or null"),
    ("train", [*DATA, "data.hflip=2"], "data.hflip=2: must be a number in [0, 1]"),
    ("train", [*DATA, "data.color_jitter=-1"], "data.color_jitter=-1: must be a number >= 0"),
    (
        "train",
        [*DATA, "data.crop=[0.9,0.5]"],
        "data.crop=[0.9,0.5]: need [min, max] with 0 < min <= max <= 1",
    ),
    (
        "train",
        [*DATA, "data.scale_jitter=[0,1]"],
        "data.scale_jitter=[0,1]: need [min, max] with 0 < min <= max",
    ),
    (
        "train",
        [*DATA, "scheduler.warmup_steps=-3"],
        "scheduler.warmup_steps=-3: must be a whole number >= 0",
    ),
    (
        "train",
        [*DATA, "scheduler.name=foo"],
        "scheduler.name=foo: choose one of constant, cosine, step",
    ),
    (
        "train",
        [*DATA, "fusion.method=foo"],
        "fusion.method=foo: choose one of seed, score_order, argmax, panoptic, semantic",
    ),
    (
        "train",
        [*DATA, "optimizer._target_=foo.Bar"],
        "optimizer._target_=foo.Bar: no such optimizer class (e.g. torch.optim.SGD)",
    ),
    (
        "train",
        [*DATA, "ckpt_path=/nowhere/x.ckpt"],
        "ckpt_path=/nowhere/x.ckpt: no such checkpoint file",
    ),
    (
        "train",
        [*DATA, "foo=1"],
        "foo=1: unknown key 'foo' (list the keys: python -m fashionseg.train --cfg job; "
        "add a new one with +foo=1)",
    ),
    (
        "train",
        [*DATA, "model=nope"],
        "model=nope: In 'train': Could not find 'model/nope' (options: deeplabv3, "
        "lraspp_mobilenet, maskrcnn_mobilenet, maskrcnn_panoptic, maskrcnn_r18_fpn, "
        "maskrcnn_r50_fpn, maskrcnn_r50_fpn_v2)",
    ),
    (
        "train",
        ["data.root=/my photos (2024)"],
        "data.root=/my photos (2024): Hydra cannot parse it (mismatched input ' (' expecting "
        f"<EOF>); {QUOTE_HINT}",
    ),
    (
        "train",
        ["data.root=~/photos"],
        "data.root=~/photos: Hydra cannot parse it (LexerNoViableAltException: "
        f"data.root=~/photos); {QUOTE_HINT}",
    ),
]


@pytest.mark.parametrize(
    ("cli", "args", "message"), CASES, ids=[" ".join(c[1][-1:]) for c in CASES]
)
def test_each_mistake_is_one_exact_line(cli: str, args: list[str], message: str) -> None:
    with pytest.raises(UsageError) as err:
        check_command_line(args, cli, cli)
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_good_settings_and_hydra_flags_pass() -> None:
    check_command_line([*DATA, "data.split=[0.6,0.2,0.2]", "model.threshold=0.3"], "train", "train")
    check_command_line(['data.root="/my photos (2024)"', "experiment=tiny"], "train", "train")
    check_command_line(["--cfg", "job", "foo=1"], "train", "train")  # Hydra's business
    check_command_line(["-m", "optimizer.lr=1e-3,1e-2", *DATA], "train", "train")
    check_command_line(["trainer.max_epochs=0", "train=false", *DATA], "train", "train")


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        (
            "fashionseg.train",
            [*DATA, "data.batch_size=0"],
            "data.batch_size=0: must be a whole number >= 1",
        ),
        (
            "fashionseg.evaluate",
            [*EVAL, "threshold=2"],
            "threshold=2: a score threshold must be a number in [0, 1]",
        ),
        (
            "fashionseg.predict",
            [*PREDICT, "foo=1"],
            "foo=1: unknown key 'foo' (list the keys: python -m fashionseg.predict --cfg job; add a new one with +foo=1)",
        ),
    ],
)
def test_the_cli_prints_it_once_exits_2_and_creates_no_run(
    tmp_path: Path, module: str, args: list[str], message: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, f"paths.log_dir={tmp_path / 'logs'}"]
        if module == "fashionseg.train"
        else [sys.executable, "-m", module, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {message}"]  # once, nothing else
    assert list(tmp_path.iterdir()) == []  # no run directory, no logs


def test_a_value_the_model_refuses_is_one_line(tmp_path: Path) -> None:
    """Values only the built class can judge (its own ValueError) end the same way."""
    line = one_line_error_in_process(  # the CLI in this process: no new Python importing torch
        "fashionseg.train",
        *DATA,
        "model.net.arch=foo",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert line.startswith(
        "error: unknown model.net.arch 'foo': choose one of maskrcnn_resnet50_fpn"
    )


HEAVY = ("torch", "torchvision", "lightning")
IMPORTS_ON_ERROR = """
import runpy, sys
sys.argv = [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_module(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    print(exit.code, *sorted(m for m in {heavy} if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("fashionseg.train", ["data.batch_size=0"]),
        ("fashionseg.evaluate", [*EVAL, "threshold=2"]),
        ("fashionseg.predict", [*PREDICT, "predict.batch_size=0"]),
    ],
)
def test_a_settings_error_comes_before_torch_and_lightning_load(
    tmp_path: Path, module: str, args: list[str]
) -> None:
    """A mistake on the command line is reported in well under a second: the CLI checks
    the settings before it imports torch or Lightning (seconds on a small machine)."""
    proc = subprocess.run(
        [sys.executable, "-c", IMPORTS_ON_ERROR.format(heavy=HEAVY), module, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stdout.split() == ["2"], proc.stdout + proc.stderr  # exit 2, none of HEAVY
    assert proc.stderr.strip().startswith("error: ")
