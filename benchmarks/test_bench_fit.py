"""Single fits on the 240 Epoch AI Chinchilla points, float64: the full grid, and the default.

Run: ``python -m pytest benchmarks/test_bench_fit.py -q -s`` (``JAXSCALE_BENCH_QUICK=1``: a
smoke run on every 15th grid start, with smaller scipy samples and fewer rounds).

Measures, in one run:
* ``test_full_grid_fit_vs_scipy``: ``fit(starts="grid")`` refines every one of the 4,500 Epoch
  grid starts; first call (compilation included) and steady state. Baseline: scipy
  ``minimize(method="L-BFGS-B")`` at its default tolerances with the analytic numpy gradient
  (tests/reference.py) from a random sample of 150 of the same starts, extrapolated to 4,500,
  with single-threaded BLAS (see blas.py; the first 10 of the sample are also timed with
  OpenBLAS's default thread pool, for comparison). Quality: jaxscale's optimum vs scipy's
  best over the sample.
* ``test_default_fit_vs_scipy``: ``fit()`` with its defaults (screen the 4,500 grid starts by
  their initial objective, refine the best 64); first call and steady state. Baseline: the
  same pipeline in numpy/scipy, timed whole: a vectorised numpy screening of the grid, then
  L-BFGS-B from its best 64 starts (single-threaded BLAS).
"""

import json
import os
import time

import numpy as np
import pytest

import jaxscale as js
from benchmarks.blas import single_threaded_blas
from benchmarks.test_bench_bootstrap import _machine
from jaxscale.specs import N_REFINE_ONE as DEFAULT_N_REFINE
from tests.reference import scipy_best

QUICK = os.environ.get("JAXSCALE_BENCH_QUICK") == "1"
GRID_STRIDE = 15 if QUICK else 1  # quick: every 15th grid start (300), passed as explicit starts
SCIPY_SAMPLE_STARTS = 20 if QUICK else 150
THREADED_SAMPLE_STARTS = 5 if QUICK else 10
GRID_ROUNDS = 1 if QUICK else 3
DEFAULT_ROUNDS = 3 if QUICK else 10


def _epoch():
    runs = js.datasets.chinchilla()
    log_n, log_d = np.log(runs.x).T
    return runs, log_n, log_d, np.log(runs.y)


def _screen_numpy(grid, log_n, log_d, log_y, k, delta=1e-3):
    """Indices of the ``k`` grid starts with the lowest initial Huber objective (one array op)."""
    e, a, b, alpha, beta = (grid[:, i, None] for i in range(5))
    terms = np.stack(np.broadcast_arrays(e, a - alpha * log_n, b - beta * log_d))  # [3, S, P]
    r = np.logaddexp.reduce(terms, axis=0) - log_y
    values = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta)).sum(axis=1)
    return np.argsort(values, kind="stable")[:k]


