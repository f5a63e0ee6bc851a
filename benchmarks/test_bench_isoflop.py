"""isoflop (Approach 2) with a 1,000-resample bootstrap on Porian et al.'s 15 configurations.

Run: ``python -m pytest benchmarks/test_bench_isoflop.py -q -s`` (``JAXSCALE_BENCH_QUICK=1``:
100 resamples, 10 of them in the numpy loop).

Measures, in one run:
* jaxscale: ``isoflop(df, by=["dataset", "experiment"], n_resamples=1000)`` on the bundled fixture
  (tests/fixtures/porian2024_isoflops, 1,745 runs), first call (compilation included) and
  steady state;
* a plain numpy loop doing the same work, as one would write it: per configuration, per
  resample, per budget, resample the budget's runs with replacement (skipping a resample of a
  budget left with < 3 distinct sizes, as isoflop does), ``numpy.polyfit`` the loss against
  log N (centered on the budget's mean, as isoflop does) and take the vertex of a convex
  parabola; then ``numpy.polyfit`` log N* and log D* against log C (a and b); then the
  percentile intervals. Budgets with < 3 distinct sizes are skipped and budgets whose point
  parabola is not convex are left out of every resample, as in isoflop (no window, no
  weights: isoflop's defaults). Timed with single-threaded BLAS (polyfit calls LAPACK on tiny
  matrices; see blas.py) on a sample of resamples, extrapolated.
Quality: jaxscale's point estimates of a (and b) equal the numpy loop's (no resampling).
"""

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxscale as js
from benchmarks.blas import single_threaded_blas
from benchmarks.test_bench_bootstrap import _machine

QUICK = os.environ.get("JAXSCALE_BENCH_QUICK") == "1"
N_BOOT = 100 if QUICK else 1000
LOOP_SAMPLE_RESAMPLES = 10 if QUICK else 100
PORIAN = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "porian2024_isoflops" / "isoflop_points.csv"
CONFIG = ["dataset", "experiment"]  # Porian et al.'s 15 configurations (see tests/test_isoflop.py)
LOG_FLOPS_PER_TOKEN = np.log(6.0)


def _isoflop(df):
    with warnings.catch_warnings():  # Kaplan-style budgets sit at the edge of their sizes (expected)
        warnings.simplefilter("ignore", js.IsoflopWarning)
        return js.isoflop(df, by=CONFIG, n_resamples=N_BOOT, seed=0)


def _budgets(df):
    """Per configuration (in isoflop's order), its usable budgets: (log C, log N − center, loss, center)."""
    configs = []
    for _, part in df.groupby(CONFIG, sort=True):
        budgets = []
        for c, runs in part.groupby("flops", sort=True):
            log_n = np.log(runs["params"].to_numpy())
            if np.unique(log_n).size < 3:  # a parabola needs 3 distinct sizes: skipped
                continue
            center = log_n.mean()
            budgets.append((np.log(c), log_n - center, runs["loss"].to_numpy(), center))
        configs.append(budgets)
    return configs


def _approach2(budgets, use, rng=None):
    """(a, b, which budgets gave a convex parabola) for one configuration; resampled if ``rng``."""
    log_c, log_n, ok = [], [], np.zeros(len(budgets), bool)
    for j, (lc, x, y, center) in enumerate(budgets):
        if not use[j]:
            continue
        if rng is not None:
            pick = rng.integers(0, len(x), len(x))
            x, y = x[pick], y[pick]
            if np.unique(x).size < 3:
                continue
        c2, c1, _ = np.polyfit(x, y, 2)
        if not c2 > 0:
            continue
        ok[j] = True
        log_c.append(lc)
        log_n.append(center - c1 / (2 * c2))
    if len(log_c) < 2:
        return np.nan, np.nan, ok
    log_c, log_n = np.array(log_c), np.array(log_n)
    a = np.polyfit(log_c, log_n, 1)[0]
    b = np.polyfit(log_c, log_c - LOG_FLOPS_PER_TOKEN - log_n, 1)[0]
    return a, b, ok


