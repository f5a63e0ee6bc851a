"""Per-backend sizes and kernel calls side by side: the machine changes the speed, never the result."""

import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxscale as js
from benchmarks.groups_data import make_archive
from jaxscale import backends, batches, engine, specs


def test_sizes_by_backend():
    assert backends.sizes("cpu") == backends.CPU
    for name in ("gpu", "cuda", "rocm"):
        assert backends.sizes(name) == backends.GPU
    assert backends.sizes("tpu") == backends.CPU  # not measured: the CPU's sizes
    assert backends.sizes() == backends.sizes(jax.default_backend())
    # A GPU steps all its lanes as one block; a CPU packs them in blocks (RESULTS.md, "Lane packing").
    assert engine.lane_layout(16384, grouped=True, backend="gpu") == (16384, 1)
    assert engine.lane_layout(16384, grouped=True, backend="cpu") == (32, 512)
    # The defaults reach the spec.
    spec = specs.make_spec(js.get_law("chinchilla"))
    assert (spec.lanes, spec.chunk_size) == (backends.sizes().lanes, backends.sizes().chunk_size)
    given = specs.make_spec(js.get_law("chinchilla"), lanes=64, chunk_size=10)
    assert (given.lanes, given.chunk_size) == (64, 10)


def test_grouped_kernels_take_the_backends_compile_options_and_the_others_xlas_defaults():
    """backends.Sizes.grouped_compile (RESULTS.md, "Compile time"): the CPU's grouped kernels
    compile with XLA's older fusion emitters and LLVM's optimisation level 1, a GPU's and every
    shared-data kernel with XLA's defaults; one jitted kernel per set of options."""
    options = (("xla_cpu_use_fusion_emitters", False), ("xla_backend_optimization_level", 1))
    assert backends.CPU.grouped_compile == options
    assert backends.GPU.grouped_compile == ()
    assert engine.chunk_solver(grouped=False) is engine.solve_chunk
    grouped = engine.chunk_solver(grouped=True)
    assert (grouped is engine.solve_chunk) == (backends.sizes().grouped_compile == ())
    assert engine.chunk_solver(grouped=True) is grouped
    # A grouped call pads to at least GROUPED_MIN_ROWS groups: fewer compile to other last bits.
    assert batches.call_chunk(1, 2048, grouped=True) == batches.call_chunk(3, 2048, grouped=True) == 4
    assert batches.call_chunk(5, 2048, grouped=True) == 5 and batches.call_chunk(1, 2048) == 1


def test_side_by_side_keeps_order_and_the_callers_float64_switch():
    def slow_square(x):
        time.sleep(0.02 * (5 - x))  # later items finish first
        return x * x

    assert list(batches.side_by_side(slow_square, range(5), at_once=3)) == [0, 1, 4, 9, 16]
    for x64, dtype in ((True, jnp.float64), (False, jnp.float32)):
        with jax.enable_x64(x64):
            dtypes = list(batches.side_by_side(lambda _: jnp.ones(2).dtype, range(4), at_once=2))
        assert dtypes == [dtype] * 4


def test_side_by_side_raises_the_first_error_and_starts_nothing_more():
    ran = []
    lock = threading.Lock()

    def item(i):
        with lock:
            ran.append(i)
        if i == 0:
            raise ValueError("bad group 0")
        time.sleep(0.2)
        return i

    with pytest.raises(ValueError, match="bad group 0"):
        list(batches.side_by_side(item, range(20), at_once=2))
    time.sleep(0.5)  # whatever was running has ended
    # Item 0 raised at once; at most the items already taken by the two threads ran (1, and 2
    # if a thread took it before the pool was shut), never the 17 queued behind them.
    assert len(ran) <= 4, ran


def _at_once(monkeypatch, n):
    monkeypatch.setattr(backends, "CPU", backends.CPU._replace(calls_at_once=n))


def test_groups_and_resamples_identical_whatever_the_calls_at_once(monkeypatch):
    """fit_groups' buckets and the bootstrap's chunks, one call at a time and three at a time
    (float64 and a float32 search, whose threads must keep x64 off): the same bits."""
    df, _ = make_archive(24, min_points=10, max_points=70, seed=5)  # buckets of 16-128 runs: 5, 6, 11, 2 groups
    runs = js.datasets.chinchilla()
    out = {}
    for n in (1, 3):
        _at_once(monkeypatch, n)
        table = js.fit_groups(df, by="group", chunk_size=4)  # several calls per bucket
        boot = js.bootstrap(runs, n_resamples=30, seed=2, chunk_size=8)  # 4 calls
        boot32 = js.bootstrap(runs, n_resamples=16, seed=2, chunk_size=8, dtype="float32")
        out[n] = (table, boot, boot32)
    (t1, b1, f1), (t3, b3, f3) = out[1], out[3]
    assert t1.equals(t3)
    assert t1["converged"].mean() > 0.9
    for one, three in ((b1, b3), (f1, f3)):
        np.testing.assert_array_equal(one.draws, three.draws)  # bit for bit: rtol 0
        np.testing.assert_array_equal(one.status, three.status)
    assert np.all(b1.status == 0) and np.all(f1.status == 0)
    # The float32 search, finished in float64, reaches the float64 bootstrap's optima (resample
    # i is the same draw in both: it depends on the seed and i only).
    np.testing.assert_allclose(f1.objective, b1.objective[:16], rtol=1e-8)


def test_gpu_sizes_run_on_a_cpu_to_the_same_optima(monkeypatch):
    """The GPU's layout (one block of lanes, groups screened 256 at a time) is other compiled
    arithmetic, so other last bits: on a CPU it must reach the same optima as the CPU's layout."""
    df, _ = make_archive(12, min_points=20, max_points=120, seed=7)
    cpu = js.fit_groups(df, by="group")
    jax.clear_caches()  # the layout is read when a kernel is traced
    monkeypatch.setattr(backends, "sizes", lambda backend=None: backends.GPU)
    try:
        gpu = js.fit_groups(df, by="group")
    finally:
        jax.clear_caches()
    np.testing.assert_allclose(gpu["objective"], cpu["objective"], rtol=1e-9)
    for name in ("E", "A", "B", "alpha", "beta"):
        np.testing.assert_allclose(gpu[name], cpu[name], rtol=1e-5, err_msg=name)
    assert list(gpu["status"]) == list(cpu["status"])
