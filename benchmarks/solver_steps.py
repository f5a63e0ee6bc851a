"""Iterations per start of BFGS (from a scaled identity, and seeded with the exact Hessian at
the start: "bfgs_hessian") and of the exact-Hessian Newton solver, and their time.

From the 64 screened starts of the Epoch point fit, and from every refined start of a staged
and an unstaged bootstrap's first 512 resamples: the step histogram (one objective evaluation
per step: value and gradient for BFGS, value, gradient and Hessian for Newton), the share of
starts at the best optimum, and the wall time of the same job with each solver (warm).

Usage: python benchmarks/solver_steps.py   (about 3 min on 2 cores)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jaxscale as js  # noqa: E402
from jaxscale import engine, newton, problem, solver, specs  # noqa: E402
from jaxscale.fit import match_inputs  # noqa: E402
from jaxscale.screening import screen  # noqa: E402

EDGES = [0, 25, 50, 100, 150, 200, 300, 500, 1001]


def histogram(steps: np.ndarray) -> str:
    counts, _ = np.histogram(steps, bins=EDGES)
    cells = [f"{lo}-{hi - 1}: {c}" for lo, hi, c in zip(EDGES[:-1], EDGES[1:], counts, strict=True) if c]
    return f"median {np.median(steps):.0f}, p90 {np.percentile(steps, 90):.0f}, max {steps.max()}; " + ", ".join(cells)


def point_fit_starts() -> None:
    runs, law = js.datasets.chinchilla(), js.get_law("chinchilla")
    spec = specs.make_spec(law, n_refine=64)
    data = specs.make_data(spec, match_inputs(runs, law), runs.log_loss())
    w = jnp.ones(runs.n_points)
    starts = problem.centered_starts(spec.cfg, data, spec.candidates)
    x0 = starts[screen(spec.cfg, data, starts, w[None], 64)[0]]

    def f(z):
        return problem.objective(spec.cfg, data, z, w)

    def seeded(x):  # as the engine's "bfgs_hessian": BFGS from the exact Hessian at the start
        h0 = solver.abs_inverse(jax.hessian(f)(x), engine.START_FLOOR)
        return solver.minimize(f, x, max_steps=1000, gtol=1e-10, h0=h0)

    print("Epoch point fit, 64 screened starts, each solved alone (vmap, no lane refill):")
    solvers = {
        "bfgs": lambda x: solver.minimize(f, x, max_steps=1000, gtol=1e-10),
        "bfgs_hessian": seeded,
        "newton": lambda x: newton.minimize(f, x, max_steps=1000, gtol=1e-10),
    }
    for name, one in solvers.items():
        run = jax.jit(jax.vmap(one))
        jax.block_until_ready(run(x0))
        start = time.perf_counter()
        res = jax.block_until_ready(run(x0))
        took = time.perf_counter() - start
        value, steps = np.asarray(res.value), np.asarray(res.steps)
        at_best = int(np.sum(value <= value.min() * (1 + 1e-9)))
        print(f"  {name:>13}: {histogram(steps)}; {at_best} of 64 at the best {value.min():.12g}; {took:.3f} s warm")


def bootstrap_jobs(n: int = 512) -> None:
    runs = js.datasets.chinchilla()
    print(f"bootstrap of {n} Epoch resamples (warm, seed 0):")
    for staged in (True, False):
        for name in ("bfgs", "bfgs_hessian", "newton"):
            options = dict(n_resamples=n, progress=False, staged=staged, solver=name)
            js.bootstrap(runs, seed=1, **options)
            start = time.perf_counter()
            boot = js.bootstrap(runs, seed=0, **options)
            took = time.perf_counter() - start
            label = "staged" if staged else "unstaged"
            mean = boot.objective.mean()
            print(f"  {label:>8} {name:>13}: {took:6.2f} s, {boot.n_failed} failed, mean objective {mean:.12g}")


if __name__ == "__main__":
    print(f"jax {jax.__version__}, {jax.devices()}")
    point_fit_starts()
    bootstrap_jobs()
