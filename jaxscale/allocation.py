"""Compute-optimal allocation: the math behind :func:`jaxscale.frontier` and the pure-JAX
functions of :mod:`jaxscale.functional`.

Minimising ``E + A/N^α + B/D^β`` subject to ``6ND = C`` gives (Hoffmann et al. 2022, eq. 4)
``N_opt = G (C/6)^a``, ``D_opt = G⁻¹ (C/6)^b`` with ``G = (αA/(βB))^(1/(α+β))``,
``a = β/(α+β)``, ``b = α/(α+β)``: :func:`chinchilla_allocation` (numpy, natural parameters)
and :func:`chinchilla_optimum` (jnp, fitted parameters). For any other law (or another FLOPs
count) the optimum is found numerically (:func:`allocate`: a coarse grid in log N, then
safeguarded Newton steps on ``dL/dlog N``, vmapped over parameter sets × budgets);
:func:`compute_optimal` differentiates it by the implicit function theorem at the stationary
point, ``du*/dφ = −(∂²L/∂u∂φ) / (∂²L/∂u²)`` with ``u = log N``, rather than through the
search's iterations.

FLOPs functions: every FLOPs count is proportional to the tokens processed, so for a
budget C the tokens are ``D = C / flops(N, 1)``. The default is ``flops(N, D) = 6 N D``.

Example:
    >>> from jaxscale.allocation import chinchilla_allocation
    >>> n, d = chinchilla_allocation({"A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}, 5.76e23)
    >>> f"{n:.2e} {d:.2e}"
    '3.22e+10 2.98e+12'
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .laws import Law

Flops = Callable[[Any, Any], Any]


def six_nd(n, d):
    """The standard training-FLOPs approximation C = 6ND (Kaplan et al. 2020)."""
    return 6.0 * n * d


def chinchilla_allocation(params: Mapping, compute) -> tuple[np.ndarray, np.ndarray]:
    """``(N_opt, D_opt)`` at ``compute`` FLOPs for Chinchilla parameters (scalars or arrays)."""
    alpha, beta = np.asarray(params["alpha"]), np.asarray(params["beta"])
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    # In logs: G = exp((log(αA) − log(βB)) / (α+β)); avoids overflow for large A, B.
    log_g = (np.log(alpha * np.asarray(params["A"])) - np.log(beta * np.asarray(params["B"]))) / (alpha + beta)
    log_c6 = np.log(np.asarray(compute, dtype=np.float64) / 6.0)
    return np.exp(log_g + a * log_c6), np.exp(-log_g + b * log_c6)


class Allocation(NamedTuple):
    """Numeric optimum per (draw, budget): arrays of shape ``[..., n_budgets]``."""

    log_n: jax.Array
    log_d: jax.Array
    log_loss: jax.Array
    at_edge: jax.Array  # the optimum is at the end of the searched N range: not an interior optimum


def _log_tokens(log_n, log_c, flops: Flops):
    # FLOPs are linear in tokens: D = C / flops(N, 1).
    return log_c - jnp.log(flops(jnp.exp(log_n), 1.0))


@partial(jax.jit, static_argnames=("law", "flops", "grid_size", "newton_steps"))
def allocate(
    law: Law,
    theta: jax.Array,
    log_compute: jax.Array,
    extra: jax.Array,
    log_n_range: tuple[float, float] | jax.Array,
    *,
    flops: Flops = six_nd,
    grid_size: int = 96,
    newton_steps: int = 12,
) -> Allocation:
    """Numeric compute-optimal N for fitted parameters ``theta [M, p]`` and budgets ``[B]``.

    ``law`` must have inputs ``("N", "D", *others)``; ``extra [k-2]`` holds the logs of the
    other inputs (e.g. unique tokens U), held fixed. Returns arrays ``[M, B]``.
    """
    lo, hi = log_n_range
    grid = jnp.linspace(lo, hi, grid_size)
    step = grid[1] - grid[0]

    def log_loss(th, u, log_c):
        x = jnp.concatenate([jnp.stack([u, _log_tokens(u, log_c, flops)]), extra])
        return law.log_predict(th, x)

    slope = jax.grad(log_loss, argnums=1)
    curvature = jax.grad(slope, argnums=1)

    def one(th, log_c):
        values = jax.vmap(lambda u: log_loss(th, u, log_c))(grid)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)
        i = jnp.argmin(values)
        a, b = grid[i] - step, grid[i] + step

        def newton(_, state):
            u, a, b, best, best_g = state
            g = slope(th, u, log_c)
            # Keep the point with the smallest |dL/du| seen: once converged, a later
            # bisection step (taken when Newton's step rounds onto the bracket's end)
            # must not move the answer.
            better = jnp.abs(g) < best_g
            best, best_g = jnp.where(better, u, best), jnp.where(better, jnp.abs(g), best_g)
            # Keep the bracket around the root of dL/du, then step by Newton where it stays
            # inside, by bisection where it would leave (or the curvature is not positive).
            a, b = jnp.where(g > 0, a, u), jnp.where(g > 0, u, b)
            h = curvature(th, u, log_c)
            trial = u - g / jnp.where(h > 0, h, 1.0)
            inside = (h > 0) & (trial > a) & (trial < b)
            return jnp.where(inside, trial, 0.5 * (a + b)), a, b, best, best_g

        start = (grid[i], a, b, grid[i], jnp.array(jnp.inf, grid.dtype))
        _, _, _, u, _ = jax.lax.fori_loop(0, newton_steps, newton, start)
        u = jnp.clip(u, lo, hi)
        edge = (i == 0) | (i == grid_size - 1)
        return u, _log_tokens(u, log_c, flops), log_loss(th, u, log_c), edge

    out = jax.vmap(lambda th: jax.vmap(lambda c: one(th, c))(log_compute))(theta)
    return Allocation(*out)


def chinchilla_optimum(theta: jax.Array, compute: jax.Array, flops_per_token: float = 6.0):
    """Closed-form compute-optimal ``(N_opt, D_opt)`` of Chinchilla's law at ``compute`` FLOPs
    under ``C = flops_per_token · N · D`` (Hoffmann et al. 2022, eq. 4), from fitted ``theta``
    ``[..., 5]`` (log E, log A, log B, α, β); written in logs, so large A, B never overflow.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxscale.laws import CHINCHILLA
        >>> theta = CHINCHILLA.from_natural({"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28})
        >>> n, d = chinchilla_optimum(jnp.asarray(theta), 5.76e23)
        >>> f"{float(n):.2e} {float(d):.2e}"
        '3.22e+10 2.98e+12'
    """
    theta = jnp.asarray(theta)
    log_a, log_b, alpha, beta = (theta[..., i] for i in (1, 2, 3, 4))
    log_g = (jnp.log(alpha) + log_a - jnp.log(beta) - log_b) / (alpha + beta)
    log_c = jnp.log(jnp.asarray(compute, theta.dtype) / flops_per_token)
    return jnp.exp(log_g + beta / (alpha + beta) * log_c), jnp.exp(-log_g + alpha / (alpha + beta) * log_c)


class Optimum(NamedTuple):
    """Compute-optimal allocation at one budget (under ``vmap``, arrays of the batch shape)."""

    n_opt: jax.Array
    d_opt: jax.Array
    loss: jax.Array  # predicted loss at (n_opt, d_opt)
    at_edge: jax.Array  # the optimum is at the end of the searched N range, not interior


def compute_optimal(
    law: Law,
    theta: jax.Array,
    compute: jax.Array,
    *,
    extra: jax.Array | None = None,
    flops: Flops = six_nd,
    n_range: tuple[float, float] = (1e4, 1e16),
) -> Optimum:
    """Numeric compute-optimal allocation of any law of ``(N, D, *others)`` at ``compute`` FLOPs.

    Minimises the predicted loss along ``flops(N, D) = compute`` over ``N`` in ``n_range``
    (a grid, then safeguarded Newton steps on ``d log L / d log N``: the search of
    :func:`jaxscale.frontier.allocate`). Differentiable in ``theta``, ``compute`` and
    ``extra`` (logs of the law's other inputs, held fixed) by the implicit function theorem
    at the stationary point; an optimum at the edge of ``n_range`` is flagged (its
    derivative is that of the edge, i.e. of nothing: treat it as no optimum).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxscale.laws import CHINCHILLA
        >>> natural = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
        >>> theta = jnp.asarray(CHINCHILLA.from_natural(natural))
        >>> with jax.enable_x64(True):
        ...     opt = compute_optimal(CHINCHILLA, theta, 5.76e23)
        >>> f"{float(opt.n_opt):.2e} {float(opt.d_opt):.2e}", bool(opt.at_edge)
        ('3.22e+10 2.98e+12', False)
    """
    theta = jnp.asarray(theta)
    dtype = theta.dtype
    log_c = jnp.log(jnp.asarray(compute, dtype))
    extra = jnp.zeros((0,), dtype) if extra is None else jnp.asarray(extra, dtype)
    if law.inputs[:2] != ("N", "D") or extra.shape != (len(law.inputs) - 2,):
        raise ValueError(f"compute_optimal needs a law of (N, D, *others) and extra [{len(law.inputs) - 2}]")
    log_n_range = (float(np.log(n_range[0])), float(np.log(n_range[1])))
    found = allocate(
        law,
        *jax.lax.stop_gradient((theta[None], log_c[None], extra)),
        log_n_range,
        flops=flops,
    )
    u = _stationary_log_n(_log_loss_along(law, flops), found.log_n[0, 0], theta, log_c, extra)
    log_d = log_c - jnp.log(flops(jnp.exp(u), 1.0))
    log_loss = law.log_predict(theta, jnp.concatenate([jnp.stack([u, log_d]), extra]))
    return Optimum(jnp.exp(u), jnp.exp(log_d), jnp.exp(log_loss), found.at_edge[0, 0])


def _log_loss_along(law: Law, flops: Flops) -> Callable:
    def log_loss(u, theta, log_c, extra):
        log_d = log_c - jnp.log(flops(jnp.exp(u), 1.0))  # FLOPs are linear in tokens
        return law.log_predict(theta, jnp.concatenate([jnp.stack([u, log_d]), extra]))

    return log_loss


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _stationary_log_n(log_loss: Callable, u, theta, log_c, extra):
    """``u`` (log N at the optimum), given the derivative of ``u*`` defined by ``∂ log L / ∂u = 0``."""
    return u


@_stationary_log_n.defjvp
def _stationary_log_n_jvp(log_loss, primals, tangents):
    u, theta, log_c, extra = primals
    _, theta_dot, log_c_dot, extra_dot = tangents
    slope = jax.grad(log_loss, argnums=0)
    _, cross = jax.jvp(lambda t, c, e: slope(u, t, c, e), (theta, log_c, extra), (theta_dot, log_c_dot, extra_dot))
    curvature = jax.grad(slope, argnums=0)(u, theta, log_c, extra)
    return u, -cross / curvature
