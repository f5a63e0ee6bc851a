"""Bootstrap speed vs scipy, on the 240 Epoch AI Chinchilla points, float64.

Run: ``python -m pytest benchmarks -q -s --benchmark-json=benchmarks/results.json``

Measures, in one run:
* jaxscale: ``bootstrap(n_resamples=4000)`` with the default, staged policy (every resample
  screens the 4,500-point Epoch grid and the point estimate by its own objective, refines its
  best 3, and its best ``n_refine`` where those disagree), compile time separately from
  steady-state time; and the same with ``staged=False`` (every resample refines its best
  ``n_refine``), the policy before the staged one, by BFGS from a scaled identity and seeded
  with the exact Hessian at each start (``solver="bfgs_hessian"``);
* scipy ``minimize(method="L-BFGS-B")`` with an analytic numpy gradient (tests/reference.py)
  doing the same work — the same resample weights and the same starts (the staged policy's 3,
  and the unstaged ``n_refine``) — on a sample of the loop, extrapolated;
* the status quo: Epoch AI's full 4,500-start grid per resample in scipy (a sample of starts,
  extrapolated).
Ratios: per single-start fit, and per resample vs the status quo. Quality: on a sample of
resamples, the default strategy's optimum vs the full 4,500-start grid's (jaxscale) and vs
scipy's best over the same starts.
"""

import json
import os
import platform
import time

import jax
import numpy as np

import jaxscale as js
from benchmarks.blas import single_threaded_blas
from jaxscale import backends, batches, problem, screening, specs
from jaxscale.runner import resample_weights
from tests.reference import chinchilla_objective, scipy_best

N_RESAMPLES = int(os.environ.get("JAXSCALE_BENCH_RESAMPLES", "4000"))
SCIPY_SAMPLE_RESAMPLES = 20
STATUS_QUO_SAMPLE_STARTS = 150
QUALITY_SAMPLE = 20


