"""Pure-JAX fitting for use inside your own JAX code: ``jit``, ``vmap``, ``shard_map``, ``grad``.

Everything here takes and returns arrays (no pandas, no host round-trips, no Python branch on
a traced value), so it composes with JAX transformations:

* :func:`fit` fits a law to one data set given as arrays: log inputs ``[P, k]``, log losses
  ``[P]`` and per-run weights ``[P]``. It screens a start grid by initial objective, refines
  the best ``n_refine`` starts with the lockstep BFGS of :mod:`jaxscale.solver` and keeps the
  best. ``jax.vmap`` it over weight vectors (a bootstrap), over data sets, or over starts.
* Its result is **differentiable through the optimum**: a custom JVP rule applies the
  implicit function theorem at the converged point, ``dθ*/dφ = −H⁻¹ ∂²f/∂θ∂φ`` (``H`` the
  Hessian of the objective in the free parameters, ``φ`` the losses, weights, inputs or
  held-fixed values), so ``jax.grad`` and ``jax.jvp`` never unroll the solver's iterations.
* :func:`predict`, :func:`chinchilla_optimum` (closed form) and :func:`compute_optimal` (any
  law of N and D, numeric, with the same implicit rule) are differentiable too.

Where a problem did **not** converge (``status != 0``) its optimum is not a stationary point
and the theorem does not apply: by default (``failed_grad="nan"``) every derivative of that
problem's outputs is NaN, in forward and reverse mode alike, so that a failure cannot pass
for a gradient; ``failed_grad="zero"`` makes them 0 instead (for a batch whose failures are
masked out with ``jnp.where(result.status == 0, ...)``). Check ``status`` either way.

Enable float64 first (``jax.config.update("jax_enable_x64", True)``): laws span 1e6–1e13
and the Huber objective is flat to ~1e-12 near its optimum. Arrays of another dtype are
fitted in that dtype.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> import jaxscale as js
    >>> from jaxscale import functional as jsf
    >>> runs = js.datasets.chinchilla()
    >>> law = js.get_law("chinchilla")
    >>> with jax.enable_x64(True):
    ...     log_x, log_y = jnp.asarray(runs.log_inputs()), jnp.asarray(runs.log_loss())
    ...     alpha = lambda w: jsf.fit(law, log_x, log_y, w).params[3]
    ...     w = jnp.ones(runs.n_points)
    ...     value, influence = jax.jit(jax.value_and_grad(alpha))(w)
    >>> round(float(value), 4), influence.shape
    (0.3473, (240,))
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import backends, checks, engine, objective, problem, screening
from .allocation import Optimum, chinchilla_optimum, compute_optimal
from .laws import Law, center
from .objective import law_objective
from .solver import CONVERGED, MAX_STEPS, NONFINITE, STALLED, STATUS_NAMES, SolverResult, minimize
from .specs import N_REFINE_MANY, free_indices, grid_starts

__all__ = [
    "CONVERGED",
    "MAX_STEPS",
    "NONFINITE",
    "STALLED",
    "STATUS_NAMES",
    "Optimum",
    "Solution",
    "SolverResult",
    "chinchilla_optimum",
    "compute_optimal",
    "default_starts",
    "fit",
    "fit_batch",
    "law_objective",
    "minimize",
    "predict",
]

FAILED_GRAD = ("nan", "zero")


class Solution(NamedTuple):
    """Arrays-only outcome of :func:`fit` (under ``vmap``, every field gains the batch axis)."""

    theta: jax.Array  # [p] the law's fitted parameters (e.g. log E, log A, log B, alpha, beta)
    params: jax.Array  # [p] natural parameters, in law.natural order (e.g. E, A, B, alpha, beta)
    objective: jax.Array  # [] the weighted, summed loss at theta
    status: jax.Array  # [] solver status code: 0 converged (see jaxscale.solver)
    steps: jax.Array  # [] objective+gradient evaluations of the best start
    grad_norm: jax.Array  # [] max |gradient| at theta, free parameters
    start_values: jax.Array  # [n_refine] final objective of every refined start


def default_starts(law: Law, fixed: Mapping[str, object] | None = None) -> np.ndarray:
    """The law's start grid ``[S, p]`` (fitted parameters), with the grid over held-fixed
    parameters collapsed to one start per combination of the free ones.

    Example:
        >>> from jaxscale.laws import CHINCHILLA
        >>> default_starts(CHINCHILLA).shape, default_starts(CHINCHILLA, {"E": 1.7}).shape
        ((4500, 5), (900, 5))
    """
    return grid_starts(law, free_indices(law, fixed))


def _fixed_theta(law: Law, fixed: Mapping[str, object] | None, dtype) -> jax.Array:
    """Held-fixed natural values -> a ``[p]`` vector of fitted parameters (others 0); traceable,
    so a fixed value can itself be differentiated through."""
    theta = jnp.zeros(law.n_params, dtype)
    for name, value in (fixed or {}).items():
        i = law.natural_index(name)
        v = jnp.asarray(value, dtype)
        theta = theta.at[i].set(jnp.log(v) if law.log_scale[i] else v)
    return theta


def fit(
    law: Law,
    log_x: jax.Array,
    log_y: jax.Array,
    weights: jax.Array | None = None,
    *,
    starts: jax.Array | np.ndarray | None = None,
    n_refine: int = N_REFINE_MANY,
    fixed: Mapping[str, object] | None = None,
    loss_fn: str = "huber",
    delta: float = 1e-3,
    scale: str = "log",
    reduction: str = "sum",
    overestimate_penalty: float = 1.0,
    max_steps: int | jax.Array = 1000,
    gtol: float | jax.Array = 1e-10,
    failed_grad: str = "nan",
) -> Solution:
    """Fit ``law`` to one data set of arrays: the best of ``n_refine`` screened starts.

    Args:
        law: a :class:`~jaxscale.Law` (e.g. ``jaxscale.get_law("chinchilla")``); static.
        log_x: ``[P, k]`` logs of the inputs, columns in ``law.inputs`` order.
        log_y: ``[P]`` logs of the losses.
        weights: ``[P]`` non-negative per-run weights (default 1; 0 leaves a run out; a
            bootstrap resample is a vector of multinomial counts).
        starts: ``[S, p]`` candidate starts in fitted parameters (default: the law's grid,
            :func:`default_starts`). If ``S > n_refine`` they are ranked by their initial
            objective under ``weights`` and the best ``n_refine`` are refined; else all are.
        n_refine: starts refined (static); the default is ``jaxscale.bootstrap``'s.
        fixed: natural parameters held fixed, e.g. ``{"E": 1.69}`` (values may be traced).
        loss_fn, delta: ``"huber"`` (with threshold ``delta`` on residuals) or ``"squared"``.
        scale, reduction, overestimate_penalty: the objective's options, as in
            :func:`jaxscale.fit` (static; with ``"mean"`` the ``objective`` is over ``sum(weights)``).
        max_steps, gtol: the solver's budget and gradient tolerance (may be traced).
        failed_grad: derivative of a problem that did not converge: ``"nan"`` or ``"zero"``.

    Returns:
        :class:`Solution`. Its ``theta``, ``params`` and ``objective`` are differentiable
        with respect to ``log_x``, ``log_y``, ``weights`` and the ``fixed`` values.

    The log inputs are centered on their mean before solving (a fixed reparameterisation
    that decorrelates each coefficient from its exponent; it does not change the optimum).
    """
    options = Objective(loss_fn, delta, scale, reduction, overestimate_penalty)
    cfg, data, starts_c, w = _setup(law, log_x, log_y, weights, starts, fixed, options, failed_grad, n_refine)
    # The search itself is not differentiated (its derivative is attached at the optimum).
    data_c, w_c = jax.lax.stop_gradient((data, w))
    k = min(n_refine, starts_c.shape[0])
    idx = screening.screen_one(cfg, data_c, starts_c, w_c, k) if k < starts_c.shape[0] else jnp.arange(k)
    runs = jax.vmap(
        lambda x0: minimize(lambda z: problem.objective(cfg, data_c, z, w_c), x0, max_steps=max_steps, gtol=gtol)
    )(starts_c[idx])
    values = jnp.where(jnp.isfinite(runs.value), runs.value, jnp.inf)
    best = jnp.argmin(values)
    pick = SolverResult(*(a[best] for a in runs))
    return _reduced(_solution(cfg, failed_grad, data, w, pick, values), w, reduction)


def fit_batch(
    law: Law,
    log_x: jax.Array,
    log_y: jax.Array,
    weights: jax.Array,
    *,
    starts: jax.Array | np.ndarray | None = None,
    n_refine: int = N_REFINE_MANY,
    fixed: Mapping[str, object] | None = None,
    loss_fn: str = "huber",
    delta: float = 1e-3,
    scale: str = "log",
    reduction: str = "sum",
    overestimate_penalty: float = 1.0,
    max_steps: int | jax.Array = 1000,
    gtol: float | jax.Array = 1e-10,
    failed_grad: str = "nan",
    lanes: int | None = None,
) -> Solution:
    """:func:`fit` for a batch of weight vectors ``[B, P]`` over one data set (bootstrap
    resamples, held-out masks), solved by the kernel behind ``jaxscale.bootstrap``.

    Same result as ``jax.vmap(fit)`` over the rows of ``weights`` (to the solver's
    tolerance), but faster: the ``B * n_refine`` refinements share ``lanes`` solver lanes
    (default: the backend's, :func:`jaxscale.backends.sizes`),
    and a lane whose start has finished takes the next start, so the batch does not wait
    for its slowest start at every step. Pure and jit-compatible, differentiable like
    :func:`fit`; use :func:`fit` under ``vmap`` when the data differ per problem.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> import jaxscale as js
        >>> from jaxscale import functional as jsf
        >>> runs, law = js.datasets.chinchilla(), js.get_law("chinchilla")
        >>> w = np.random.default_rng(0).multinomial(240, np.full(240, 1 / 240), size=4)
        >>> with jax.enable_x64(True):
        ...     sol = jsf.fit_batch(law, runs.log_inputs(), runs.log_loss(), w)
        >>> sol.params.shape, np.asarray(sol.status).tolist()
        ((4, 5), [0, 0, 0, 0])
    """
    weights = jnp.asarray(weights, jnp.asarray(log_y).dtype)
    if weights.ndim != 2:
        raise ValueError(f"weights must be [B, P] (one row per problem); got shape {weights.shape}")
    options = Objective(loss_fn, delta, scale, reduction, overestimate_penalty)
    cfg, data, starts_c, _ = _setup(law, log_x, log_y, weights[0], starts, fixed, options, failed_grad, n_refine)
    checks.arguments(lanes=lanes)
    data_c, w_c = jax.lax.stop_gradient((data, weights))
    limits = problem.Limits(jnp.asarray(max_steps, jnp.int32), jnp.asarray(gtol, starts_c.dtype))
    k = min(n_refine, starts_c.shape[0])
    lanes = backends.or_default("lanes", lanes)
    best = engine.solve_chunk(cfg, data_c, starts_c, w_c, limits, k, lanes)
    x_best = center(law, best.theta, data_c.shift)[:, list(cfg.free)]
    picks = SolverResult(x_best, best.value, best.grad_norm, best.steps, best.status)
    return jax.vmap(lambda w, pick, values: _reduced(_solution(cfg, failed_grad, data, w, pick, values), w, reduction))(
        weights, picks, best.start_values
    )


def _reduced(sol: Solution, w, reduction: str) -> Solution:
    """``sol`` with its objective reported as ``reduction`` says (:func:`jaxscale.objective.reported`)."""
    return sol._replace(objective=objective.reported(sol.objective, jnp.sum(w), reduction))


class Objective(NamedTuple):
    """The objective's static options (:mod:`jaxscale.objective`)."""

    loss_fn: str
    delta: float
    scale: str
    reduction: str
    penalty: float


def _setup(law, log_x, log_y, weights, starts, fixed, options: Objective, failed_grad, n_refine):
    """Check the options and shapes (at trace time); the kernel's config, data, centered starts
    and weights of one problem."""
    loss_fn, delta, scale, reduction, penalty = options
    objective.check(loss_fn=loss_fn, delta=delta, scale=scale, reduction=reduction, penalty=penalty)
    if failed_grad not in FAILED_GRAD:
        raise ValueError(f"failed_grad must be one of {FAILED_GRAD}; got {failed_grad!r}")
    checks.arguments(n_refine=n_refine)
    log_y = jnp.asarray(log_y)
    dtype = log_y.dtype
    log_x = jnp.asarray(log_x, dtype)
    if log_x.ndim != 2 or log_x.shape != (log_y.shape[0], len(law.inputs)) or log_y.ndim != 1:
        raise ValueError(
            f"log_x must be [P, {len(law.inputs)}] (inputs {law.inputs}) and log_y [P]; "
            f"got {log_x.shape} and {log_y.shape}"
        )
    w = jnp.ones_like(log_y) if weights is None else jnp.asarray(weights, dtype)
    if w.shape != log_y.shape:
        raise ValueError(f"weights must have shape {log_y.shape} (one per run); got {w.shape}")
    free = free_indices(law, fixed)
    cfg = problem.Config(law, loss_fn, float(delta), free, 0, 0.0, "bfgs", scale, float(penalty))
    if starts is None:  # the law's grid: screening ranks it term by term where it can
        starts = default_starts(law, fixed)
        cfg = screening.with_grid_starts(cfg, starts)
    starts = jnp.asarray(starts, dtype)
    if starts.ndim != 2 or starts.shape[1] != law.n_params:
        raise ValueError(f"starts must be [S, {law.n_params}] (fitted parameters {law.params}); got {starts.shape}")
    # Center each coefficient/exponent pair on its input's mean (as problem.center_shift does):
    # a fixed reparameterisation, so it carries no derivative.
    means = jax.lax.stop_gradient(jnp.mean(log_x, axis=0))
    pairs = [means[inp] if coef in free else jnp.zeros((), dtype) for coef, _, inp in law.center_pairs]
    shift = jnp.stack(pairs) if pairs else jnp.zeros((0,), dtype)
    data = problem.Data(log_x, log_y, _fixed_theta(law, fixed, dtype), shift)
    starts_c = problem.centered_starts(cfg, jax.lax.stop_gradient(data), jax.lax.stop_gradient(starts))
    return cfg, data, starts_c, w


def _solution(cfg: problem.Config, failed_grad: str, data: problem.Data, w, pick: SolverResult, values) -> Solution:
    """One problem's best start as a :class:`Solution`, differentiable through the optimum."""
    x_star = _at_optimum(cfg, failed_grad, pick.x, pick.status == CONVERGED, data, w)
    theta = problem.full_theta(cfg, data, x_star)
    params = cfg.law.to_natural(theta)
    # A "converged" optimum whose parameters cannot be represented (a coefficient's log past
    # 709 along a direction the data do not determine) is no result.
    status = jnp.where((pick.status == CONVERGED) & ~jnp.all(jnp.isfinite(params)), NONFINITE, pick.status)
    return Solution(
        theta=theta,
        params=params,
        objective=problem.objective(cfg, data, x_star, w),
        status=status,
        steps=pick.steps,
        grad_norm=pick.grad_norm,
        start_values=values,
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _at_optimum(cfg: problem.Config, failed_grad: str, x, ok, data: problem.Data, w):
    """``x`` (the solver's optimum, free centered coordinates), given the derivative of the
    implicit function ``x*(data, w)`` defined by ``∇ₓ f(x*, data, w) = 0``."""
    return x


@_at_optimum.defjvp
def _at_optimum_jvp(cfg, failed_grad, primals, tangents):
    x, ok, data, w = primals
    _, _, data_dot, w_dot = tangents

    def grad_x(d, weights):
        return jax.grad(lambda z: problem.objective(cfg, d, z, weights))(x)

    # ∂/∂φ ∇ₓf along (data_dot, w_dot); linear in the tangents, so reverse mode transposes it.
    _, cross = jax.jvp(grad_x, (data, w), (data_dot, w_dot))
    hess = jax.hessian(lambda z: problem.objective(cfg, data, z, w))(x)
    eye = jnp.eye(x.shape[0], dtype=x.dtype)
    dx = -jnp.linalg.solve(jnp.where(ok, hess, eye), cross)
    if failed_grad == "nan":
        dx = dx * jnp.where(ok, 1.0, jnp.nan).astype(x.dtype)
    else:
        dx = jnp.where(ok, dx, 0.0)
    return x, dx


def predict(law: Law, theta: jax.Array, log_x: jax.Array) -> jax.Array:
    """Predicted loss (natural scale) at ``log_x [..., k]`` for fitted parameters ``theta [p]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxscale.laws import CHINCHILLA
        >>> theta = CHINCHILLA.from_natural({"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28})
        >>> round(float(predict(CHINCHILLA, theta, jnp.log(jnp.array([70e9, 1.4e12])))), 3)
        1.937
    """
    return jnp.exp(law.log_predict(theta, log_x))
