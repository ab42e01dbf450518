"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One intra-op thread per process (the CLIs the tests start inherit it): the tests' tiny
# photos give torch's thread pool nothing to share, and on a 2-core machine two threads
# per process mostly wait for each other (one tiny prediction: 0.09 s of CPU with one
# thread, 0.6-1.8 s with two while the other core is busy). OMP_NUM_THREADS set by the
# caller wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


# Fixtures that read ../shared/data: every test using one (directly or through another
# fixture) is marked ``shared`` at collection, so ``-m "not shared"`` leaves them all out.
SHARED_FIXTURES = frozenset({"ccp600", "ccp_raw"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a ``../shared`` fixture with ``shared``."""
    for item in items:
        if SHARED_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent (the real data lives beside the project)")
    return path


@pytest.fixture(scope="session")
def ccp600() -> Path:
    """The 600-photo dataset in our layout."""
    return _shared("ccp-fashion600")


@pytest.fixture(scope="session")
def ccp_raw() -> Path:
    """16 files in CCP's original layout."""
    return _shared("ccp-raw-sample")


def write_tiny_dataset(root: Path, num_images: int = 6, width: int = 8, height: int = 6) -> Path:
    """A tiny dataset in the project layout: random RGB PNG photos, blocky masks."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("images", "person", "clothes"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(num_images):
        stem = f"{i:03d}"
        photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(photo).save(root / "images" / f"{stem}.png")
        clothes = np.zeros((height, width), dtype=np.uint8)
        clothes[1 : height - 1, 2 : width - 2] = rng.integers(1, 7, (height - 2, width - 4))
        Image.fromarray(clothes).save(root / "clothes" / f"{stem}.png")
        person = (clothes > 0).astype(np.uint8)
        Image.fromarray(person).save(root / "person" / f"{stem}.png")
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Six 8x6 samples (stems 000..005) under tmp_path/data."""
    return write_tiny_dataset(tmp_path / "data")


@pytest.fixture
def make_tiny_dataset():
    """The tiny dataset writer: ``make_tiny_dataset(root, num_images=6, width=8, height=6)``."""
    return write_tiny_dataset


@pytest.fixture(scope="session")
def untrained_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights-only checkpoint of an untrained tiny clothing model (``tests/helpers.py``)."""
    from helpers import save_untrained_checkpoint

    return save_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "untrained.ckpt")


@pytest.fixture(scope="session")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny semantic model trained for a few steps (``helpers.train_teacher``), shared:
    ``data/`` (its labelled photos) beside ``run/checkpoints/last.ckpt`` (returned).
    Read-only: a test that changes the run copies it first."""
    from helpers import train_teacher

    return train_teacher(tmp_path_factory.mktemp("teacher"))
