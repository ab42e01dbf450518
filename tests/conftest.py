"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


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
