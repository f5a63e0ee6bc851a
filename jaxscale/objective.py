"""Weighted, summed robust losses of residuals: the one definition of a fit's objective.

A residual is ``log L̂ − log L`` (``scale="log"``: Hoffmann et al., Epoch AI) or ``L̂ − L``
(``scale="natural"``: least squares as ``scipy.optimize.curve_fit`` does it, e.g. Gadre et
al.'s error laws). Its loss is Huber's (threshold ``delta`` on that residual) or squared, times
``penalty`` where the law over-predicts (r > 0): OLMo-core's ``overestimate_penalty``, > 1 to
fit the lower envelope of under-tuned runs (1: symmetric).

The solver minimises a **sum** over points: with a mean the objective is ~1e-6 in size, which
makes optimisers with absolute tolerances stop early. A mean (Brandfonbrener et al.) has the
same optimum; it is the reported objective divided by the runs' total weight
(``reduction="mean"``, see :func:`reported`). Weights carry resampling (multinomial counts),
cluster bootstraps (per-cluster counts), padding, held-out points (0/1 masks) and the user's
per-run weights.

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
SCALES = ("log", "natural")
REDUCTIONS = ("sum", "mean")


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


def point_losses(log_pred, log_y, *, loss_fn: str = "huber", delta: float = 1e-3, scale: str = "log", penalty=1.0):
    """Per-point loss of predictions ``log_pred`` against ``log_y`` (no weights, no sum).

    ``scale``, ``penalty``: see the module docstring (both static: Python values).
    """
    r = log_pred - log_y if scale == "log" else jnp.exp(log_pred) - jnp.exp(log_y)
    rho = residual_loss(r, loss_fn=loss_fn, delta=delta)
    return rho if penalty == 1.0 else jnp.where(r > 0, penalty * rho, rho)


def law_objective(
    theta, law: Law, log_x, log_y, weights, *, loss_fn: str = "huber", delta: float = 1e-3, scale="log", penalty=1.0
):
    """``Σ_i w_i ρ(r_i)`` for one parameter vector ``theta [p]``, ``r_i`` the residual of run
    ``i`` on ``scale`` (:func:`point_losses`).

    ``log_x [P, k]``, ``log_y [P]``, ``weights [P]``. Pure; ``jax.grad`` and ``jax.vmap`` apply.
    """
    losses = point_losses(
        law.log_predict(theta, log_x), log_y, loss_fn=loss_fn, delta=delta, scale=scale, penalty=penalty
    )
    return jnp.sum(weights * losses)


def reported(value, total_weight, reduction: str):
    """The objective as reported: the minimised sum, or (``"mean"``) that sum over the runs' total weight."""
    return value / total_weight if reduction == "mean" else value


def check(*, loss_fn: str, delta: float, scale: str, reduction: str, penalty: float) -> None:
    """The objective's options, checked (one message per mistake, naming the choices)."""
    if loss_fn not in LOSSES:
        raise ValueError(f"unknown loss_fn {loss_fn!r}; choose one of {LOSSES}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES} (where residuals are taken); got {scale!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    if not (isinstance(penalty, int | float) and 0 < penalty < float("inf")):
        raise ValueError(
            f"overestimate_penalty multiplies the loss where the law over-predicts and must be a number > 0 "
            f"(1: symmetric; e.g. 10 fits the lower envelope of under-tuned runs); got {penalty!r}"
        )
