"""Test configuration: float64 everywhere (laws span 1e6–1e13), and where the shared data lives."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)


def _share_compiled_kernels() -> None:
    """Keep compiled kernels on disk (JAX's persistent compilation cache) for this test run.

    Most of the suite's time is XLA compilation, and the same kernels are compiled again and
    again: by every `jaxscale` command that tests/test_cli.py runs in a fresh process, and
    in-process after `_release_compiled_kernels` below drops them. A kernel loaded from the
    cache is the same executable, so results are unchanged.
    The directory is this run's own (deleted at exit) unless JAX_COMPILATION_CACHE_DIR is set.
    Subprocesses inherit it, and so do pytest-xdist's workers (`pytest -n auto`): they share
    the directory, so a kernel one worker compiled the others load. CI's default and slow runs
    keep separate directories: their kernels barely overlap. Figures: benchmarks/RESULTS.md,
    "Test suite".
    """
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        path = tempfile.mkdtemp(prefix="jaxscale-tests-xla-")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs", float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"])
    )


_share_compiled_kernels()

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
    compiler late in the run; jax.clear_caches() releases them. Clearing after every module
    would compile kernels again for nothing, so it clears once a sixth of the limit is used
    (or always, where /proc cannot tell).
    """
    yield
    try:
        with open("/proc/self/maps") as maps:
            in_use = sum(1 for _ in maps)
    except OSError:
        in_use = None
    if in_use is None or in_use > 10_000:
        jax.clear_caches()
