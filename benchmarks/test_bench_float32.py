"""float32 resamples against float64, on the 240 Epoch AI Chinchilla points: time and accuracy.

Run: ``python -m pytest benchmarks/test_bench_float32.py -q -s``

``bootstrap(..., dtype="float32")`` searches in single precision (screening and the 8
refinements of every resample) and finishes each resample's float32 optimum with a float64
BFGS (``jaxscale/polish.py``). Measured here, for the same seed (the same resample weights):
float64 and float32 bootstraps (compile + first call, steady state), the two float32 phases
on their own, and the accuracy against float64: of the polished draws, and of the float32
search alone (what the polish corrects: how many of its optima converged in float32, and how
many have a float64 gradient within ``sqrt(gtol)``). ``device_run.sh`` runs this file on an
accelerator too.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxscale as js
from benchmarks.test_bench_bootstrap import _machine
from jaxscale import batches, problem, specs
from jaxscale.laws import center
from jaxscale.polish import polish
from jaxscale.runner import resample_weights

N_RESAMPLES = int(os.environ.get("JAXSCALE_BENCH_F32_RESAMPLES", "512"))
QUANTITIES = ("E", "A", "B", "alpha", "beta", "a", "b")
GTOL = 1e-10


def _timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def _sig(x) -> float:
    return float(f"{x:.3g}")


def _values(boot):
    return {**boot.samples, **boot.derived_samples()}


def _phases(runs):
    """The float32 search and the float64 polish of bootstrap(dtype="float32"), timed apart."""
    law = js.get_law("chinchilla")
    with jax.enable_x64(True):
        spec = specs.make_spec(law, max_steps=1000, gtol=GTOL, n_refine=specs.N_REFINE_MANY)
        cfg, data = spec.cfg, specs.make_data(spec, runs.log_inputs(), runs.log_loss())
        starts, k = spec.candidates, spec.n_refine
        w = resample_weights(jax.random.key(0), 0, N_RESAMPLES, runs.n_points)
    data32 = problem.Data(*(np.asarray(a, np.float32) for a in data))

    def search():
        with jax.enable_x64(False):
            return batches.solve(
                cfg, data32, starts.astype(np.float32), w.astype(np.float32), n_refine=k, chunk_size=2048
            )

    def finish(rough):
        with jax.enable_x64(True):
            return polish(cfg, data, rough, lambda lo, hi: w[lo:hi], N_RESAMPLES)

    rough, _ = _timed(search)  # compiles
    rough, t_search = _timed(search)
    finish(rough)
    done, t_polish = _timed(lambda: finish(rough))
    with jax.enable_x64(True):
        theta = jnp.asarray(np.asarray(rough.theta, np.float64))
        x = center(law, theta, data.shift)[:, list(cfg.free)]
        grad = jax.vmap(lambda x, w: problem.objective_value_and_grad(cfg, data, x, w)[1])(x, jnp.asarray(w))
    passes = int(np.sum(np.max(np.abs(np.asarray(grad)), axis=1) <= np.sqrt(GTOL)))
    rough_natural = np.asarray(law.to_natural(np.asarray(rough.theta, np.float64)))
    steps = np.asarray(done.steps) - np.asarray(rough.steps)
    return rough_natural, {
        "search_s": round(t_search, 2),
        "polish_s": round(t_polish, 2),
        "polish_steps_mean": round(float(steps.mean()), 1),
        "polish_steps_max": int(steps.max()),
        "search_converged_in_float32": int(np.sum(np.asarray(rough.status) == 0)),
        "search_optima_with_float64_grad_within_sqrt_gtol": passes,
    }


def test_float32_vs_float64(benchmark):
    runs = js.datasets.chinchilla()
    figures = {"machine": _machine(), "n_resamples": N_RESAMPLES}

    def run(dtype, seed):
        return js.bootstrap(runs, n_resamples=N_RESAMPLES, seed=seed, dtype=dtype, gtol=GTOL, progress=False)

    _, first64 = _timed(lambda: run("float64", 1))
    ref, steady64 = _timed(lambda: run("float64", 0))
    _, first32 = _timed(lambda: run("float32", 1))
    boot = benchmark.pedantic(lambda: run("float32", 0), rounds=1)
    steady32 = benchmark.stats.stats.mean
    figures["float64"] = {"compile_and_first_call_s": round(first64, 2), "steady_s": round(steady64, 2)}
    figures["float32"] = {"compile_and_first_call_s": round(first32, 2), "steady_s": round(steady32, 2)}
    figures["speedup_float32_over_float64"] = round(steady64 / steady32, 2)
    rough, figures["float32_phases"] = _phases(runs)

    ref_values, ref_ci, ci = _values(ref), ref.ci(0.95), boot.ci(0.95)
    values = _values(boot)
    both = boot.ok & ref.ok
    accuracy = {"failed": boot.n_failed, "max_rel_objective_gap": _sig(np.max(boot.objective / ref.objective - 1))}
    for q in QUANTITIES:
        rel = np.abs(values[q][both] / ref_values[q][both] - 1)
        width = ref_ci.loc[q, "upper"] - ref_ci.loc[q, "lower"]
        shift = max(abs(ci.loc[q, e] - ref_ci.loc[q, e]) for e in ("lower", "upper"))
        accuracy[q] = {"max_rel_dev": _sig(np.max(rel)), "ci95_shift_over_width": _sig(shift / width)}
    figures["float32_polished_vs_float64"] = accuracy
    search_rel = np.abs(rough / ref.draws - 1)
    figures["float32_search_alone_vs_float64"] = {
        name: {"median_rel_dev": _sig(np.median(search_rel[:, i])), "max_rel_dev": _sig(np.max(search_rel[:, i]))}
        for i, name in enumerate(ref.law.natural)
    }
    benchmark.extra_info.update(figures)
    print("\n" + json.dumps(figures, indent=2))
    # Sanity, not speed: both converged everywhere and the polished draws are float64's.
    assert ref.n_failed == 0 and boot.n_failed == 0
    assert accuracy["max_rel_objective_gap"] <= 1e-10
