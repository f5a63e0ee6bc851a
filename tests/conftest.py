"""Test configuration: float64 everywhere (laws span 1e6–1e13), and where the shared data lives."""

from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_file(relative: str) -> Path:
    """A file of ``../shared/data``, or skip the test (with the reason) where it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not found: the shared datasets are only beside the repo in the dev/CI checkout")
    return path
