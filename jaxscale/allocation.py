"""Compute-optimal allocation as pure, differentiable JAX functions (part of :mod:`jaxscale.functional`).

:func:`chinchilla_optimum` is Hoffmann et al.'s closed form; :func:`compute_optimal` finds the
optimum of any law of ``(N, D, *others)`` numerically and differentiates it by the implicit
function theorem at the stationary point, ``du*/dφ = −(∂²L/∂u∂φ) / (∂²L/∂u²)`` with
``u = log N``, rather than through the search's iterations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .frontier import Flops, allocate, six_nd
from .laws import Law


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