@pytest.mark.benchmark(group="fit")
def test_full_grid_fit_vs_scipy(benchmark):
    runs, log_n, log_d, log_y = _epoch()
    grid = js.get_law("chinchilla").grid_points()
    pool = grid[::GRID_STRIDE]
    starts = "grid" if GRID_STRIDE == 1 else pool

    t0 = time.perf_counter()
    js.fit(runs, starts=starts)
    first_call = time.perf_counter() - t0
    res = benchmark.pedantic(lambda: js.fit(runs, starts=starts), rounds=GRID_ROUNDS)
    steady = benchmark.stats.stats.mean

    # scipy from a random sample of the same starts, extrapolated to all of them.
    rng = np.random.default_rng(0)
    sample = pool[rng.choice(len(pool), SCIPY_SAMPLE_STARTS, replace=False)]
    with single_threaded_blas() as limited:
        t0 = time.perf_counter()
        ref = scipy_best(sample, log_n, log_d, log_y, tight=False)
        scipy_per_start = (time.perf_counter() - t0) / SCIPY_SAMPLE_STARTS
    scipy_total = scipy_per_start * len(pool)
    t0 = time.perf_counter()
    scipy_best(sample[:THREADED_SAMPLE_STARTS], log_n, log_d, log_y, tight=False)
    threaded_per_start = (time.perf_counter() - t0) / THREADED_SAMPLE_STARTS

    figures = {
        "machine": _machine(),
        "quick": QUICK,
        "n_points": runs.n_points,
        "n_starts": len(pool),
        "jaxscale_first_call_s": round(first_call, 2),
        "jaxscale_steady_s": round(steady, 3),
        "jaxscale_compile_s_estimate": round(first_call - steady, 2),
        "jaxscale_us_per_start_steady": round(1e6 * steady / len(pool), 1),
        "jaxscale_starts_at_optimum": res.n_at_optimum,
        "scipy_sample_starts": SCIPY_SAMPLE_STARTS,
        "scipy_blas_libraries_single_threaded": limited,
        "scipy_ms_per_start": round(1e3 * scipy_per_start, 2),
        "scipy_ms_per_start_default_blas_threads": round(1e3 * threaded_per_start, 2),
        "scipy_extrapolated_s": round(scipy_total, 2),
        "ratio_vs_scipy_steady": round(scipy_total / steady, 1),
        "ratio_vs_scipy_first_call": round(scipy_total / first_call, 1),
        "jaxscale_objective": res.objective,
        "scipy_best_objective_over_sample": float(ref.fun),
        "rel_gap_jaxscale_minus_scipy": (res.objective - ref.fun) / ref.fun,
    }
    benchmark.extra_info.update(figures)
    print("\n" + json.dumps(figures, indent=2))
    # Sanity, not speed: every start was refined and the optimum is at least scipy's.
    assert res.converged and res.n_starts == len(pool)
    assert res.objective <= ref.fun * (1 + 1e-9)


@pytest.mark.benchmark(group="fit")
def test_default_fit_vs_scipy(benchmark):
    runs, log_n, log_d, log_y = _epoch()
    grid = js.get_law("chinchilla").grid_points()

    t0 = time.perf_counter()
    js.fit(runs)
    first_call = time.perf_counter() - t0
    res = benchmark.pedantic(lambda: js.fit(runs), rounds=DEFAULT_ROUNDS)
    steady = benchmark.stats.stats.mean
    steady_min = benchmark.stats.stats.min

    # The same pipeline in numpy/scipy: screen the grid, refine the best 64 (all of them).
    with single_threaded_blas() as limited:
        t0 = time.perf_counter()
        best = _screen_numpy(grid, log_n, log_d, log_y, DEFAULT_N_REFINE)
        screen_s = time.perf_counter() - t0
        ref = scipy_best(grid[best], log_n, log_d, log_y, tight=False)
        scipy_total = time.perf_counter() - t0

    figures = {
        "machine": _machine(),
        "quick": QUICK,
        "n_candidates": res.n_candidates,
        "n_refine": res.n_starts,
        "jaxscale_first_call_s": round(first_call, 2),
        "jaxscale_steady_s": round(steady, 4),
        "jaxscale_steady_min_s": round(steady_min, 4),
        "jaxscale_starts_at_optimum": res.n_at_optimum,
        "scipy_blas_libraries_single_threaded": limited,
        "numpy_screening_s": round(screen_s, 4),
        "scipy_screen_and_refine_s": round(scipy_total, 3),
        "ratio_vs_scipy_steady": round(scipy_total / steady, 1),
        "ratio_vs_scipy_first_call": round(scipy_total / first_call, 2),
        "jaxscale_objective": res.objective,
        "scipy_best_objective": float(ref.fun),
        "rel_gap_jaxscale_minus_scipy": (res.objective - ref.fun) / ref.fun,
    }
    benchmark.extra_info.update(figures)
    print("\n" + json.dumps(figures, indent=2))
    assert res.converged and res.n_candidates == len(grid) and res.n_starts == DEFAULT_N_REFINE
    assert res.objective <= ref.fun * (1 + 1e-9)
