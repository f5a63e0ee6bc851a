"""A float32 search finished in float64: BFGS from each problem's float32 optimum, in float64.

Single precision cannot resolve this objective near its optimum: a Huber sum of ~1e-3 changes
by less than its float32 rounding along the flat α–A direction before the gradient is small,
so a float32 solve stops short. On 512 Epoch resamples its optima were a median 1e-4 and up to
0.5% from float64's in A and B (benchmarks/RESULTS.md). It has, though, already done what costs
most: screening the grid, choosing the basin and most of the way down it. A float64 BFGS from
there takes ~40 steps (~120 from a grid start) to the float64 optimum, within the solver's
tolerance: objectives within 1.9e-11 and parameters within 6.5e-5 of a float64 search's.

Polishing runs in batches of a fixed size (:data:`BATCH`, the last padded), so the compiled
arithmetic, and hence the result, does not depend on how many problems there are or how
they were chunked.

Example:
    >>> import jax, numpy as np
    >>> import jaxscale as js
    >>> from jaxscale import batches, problem, specs
    >>> from jaxscale.polish import polish
    >>> runs = js.datasets.chinchilla()
    >>> spec = specs.make_spec(js.get_law("chinchilla"), n_refine=8)
    >>> with jax.enable_x64(True):
    ...     cfg, data = spec.cfg, specs.make_data(spec, runs.log_inputs(), runs.log_loss())
    >>> starts, k = spec.candidates, spec.n_refine
    >>> w = np.ones((1, runs.n_points))
    >>> data32 = problem.Data(*(np.asarray(a, np.float32) for a in data))
    >>> with jax.enable_x64(False):
    ...     starts32, w32 = starts.astype(np.float32), w.astype(np.float32)
    ...     rough = batches.solve(cfg, data32, starts32, w32, n_refine=k, chunk_size=1)
    >>> with jax.enable_x64(True):
    ...     exact = batches.solve(cfg, data, starts, w, n_refine=k, chunk_size=1)
    ...     done = polish(cfg, data, rough, lambda lo, hi: w[lo:hi], 1)
    >>> int(done.status[0]), bool(abs(done.value[0] / exact.value[0] - 1) < 1e-10)
    (0, True)
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import solver
from .batches import pad_rows
from .laws import center
from .problem import Best, Config, Data, Limits, full_theta, limits_of, objective, sensitivity

BATCH = 256  # problems per polishing call (fixed: see the module docstring)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _polish_batch(cfg: Config, data: Data, theta: jax.Array, weights: jax.Array, limits: Limits):
    """``[BATCH]`` float64 solves from ``theta [BATCH, p]`` (fitted parameters), lockstep under vmap."""
    max_steps, gtol = limits
    x0 = center(cfg.law, theta, data.shift)[:, list(cfg.free)]

    def one(x, w):
        return solver.minimize(lambda z: objective(cfg, data, z, w), x, max_steps=max_steps, gtol=gtol)

    res = jax.vmap(one)(x0, weights)
    theta = jax.vmap(lambda x: full_theta(cfg, data, x))(res.x)
    return res, theta, jax.vmap(lambda t, w: sensitivity(cfg, data, t, w))(theta, weights)


def polish(cfg: Config, data: Data, rough: Best, weights: Callable[[int, int], np.ndarray], n: int) -> Best:
    """Each of ``n`` problems solved again in float64 from its ``rough`` (float32) optimum.

    ``data`` is the float64 data; ``weights(lo, hi)`` gives problems ``lo..hi-1``'s weights.
    Returns a float64 :class:`Best`: the polished optimum, its status and gradient, ``steps``
    counting both solves, ``start_values`` those of the rough solve. A problem whose rough
    optimum is not finite comes back ``NONFINITE``; callers solve those again from the grid.
    Call it with x64 enabled.
    """
    limits = limits_of(cfg, jnp.float64)
    kernel_cfg = cfg._replace(max_steps=0, gtol=0.0)  # in the kernel's static key; limits carries them
    theta = np.asarray(rough.theta, dtype=np.float64)
    parts = []
    for lo in range(0, n, BATCH):
        hi = min(lo + BATCH, n)
        w = pad_rows(np.asarray(weights(lo, hi), dtype=np.float64), BATCH)
        out = _polish_batch(kernel_cfg, data, jnp.asarray(pad_rows(theta[lo:hi], BATCH)), jnp.asarray(w), limits)
        parts.append(jax.tree.map(lambda a, keep=hi - lo: np.asarray(a)[:keep], out))
    res, theta, sens = (jax.tree.map(lambda *a: np.concatenate(a), *group) for group in zip(*parts, strict=True))
    return Best(
        theta=theta,
        value=res.value,
        status=res.status,
        steps=np.asarray(rough.steps) + res.steps,
        grad_norm=res.grad_norm,
        start_values=np.asarray(rough.start_values, dtype=np.float64),
        sensitivity=sens,
        n_refined=np.asarray(rough.n_refined),
    )
