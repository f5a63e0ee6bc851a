"""BFGS lanes that search in float32 and finish in float64 (``solver="bfgs_mixed"``).

Most of a fit's BFGS steps go into finding the basin and walking down it, which float32 does
as well as float64: a float32 ``exp`` and ``log`` cost a fraction of float64's on a CPU, and
the objective's time is those, once per run and step. Near the optimum float32 cannot resolve
the objective (a Huber sum changes by less than its rounding along the flat α–A direction), so
each lane searches with the objective and gradient evaluated in float32 until the gradient is
below :data:`SEARCH_GTOL` or no float32 step moves ``x``, and then goes on in float64, with the
curvature it has learned, to the float64 optimum and tolerance. BFGS's own state and arithmetic
are float64 throughout; the budget ``max_steps`` counts the steps of both phases.

:mod:`jaxscale.engine` steps blocks of lanes (:func:`advance`) and, between runs of steps,
moves the lanes whose search ended to their float64 phase (:func:`finish_searches`).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxscale import mixed, solver
    >>> def value_and_grad(data, x, w):  # a quadratic with its minimum at data
    ...     return jax.value_and_grad(lambda z: jnp.sum(w * (z - data) ** 2))(x)
    >>> with jax.enable_x64(True):
    ...     target, w = jnp.array([[1.0, -2.0]]), jnp.ones((1, 2))
    ...     lanes = mixed.searching(jax.vmap(solver.start)(jnp.zeros((1, 2))))
    ...     pairs = (w, mixed.single(w)), (target, mixed.single(target))
    ...     for _ in range(40):
    ...         lanes = mixed.advance(value_and_grad, lanes, *pairs, 0, 100, 1e-12)
    ...         lanes = mixed.finish_searches(lanes)
    >>> bool(lanes.finishing[0]), int(lanes.state.status[0]), [round(float(v), 12) for v in lanes.state.x[0]]
    (True, 0, [1.0, -2.0])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import solver

# A lane's float32 search ends where its gradient is below this (or float32 cannot move x);
# the float64 phase then takes it to the caller's gtol.
SEARCH_GTOL = 1e-6
_SEARCH_XTOL = float(np.finfo(np.float32).eps)


class Lanes(NamedTuple):
    """Lanes of ``"bfgs_mixed"``: the float64 BFGS states and which have left the float32 search."""

    state: solver.State
    finishing: jax.Array  # [lanes] bool


def searching(state: solver.State) -> Lanes:
    """Lanes starting their float32 search from ``state`` (a batch of :func:`jaxscale.solver.start`)."""
    return Lanes(state, jnp.zeros_like(state.k, dtype=bool))


def single(tree):
    """``tree``'s floating-point arrays in float32 (the search's copy of a block's data)."""
    return jax.tree.map(lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def advance(evaluate: Callable, lanes: Lanes, lane_w, lane_data, data_axis, max_steps, gtol) -> Lanes:
    """One BFGS step of a block of lanes. ``evaluate(data, x, w) -> (f, ∇f)``; ``lane_w`` and
    ``lane_data`` are pairs (float64 arrays, their :func:`single` copies), ``data_axis`` 0 where
    each lane has its own data, None where they share it.

    A block evaluates in one precision where its running lanes are all in one phase (the engine
    packs them so that at most one block holds both), else in both, each lane taking its own
    (each precision's evaluation is one compiled computation, skipped where no lane needs it):
    a lane's arithmetic depends on its own state only, whichever block it is in."""
    state, finishing = lanes
    xt = jax.vmap(solver.trial)(state)
    (w64, w32), (d64, d32) = lane_w, lane_data

    def double():
        return jax.vmap(evaluate, in_axes=(data_axis, 0, 0))(d64, xt, w64)

    def float32():
        f, g = jax.vmap(evaluate, in_axes=(data_axis, 0, 0))(d32, xt.astype(jnp.float32), w32)
        return f.astype(xt.dtype), g.astype(xt.dtype)

    def skipped():
        return jnp.zeros_like(state.f), jnp.zeros_like(xt)

    running = state.status == solver.RUNNING
    f32, g32 = jax.lax.cond(jnp.any(running & ~finishing), float32, skipped)
    f64, g64 = jax.lax.cond(jnp.any(running & finishing), double, skipped)
    ft, gt = jnp.where(finishing, f64, f32), jnp.where(finishing[:, None], g64, g32)
    lane_gtol = jnp.where(finishing, gtol, jnp.asarray(SEARCH_GTOL, xt.dtype))
    lane_xtol = jnp.where(finishing, solver.XTOL, jnp.asarray(_SEARCH_XTOL, xt.dtype))

    def update(s, x, f, g, tol, xtol):
        return solver.update(s, x, f, g, max_steps=max_steps, gtol=tol, xtol=xtol)

    return Lanes(jax.vmap(update)(state, xt, ft, gt, lane_gtol, lane_xtol), finishing)


def finish_searches(lanes: Lanes) -> Lanes:
    """Lanes whose float32 search stopped (converged or stalled at float32's tolerances, or not
    finite in float32) go on in float64 from the best point they found: the next step evaluates
    that point again (``f = inf``, ``t = 0``: accepted, with no update of BFGS's matrix). Lanes
    out of budget stay stopped. Called between runs of steps, so that blocks keep one phase."""
    state, finishing = lanes
    done = ~finishing & (state.status != solver.RUNNING) & (state.status != solver.MAX_STEPS)
    state = state._replace(
        status=jnp.where(done, solver.RUNNING, state.status),
        f=jnp.where(done, jnp.inf, state.f),
        t=jnp.where(done, 0.0, state.t),
    )
    return Lanes(state, finishing | done)
