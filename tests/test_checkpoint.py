"""Checkpoints are read weights-only: pickled code is refused, never run."""

from __future__ import annotations

import pathlib
from pathlib import Path

import pytest
import torch
from helpers import call_main

from fashionseg.model.checkpoint import CheckpointError, load_module


class _Payload:
    """Unpickling this creates a file (stands in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture()
def malicious(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"task": _Payload(marker)}}, ckpt)
    assert not marker.exists()
    return ckpt, marker


def test_load_refuses_a_pickle_payload(malicious: tuple[Path, Path]) -> None:
    ckpt, marker = malicious
    with pytest.raises(CheckpointError, match="refused"):
        load_module(ckpt)
    assert not marker.exists()


def test_evaluate_cli_refuses_it_without_running_it(
    malicious: tuple[Path, Path], tmp_path: Path
) -> None:
    ckpt, marker = malicious
    proc = call_main(  # in this process: the payload would run here just the same
        "fashionseg.evaluate",
        f"ckpt={ckpt}",
        f"data.root={tmp_path}",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert proc.returncode != 0
    assert f"{ckpt}: refused" in proc.stderr
    assert not marker.exists()


def test_missing_and_foreign_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_module(tmp_path / "nope.ckpt")
    other = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a fashionseg checkpoint"):
        load_module(other)


SEMANTIC_NET = {"arch": "lraspp_mobilenet_v3_large", "weights": "none", "min_size": 40}


def test_the_module_class_is_the_saved_family_not_a_guess_from_the_arch(tmp_path: Path) -> None:
    from fashionseg.model.checkpoint import module_class
    from fashionseg.model.module import MaskRCNNModule
    from fashionseg.model.semantic import SemanticModule

    # the family decides, whatever the arch's name says; without one, the arch does
    assert (
        module_class("x", {"family": "semantic", "net": {"arch": "maskrcnn_x"}}) is SemanticModule
    )
    assert module_class("x", {"family": "maskrcnn", "net": SEMANTIC_NET}) is MaskRCNNModule
    assert module_class("x", {"net": SEMANTIC_NET}) is SemanticModule
    assert module_class("x", {"net": {"arch": "maskrcnn_x"}}) is MaskRCNNModule
    with pytest.raises(CheckpointError, match="x: unknown model family 'unet'.*maskrcnn, semantic"):
        module_class("x", {"family": "unet", "net": SEMANTIC_NET})

    module = SemanticModule(task="clothing", net=SEMANTIC_NET)
    assert module.hparams["family"] == "semantic"
    assert MaskRCNNModule(task="clothing", net={"weights": "none"}).hparams["family"] == "maskrcnn"
    with pytest.raises(ValueError, match="'semantic' model given to MaskRCNNModule"):
        MaskRCNNModule(task="clothing", net={"weights": "none"}, family="semantic")
    new, old = tmp_path / "new.ckpt", tmp_path / "old.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, new)
    hparams = {k: v for k, v in module.hparams.items() if k != "family"}  # before families
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams}, old)
    for path in (new, old):
        loaded = load_module(path)
        assert type(loaded) is SemanticModule and loaded.hparams["family"] == "semantic"
