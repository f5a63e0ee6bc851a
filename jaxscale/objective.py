"""Weighted, summed robust losses on log residuals.

The objective is a **sum** over points, not a mean: Hoffmann et al. and Epoch AI sum the
Huber terms, and with a mean the objective is ~1e-6 in size, which makes optimisers with
absolute tolerances stop early. Weights carry resampling (multinomial counts), cluster
bootstraps (per-cluster counts), padding and held-out points (0/1 masks).

Example:
    >>> import jax.numpy as jnp
    >>> from jaxscale.objective import huber
    >>> [round(float(v), 12) for v in huber(jnp.array([0.0005, -0.003]), 1e-3)]
    [1.25e-07, 2.5e-06]
"""

from __future__ import annotations

import jax.numpy as jnp

from .laws import Law

LOSSES = ("huber", "squared")


def huber(r, delta):
    """Huber's function: ``r²/2`` for ``|r| ≤ δ``, ``δ(|r| − δ/2)`` beyond (as scipy.special.huber)."""
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def squared(r):
    """``r²/2``: the δ → ∞ limit of :func:`huber`."""
    return 0.5 * r * r


def residual_loss(r, *, loss_fn: str = "huber", delta: float = 1e-3):
    """Per-point loss of log residuals ``r`` (no weights, no sum)."""
    if loss_fn == "huber":
        return huber(r, delta)
    if loss_fn == "squared":
        return squared(r)
    raise ValueError(f"unknown loss_fn {loss_fn!r}; choose one of {LOSSES}")


def law_objective(theta, law: Law, log_x, log_y, weights, *, loss_fn: str = "huber", delta: float = 1e-3):
    """``Σ_i w_i ρ(log L̂(θ; x_i) − log y_i)`` for one parameter vector ``theta [p]``.

    ``log_x [P, k]``, ``log_y [P]``, ``weights [P]``. Pure; ``jax.grad`` and ``jax.vmap`` apply.
    """
    r = law.log_predict(theta, log_x) - log_y
    return jnp.sum(weights * residual_loss(r, loss_fn=loss_fn, delta=delta))
