"""What one kernel call solves: a law's static configuration, the data, the objective.

A *problem* is one weight vector over a data set's points (a plain fit: all ones; a bootstrap
resample: multinomial counts; padding: weight 0). The solver works in the free parameters,
centered: a term ``a − α log N`` of the log-space law is written ``a' − α (log N − m)`` with
``m`` the mean of log N over the runs (``a' = a − α m``), so that coefficient and exponent
are not nearly collinear (:func:`center_shift`).

Example:
    >>> import numpy as np
    >>> from jaxscale.laws import CHINCHILLA as law
    >>> from jaxscale.problem import Config, centered_starts, make_data, objective
    >>> theta = np.array([1.0, 6.0, 7.0, 0.35, 0.35])  # e, a, b, alpha, beta (logs for e, a, b)
    >>> log_x = np.log([[1e8, 2e9], [1e9, 2e10], [1e10, 2e11]])
    >>> log_y = np.asarray(law.log_predict(theta, log_x))
    >>> cfg = Config(law, "huber", 1e-3, (0, 1, 2, 3, 4), 100, 1e-9)
    >>> data = make_data(law, log_x, log_y, theta, cfg.free)
    >>> x = centered_starts(cfg, data, theta[None])[0]
    >>> float(objective(cfg, data, x, np.ones(3)))
    0.0
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .laws import Law, center, uncenter
from .objective import law_objective

# "bfgs": the lane-refill dense BFGS of engine._solve_items (few parameters), from a scaled
# identity; "bfgs_hessian": the same BFGS, each start's inverse Hessian seeded from the exact
# Hessian there (staged bootstrap resamples: jaxscale.refinement.with_point_estimate);
# "newton": the same lanes stepping an exact Newton (jaxscale.newton); "lbfgs": optax's
# L-BFGS, vmapped in plain lockstep (many parameters, and a cross-check).
METHODS = ("bfgs", "bfgs_hessian", "newton", "lbfgs", "bfgs_mixed")


class Config(NamedTuple):
    """Static configuration of a kernel (hashable: it is a jit static argument)."""

    law: Law
    loss_fn: str
    delta: float
    free: tuple[int, ...]  # indices of the fitted parameters being optimised
    max_steps: int
    gtol: float
    method: str = "bfgs"  # one of METHODS
    scale: str = "log"  # residuals of log loss or of loss (jaxscale.objective)
    penalty: float = 1.0  # loss factor where the law over-predicts (jaxscale.objective)
    grid_starts: bool = False  # the candidates are the law's grid: screening.with_grid_starts


class Limits(NamedTuple):
    """The solver's step budget and gradient tolerance, passed to kernels as arrays rather than
    in the static :class:`Config`, so that a new ``max_steps`` or ``gtol`` reuses the compiled
    kernel instead of compiling another (seconds: benchmarks/RESULTS.md, "Compile time")."""

    max_steps: jax.Array  # int32 scalar
    gtol: jax.Array  # scalar, in the solver's dtype


def limits_of(cfg: Config, dtype=jnp.float64) -> Limits:
    """``cfg``'s budget and tolerance as :class:`Limits` (``gtol`` in the solver's ``dtype``)."""
    return Limits(jnp.asarray(cfg.max_steps, jnp.int32), jnp.asarray(cfg.gtol, dtype))


class Data(NamedTuple):
    """Arrays shared by every problem of a call, or (grouped) one set per problem: a leading axis ``[B, ...]``."""

    log_x: jax.Array  # [P, k]
    log_y: jax.Array  # [P]
    theta_fixed: jax.Array  # [p]: values of the held-fixed parameters (others ignored)
    shift: jax.Array  # [n_pairs]: center per law.center_pairs (0 = not centered)


class Best(NamedTuple):
    """Per-problem outcome: the best start's optimum, in the law's fitted parameters."""

    theta: jax.Array  # [B, p]
    value: jax.Array  # [B]
    status: jax.Array  # [B]
    steps: jax.Array  # [B]
    grad_norm: jax.Array  # [B]
    start_values: jax.Array  # [B, S']: final objective of every refined start
    sensitivity: jax.Array  # [B, p]: max over weighted points of |d log L / d theta_j| at theta
    n_refined: jax.Array  # [B]: starts refined (fewer than S' where a staged solve skipped some)


def full_theta(cfg: Config, data: Data, x_free):
    """The solver's free, centered coordinates -> all of the law's fitted parameters ``[p]``."""
    return uncenter(cfg.law, data.theta_fixed.at[..., cfg.free].set(x_free), data.shift)


def objective(cfg: Config, data: Data, x_free, weights):
    """The weighted, summed loss of :mod:`jaxscale.objective` at ``x_free`` (free, centered)."""
    theta = full_theta(cfg, data, x_free)
    options = dict(loss_fn=cfg.loss_fn, delta=cfg.delta, scale=cfg.scale, penalty=cfg.penalty)
    return law_objective(theta, cfg.law, data.log_x, data.log_y, weights, **options)


def objective_value_and_grad(cfg: Config, data: Data, x_free, weights):
    """``(f, ∇f)`` in the solver's (free, centered) coordinates."""
    return jax.value_and_grad(objective, argnums=2)(cfg, data, x_free, weights)


def centered_starts(cfg: Config, data: Data, starts: np.ndarray) -> jax.Array:
    """Starts in the law's fitted parameters ``[S, p]`` -> the solver's free, centered coordinates."""
    free_mask = np.isin(np.arange(cfg.law.n_params), cfg.free)
    theta = jnp.where(free_mask, jnp.asarray(starts), data.theta_fixed)
    return center(cfg.law, theta, data.shift)[:, cfg.free]


def sensitivity(cfg: Config, data: Data, theta, w):
    """``max_i |∂ log L̂(x_i) / ∂θ_j|`` over the points of positive weight, per parameter ``[p]``.

    Near 0 when θ_j's term has vanished from the law at every run (e.g. ``A / N^α`` with α so
    large that the term is 1e-8 of the loss): the gradient along θ_j is then ~0 too, so the
    solver stops on that plateau and calls it converged, though the optimum may lie elsewhere.
    """
    jac = jax.jacfwd(lambda th: cfg.law.log_predict(th, data.log_x))(theta)  # [P, p]
    return jnp.max(jnp.where(w[:, None] > 0, jnp.abs(jac), 0.0), axis=0)


def make_data(law: Law, log_x: np.ndarray, log_y: np.ndarray, theta_fixed: np.ndarray, free: tuple[int, ...]) -> Data:
    """The kernel's arrays for one data set, centered by :func:`center_shift`."""
    shift = center_shift(law, log_x, free)
    return Data(jnp.asarray(log_x), jnp.asarray(log_y), jnp.asarray(theta_fixed), jnp.asarray(shift))


def center_shift(law: Law, log_x: np.ndarray, free: tuple[int, ...]) -> np.ndarray:
    """Center each coefficient/exponent pair on its input's mean, unless the coefficient is fixed."""
    means = log_x.mean(axis=0)
    return np.array([means[inp] if coef in free else 0.0 for coef, _, inp in law.center_pairs])
