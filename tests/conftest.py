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


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_kernels():
    """Drop JAX's compiled executables after each test module.

    Each XLA:CPU executable keeps hundreds of memory mappings (a fit kernel ~550), and the
    kernel is compiled again for every new data shape. The whole suite reached Linux's default
    limit of 65,530 mappings per process (vm.max_map_count) and segfaulted inside XLA's
    compiler late in the run; jax.clear_caches() releases them (6,079 mappings back to 852).
    Clearing after every module made the suite 25% slower (kernels compiled again), so it
    clears once a sixth of the limit is used (or always, where /proc cannot tell).
    """
    yield
    try:
        with open("/proc/self/maps") as maps:
            in_use = sum(1 for _ in maps)
    except OSError:
        in_use = None
    if in_use is None or in_use > 10_000:
        jax.clear_caches()