@pytest.mark.benchmark(group="isoflop")
def test_isoflop_porian_vs_numpy_loop(benchmark):
    df = pd.read_csv(PORIAN)

    t0 = time.perf_counter()
    _isoflop(df)
    first_call = time.perf_counter() - t0
    table = benchmark.pedantic(lambda: _isoflop(df), rounds=1 if QUICK else 3)
    steady = benchmark.stats.stats.mean

    with single_threaded_blas() as limited:
        t0 = time.perf_counter()
        configs = _budgets(df)
        points = [_approach2(budgets, np.ones(len(budgets), bool)) for budgets in configs]
        setup_and_point_s = time.perf_counter() - t0

        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for budgets, (_, _, use) in zip(configs, points, strict=True):
            draws = np.array([_approach2(budgets, use, rng)[:2] for _ in range(LOOP_SAMPLE_RESAMPLES)])
            np.nanpercentile(draws, [2.5, 97.5], axis=0)
        loop_per_resample = (time.perf_counter() - t0) / LOOP_SAMPLE_RESAMPLES
    loop_total = setup_and_point_s + loop_per_resample * N_BOOT

    ours_a, ours_b = table["a"].to_numpy(), table["b"].to_numpy()
    theirs_a, theirs_b = (np.array([p[i] for p in points]) for i in (0, 1))
    rel_a = float(np.max(np.abs(ours_a - theirs_a) / np.abs(theirs_a)))
    rel_b = float(np.max(np.abs(ours_b - theirs_b) / np.abs(theirs_b)))
    figures = {
        "machine": _machine(),
        "quick": QUICK,
        "configurations": len(table),
        "runs": len(df),
        "budgets_used": int(table["n_budgets"].sum()),
        "n_resamples": N_BOOT,
        "jaxscale_first_call_s": round(first_call, 2),
        "jaxscale_steady_s": round(steady, 3),
        "jaxscale_compile_s_estimate": round(first_call - steady, 2),
        "jaxscale_us_per_resample_per_configuration": round(1e6 * steady / (N_BOOT * len(table)), 1),
        "numpy_blas_libraries_single_threaded": limited,
        "numpy_loop_sample_resamples": LOOP_SAMPLE_RESAMPLES,
        "numpy_loop_ms_per_resample_all_configurations": round(1e3 * loop_per_resample, 2),
        "numpy_loop_setup_and_point_estimates_s": round(setup_and_point_s, 3),
        "numpy_loop_extrapolated_s": round(loop_total, 2),
        "ratio_vs_numpy_loop_steady": round(loop_total / steady, 1),
        "ratio_vs_numpy_loop_first_call": round(loop_total / first_call, 2),
        "max_rel_diff_point_a": rel_a,
        "max_rel_diff_point_b": rel_b,
    }
    benchmark.extra_info.update(figures)
    print("\n" + json.dumps(figures, indent=2))
    # Sanity, not speed: the same 15 fits, the same budgets, the same point estimates.
    assert len(table) == 15
    assert list(table["n_budgets"]) == [int(p[2].sum()) for p in points]
    assert rel_a <= 1e-8 and rel_b <= 1e-8
    assert np.all(table["a_lower"] < table["a_upper"])


# Porian et al.'s procedure (tests/test_isoflop_porian.py): seed noise per dataset.
SIGMA = {"rw": 0.002, "owt2": 0.01}
NOISE_OPTIONS = dict(N="params", method="akima", resample="noise", observation="median", weighted=True)
NOISE_LOOP_SAMPLE = 2 if QUICK else 20  # replicates per budget timed in the scipy loop


@pytest.mark.benchmark(group="isoflop")
def test_seed_noise_porian_vs_scipy_loop(benchmark):
    """15 configurations x 1,000 seed-noise replicates (N side, Akima optima, median observations,
    weighted power laws) against tests/reference.seed_noise_exponent (scipy's Akima per
    replicate and budget), timed on a sample of replicates and extrapolated."""
    from tests.reference import seed_noise_exponent

    df = pd.read_csv(PORIAN)

    def ours():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", js.IsoflopWarning)
            return [
                js.isoflop(df[df["dataset"] == d], by=CONFIG, noise=s, n_resamples=N_BOOT, **NOISE_OPTIONS)
                for d, s in SIGMA.items()
            ]

    start = time.perf_counter()
    ours()
    first_call = time.perf_counter() - start
    tables = benchmark.pedantic(ours, rounds=1)
    steady = benchmark.stats.stats.mean
    start = time.perf_counter()
    loop_a = []
    for (dataset, _), part in df.groupby(CONFIG):
        budgets = [(c, np.log(g["params"].to_numpy()), g["loss"].to_numpy()) for c, g in part.groupby("flops")]
        loop_a.append(seed_noise_exponent(budgets, SIGMA[dataset], n=NOISE_LOOP_SAMPLE)[0])
    loop_sample = time.perf_counter() - start
    loop_total = loop_sample * N_BOOT / NOISE_LOOP_SAMPLE  # the loop's time is its replicates'
    figures = {
        "machine": _machine(),
        "configurations x replicates": f"{sum(len(t) for t in tables)} x {N_BOOT}",
        "jaxscale_first_call_s": round(first_call, 2),
        "jaxscale_steady_s": round(steady, 2),
        "scipy_loop_sample_replicates": NOISE_LOOP_SAMPLE,
        "scipy_loop_extrapolated_s": round(loop_total, 1),
        "ratio_vs_scipy_loop_steady": round(loop_total / steady, 1),
        "ratio_vs_scipy_loop_first_call": round(loop_total / first_call, 1),
    }
    benchmark.extra_info.update(figures)
    print("\n" + json.dumps(figures, indent=2))
    assert sum(len(t) for t in tables) == 15 == len(loop_a)
