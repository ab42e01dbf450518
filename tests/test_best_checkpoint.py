"""BestCheckpoint carries the best checkpoints of a resumed run into the new run
directory: once (rank 0, the others wait), and never adopting a file it did not carry
(issue 27, item 7)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fashionseg.callbacks import BestCheckpoint


def _state(old: Path, scores: dict[str, float]) -> dict:
    best_k = {str(old / name): torch.tensor(score) for name, score in scores.items()}
    best = max(best_k, key=lambda p: float(best_k[p]))
    return {
        "monitor": "val/miou",
        "best_model_score": best_k[best],
        "best_model_path": best,
        "current_score": best_k[best],
        "dirpath": str(old),
        "best_k_models": best_k,
        "kth_best_model_path": best,
        "kth_value": best_k[best],
        "last_model_path": "",
    }


def _old_run(tmp_path: Path, count: int = 1) -> tuple[Path, dict[str, float]]:
    old = tmp_path / "old" / "checkpoints"
    old.mkdir(parents=True)
    scores = {f"epoch{i:03d}-miou0.{i:04d}.ckpt": i / 10000 for i in range(count)}
    for name in scores:
        (old / name).write_bytes(f"carried {name}".encode())
    return old, scores


def test_a_file_of_the_same_name_in_a_reused_directory_is_not_adopted(tmp_path: Path) -> None:
    old, scores = _old_run(tmp_path)
    (name,) = scores
    new = tmp_path / "new" / "checkpoints"
    new.mkdir(parents=True)
    (new / name).write_bytes(b"another run's file")  # a reused run directory
    callback = BestCheckpoint(dirpath=str(new), monitor="val/miou", mode="max", save_top_k=1)
    callback.load_state_dict(_state(old, scores))
    best = Path(callback.best_model_path)
    assert best.parent == new and best != new / name
    assert best.read_bytes() == f"carried {name}".encode()
    assert (new / name).read_bytes() == b"another run's file"  # left as it was
    assert list(callback.best_k_models) == [str(best)]


def _rank(rank: int, old: str, new: str, scores: dict, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        callback = BestCheckpoint(dirpath=new, monitor="val/miou", mode="max", save_top_k=50)
        dist.barrier()  # both ranks restore at once, as a resumed DDP run does
        callback.load_state_dict(_state(Path(old), scores))
        Path(out, f"rank{rank}").write_text(
            "\n".join([callback.best_model_path, *sorted(callback.best_k_models)])
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_resuming_carry_every_file_once_and_agree(tmp_path: Path) -> None:
    # before: both ranks linked; the one losing the race copied onto the link just made
    # (shutil.SameFileError) -- with 50 files the race is all but certain
    import socket

    old, scores = _old_run(tmp_path, count=50)
    new = tmp_path / "new" / "checkpoints"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_rank, args=(str(old), str(new), scores, port, str(tmp_path)), nprocs=2)
    zero, one = ((tmp_path / f"rank{r}").read_text() for r in (0, 1))
    assert zero == one
    assert sorted(p.name for p in new.iterdir()) == sorted(scores)
    for name in scores:
        assert os.path.samefile(old / name, new / name)  # linked, once