def _cpu_model() -> str:
    """The CPU's model name (Linux), else the architecture: the developer machine's CPU changes
    between sessions (AMD EPYC one day, Intel Xeon another), and the figures with it."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> str:
    devices = ", ".join(sorted({d.device_kind for d in jax.local_devices()}))
    return f"{_cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, jax {jax.__version__} on {devices}"


def _scipy_fit_time(weights, starts, log_n, log_d, log_y, tight=False):
    """Seconds per single-start L-BFGS-B fit, timed over every (resample, start) pair given."""
    t0 = time.perf_counter()
    n_fits = 0
    for w, s in zip(weights, starts, strict=True):
        scipy_best(s, log_n, log_d, log_y, weights=w, tight=tight)
        n_fits += len(s)
    return (time.perf_counter() - t0) / n_fits


def test_bootstrap_vs_scipy(benchmark):
    runs = js.datasets.chinchilla()
    law = js.get_law("chinchilla")
    n_refine = specs.N_REFINE_MANY
    log_n, log_d = np.log(runs.x).T
    log_y = np.log(runs.y)

    # Compile (and warm up) on one chunk of the timed call's shape, then time the steady state.
    chunk = batches.balanced_chunk(N_RESAMPLES, backends.sizes().chunk_size)
    t0 = time.perf_counter()
    js.bootstrap(runs, n_resamples=chunk, seed=1, progress=False)
    compile_and_first_chunk = time.perf_counter() - t0
    boot = benchmark.pedantic(lambda: js.bootstrap(runs, n_resamples=N_RESAMPLES, seed=0, progress=False), rounds=1)
    staged_total = benchmark.stats.stats.mean
    js.bootstrap(runs, n_resamples=chunk, seed=1, progress=False, staged=False)  # its kernels, compiled
    t0 = time.perf_counter()
    unstaged = js.bootstrap(runs, n_resamples=N_RESAMPLES, seed=0, progress=False, staged=False)
    ours_total = time.perf_counter() - t0
    ours_per_resample = ours_total / N_RESAMPLES
    ours_per_fit = ours_total / (N_RESAMPLES * n_refine)
    # The same unstaged work by BFGS seeded with the exact Hessian at each start (what the
    # default's staged resamples run on this data).
    seeded_options = dict(seed=0, progress=False, staged=False, solver="bfgs_hessian")
    js.bootstrap(runs, n_resamples=chunk, **{**seeded_options, "seed": 1})  # its kernels, compiled
    t0 = time.perf_counter()
    seeded = js.bootstrap(runs, n_resamples=N_RESAMPLES, **seeded_options)
    seeded_per_fit = (time.perf_counter() - t0) / (N_RESAMPLES * n_refine)

    # The same work in scipy: same resample weights, same screened starts (fitted parameters).
    with jax.enable_x64(True):
        spec = specs.make_spec(law, max_steps=1000, gtol=1e-10)
        cfg, data = spec.cfg, specs.make_data(spec, runs.log_inputs(), runs.log_loss())
        weights = resample_weights(jax.random.key(0), 0, SCIPY_SAMPLE_RESAMPLES, runs.n_points)
        grid = law.grid_points()
        starts_c = problem.centered_starts(cfg, data, grid)
        idx = np.asarray(screening.screen(cfg, data, starts_c, jax.numpy.asarray(weights), n_refine))
    starts = [grid[i] for i in idx]
    # The staged policy's first pass: the best N_REFINE_FIRST of the point estimate and the grid.
    with jax.enable_x64(True):
        both = np.vstack([boot.point.theta[None], grid])
        both_c = problem.centered_starts(cfg, data, both)
        first = np.asarray(screening.screen(cfg, data, both_c, jax.numpy.asarray(weights), specs.N_REFINE_FIRST))
    staged_starts = [both[i] for i in first]
    # scipy's default tolerances (as users and Epoch's code run it; they stop earlier than
    # ours: ftol 2.2e-9 is absolute at this objective's scale of 1e-3) and tight ones.
    # scipy with OpenBLAS's default thread pool (what a user gets), and with one BLAS thread
    # (the faster, steadier baseline on this machine; see blas.py). Ratios use the latter.
    scipy_default_threads_per_fit = _scipy_fit_time(weights, starts, log_n, log_d, log_y)
    with single_threaded_blas():
        scipy_per_fit = _scipy_fit_time(weights, starts, log_n, log_d, log_y)
        scipy_tight_per_fit = _scipy_fit_time(weights[:4], starts[:4], log_n, log_d, log_y, tight=True)

    # Status quo: Epoch's 4,500-start grid per resample, in scipy (a random sample of starts).
    rng = np.random.default_rng(0)
    sample = grid[rng.choice(len(grid), STATUS_QUO_SAMPLE_STARTS, replace=False)]
    with single_threaded_blas():
        status_quo_per_fit = _scipy_fit_time(weights[:1], [sample], log_n, log_d, log_y)
    status_quo_per_resample = status_quo_per_fit * len(grid)
    with single_threaded_blas():
        scipy_staged_per_resample = specs.N_REFINE_FIRST * _scipy_fit_time(weights, staged_starts, log_n, log_d, log_y)

    # Quality: default strategy vs the full grid (jaxscale) and vs scipy from the same starts.
    full = batches.solve(cfg, data, grid, weights[:QUALITY_SAMPLE], n_refine=len(grid), chunk_size=1)
    default = batches.solve(cfg, data, grid, weights[:QUALITY_SAMPLE], n_refine=n_refine, chunk_size=QUALITY_SAMPLE)
    gap_full = float(np.max((default.value - full.value) / full.value))
    scipy_values = np.array(
        [
            scipy_best(s, log_n, log_d, log_y, weights=w).fun
            for w, s in zip(weights[:QUALITY_SAMPLE], starts[:QUALITY_SAMPLE], strict=True)
        ]
    )
    gap_scipy = float(np.max((default.value - scipy_values) / scipy_values))

    figures = {
        "machine": _machine(),
        "n_resamples": N_RESAMPLES,
        "n_refine": n_refine,
        "failed_fraction": boot.failed_fraction,
        "chunk_size": chunk,
        "compile_and_first_chunk_s": round(compile_and_first_chunk, 2),
        "jaxscale_staged_total_s": round(staged_total, 2),
        "jaxscale_staged_ms_per_resample": round(1e3 * staged_total / N_RESAMPLES, 3),
        "scipy_same_staged_starts_ms_per_resample": round(1e3 * scipy_staged_per_resample, 3),
        "ratio_per_resample_staged_vs_scipy_same_starts": round(
            scipy_staged_per_resample * N_RESAMPLES / staged_total, 1
        ),
        "staged_speedup_over_unstaged": round(ours_total / staged_total, 2),
        "max_rel_objective_staged_vs_unstaged": float(
            np.max(np.abs(boot.objective - unstaged.objective) / unstaged.objective)
        ),
        "staged_above_unstaged_1e-9": int(np.sum(boot.objective > unstaged.objective * (1 + 1e-9))),
        "unstaged_above_staged_1e-9": int(np.sum(unstaged.objective > boot.objective * (1 + 1e-9))),
        "jaxscale_total_s": round(ours_total, 2),
        "jaxscale_ms_per_resample": round(1e3 * ours_per_resample, 3),
        "jaxscale_us_per_single_start_fit": round(1e6 * ours_per_fit, 1),
        "scipy_us_per_single_start_fit": round(1e6 * scipy_per_fit, 1),
        "scipy_default_blas_threads_us_per_single_start_fit": round(1e6 * scipy_default_threads_per_fit, 1),
        "ratio_per_single_start_fit": round(scipy_per_fit / ours_per_fit, 1),
        "jaxscale_hessian_seeded_us_per_single_start_fit": round(1e6 * seeded_per_fit, 1),
        "ratio_per_single_start_fit_hessian_seeded": round(scipy_per_fit / seeded_per_fit, 1),
        "max_rel_objective_hessian_seeded_vs_unstaged": float(
            np.max(np.abs(seeded.objective - unstaged.objective) / unstaged.objective)
        ),
        "scipy_tight_us_per_single_start_fit": round(1e6 * scipy_tight_per_fit, 1),
        "ratio_per_single_start_fit_vs_tight_scipy": round(scipy_tight_per_fit / ours_per_fit, 1),
        "status_quo_s_per_resample": round(status_quo_per_resample, 2),
        "ratio_per_resample_vs_status_quo": round(status_quo_per_resample / ours_per_resample, 0),
        "max_rel_gap_default_vs_full_grid": gap_full,
        "max_rel_gap_default_vs_scipy_same_starts": gap_scipy,
    }
    benchmark.extra_info.update(figures)
    print("\n" + json.dumps(figures, indent=2))
    # Sanity, not speed: the benchmark measured real, converged work.
    assert boot.failed_fraction == 0.0 and unstaged.failed_fraction == 0.0 and seeded.failed_fraction == 0.0
    assert gap_full <= 1e-9 and gap_scipy <= 1e-9
    assert chinchilla_objective(grid[0], log_n, log_d, log_y)[0] > 0
