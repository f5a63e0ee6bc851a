"""A lockstep exact-Hessian Newton solver for batches of small minimisation problems.

Same design as :mod:`jaxscale.solver`'s BFGS: a per-problem :class:`State` that
:func:`start` makes and :func:`step` advances by exactly **one** evaluation (here of the
objective, its gradient and its Hessian), the backtracking step folded into the outer loop,
status codes instead of errors, and a state the lane-refilling loop of
:mod:`jaxscale.engine` swaps in and out. What differs is the direction:

* The Hessian is exact (forward-over-reverse, :func:`value_grad_hess`), so near the optimum
  the iteration converges quadratically instead of rebuilding curvature over many steps.
* Far from it the Hessian is often indefinite (the Huber loss's linear arm leaves the
  curvature to the law's own second derivatives). The direction uses its eigenvalues'
  absolute values, floored at :data:`EIG_FLOOR` times the largest: ``p = -Q |Λ|⁻¹ Qᵀ g``, a
  descent direction that moves *away* along negative curvature rather than damping it.
  Damped (Levenberg–Marquardt) and shifted-Cholesky variants took as many or more steps
  than BFGS on the Epoch starts (benchmarks/RESULTS.md, "Solvers").

It takes fewer iterations than BFGS, each dearer (a Hessian and a 5x5 eigendecomposition per
lane): it pays where an iteration's fixed cost dominates (accelerators), not on a CPU.

Status codes and their rule are :mod:`jaxscale.solver`'s (:func:`jaxscale.solver.status_code`);
``steps`` counts evaluations, the first (at ``x0``) included.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jaxscale.newton import minimize
    >>> with jax.enable_x64(True):
    ...     f = lambda x: jnp.sum((x - jnp.array([1.0, -2.0])) ** 2) + 0.1 * jnp.sum(x**4)
    ...     res = jax.vmap(lambda x0: minimize(f, x0))(jnp.zeros((3, 2)))
    >>> np.asarray(res.status).tolist(), np.round(np.asarray(res.x[0]), 6).tolist()
    ([0, 0, 0], [0.86883, -1.423318])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .solver import RUNNING, XTOL, SolverResult, abs_inverse, backtrack, result, status_code  # result: the same fields

ARMIJO = 1e-4  # sufficient-decrease constant, as the BFGS's
EIG_FLOOR = 1e-8  # |eigenvalue| floor relative to the largest: bounds the step along flat directions


class State(NamedTuple):
    """Per-problem solver state (a pytree; batch it with ``vmap``)."""

    x: jax.Array
    f: jax.Array
    g: jax.Array
    p: jax.Array  # search direction
    t: jax.Array  # trial step length along p
    k: jax.Array  # evaluations so far
    status: jax.Array


def value_grad_hess(fun: Callable[[jax.Array], jax.Array]) -> Callable:
    """``x -> (f, ∇f, ∇²f)`` in one trace: forward mode over the reverse-mode gradient."""

    def grad_and_aux(x):
        f, g = jax.value_and_grad(fun)(x)
        return g, (f, g)

    def vgh(x):
        hess, (f, g) = jax.jacfwd(grad_and_aux, has_aux=True)(x)
        return f, g, hess

    return vgh


def direction(g: jax.Array, hess: jax.Array) -> jax.Array:
    """``-Q |Λ|⁻¹ Qᵀ g`` for ``hess = Q Λ Qᵀ``, with ``|Λ|`` floored at :data:`EIG_FLOOR` of its largest."""
    return -(abs_inverse(hess, EIG_FLOOR) @ g)


def start(x0: jax.Array) -> State:
    """A state whose first :func:`step` evaluates ``f`` at ``x0`` (t = 0, f = +inf accepts it)."""
    scalar = x0[0]  # every field made like x0, so a user's shard_map sees a varying carry
    return State(
        x=x0,
        f=jnp.full_like(scalar, jnp.inf),
        g=jnp.zeros_like(x0),
        p=jnp.zeros_like(x0),
        t=jnp.zeros_like(scalar),
        k=jnp.full_like(scalar, 0, dtype=jnp.int32),
        status=jnp.full_like(scalar, RUNNING, dtype=jnp.int32),
    )


def step(value_grad_hess: Callable, s: State, *, max_steps: int, gtol: float, xtol: float = XTOL) -> State:
    """One iteration = one evaluation of ``(f, ∇f, ∇²f)`` at ``x + t p``; a no-op once ``s.status`` is final."""
    first = s.k == 0
    xt = s.x + s.t * s.p
    ft, gt, ht = value_grad_hess(xt)
    gp = jnp.sum(s.g * s.p)
    finite = jnp.isfinite(ft) & jnp.all(jnp.isfinite(gt)) & jnp.all(jnp.isfinite(ht))
    accept = finite & (ft <= s.f + ARMIJO * s.t * gp)
    x = jnp.where(accept, xt, s.x)
    f = jnp.where(accept, ft, s.f)
    g = jnp.where(accept, gt, s.g)
    p = jnp.where(accept, direction(gt, jnp.where(finite, ht, 0.0)), s.p)
    t_shrunk = backtrack(s.t, s.f, ft, gp, finite)
    k = s.k + 1
    xtol = jnp.maximum(xtol, jnp.finfo(s.x.dtype).eps)
    vanished = ~accept & (jnp.max(jnp.abs(t_shrunk * s.p)) <= xtol * (1.0 + jnp.max(jnp.abs(s.x))))
    status = status_code(~(first & ~finite), vanished, jnp.max(jnp.abs(g)), k, max_steps=max_steps, gtol=gtol)
    new = State(x, f, g, p, jnp.where(accept, jnp.ones_like(s.t), t_shrunk), k, status)
    running = s.status == RUNNING
    return jax.tree.map(lambda a, b: jnp.where(running, a, b), new, s)


def minimize(
    fun: Callable[[jax.Array], jax.Array],
    x0: jax.Array,
    *,
    max_steps: int = 500,
    gtol: float = 1e-10,
    xtol: float = XTOL,
) -> SolverResult:
    """Minimise a twice-differentiable scalar ``fun`` from ``x0 [p]`` by exact-Hessian Newton.

    Pure and traceable; ``jax.vmap`` it to solve many problems in lockstep. Arguments and
    result as :func:`jaxscale.solver.minimize`.
    """
    vgh = value_grad_hess(fun)
    final = lax.while_loop(
        lambda s: s.status == RUNNING,
        lambda s: step(vgh, s, max_steps=max_steps, gtol=gtol, xtol=xtol),
        start(x0),
    )
    return result(final)
