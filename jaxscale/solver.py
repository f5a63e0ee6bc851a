"""A lockstep dense BFGS for batches of small, independent minimisation problems.

Why not ``optax.lbfgs`` under ``vmap`` by default: its zoom line search is a nested,
data-dependent loop, so every lane of a batch waits for the slowest one several times per
iteration (many times slower: benchmarks/RESULTS.md, "Solvers"), and on the Huber objective
(a kink in the second derivative at |r| = δ) that search fails now and then.
:func:`minimize_lbfgs` runs it anyway, for laws with many parameters and as a
cross-check, continuing past failed searches while keeping the best point. Here each
iteration does exactly **one** objective+gradient evaluation: the backtracking step is
folded into the outer loop (a rejected trial shrinks the step and the next iteration tries
again along the same direction). With a handful of parameters a dense inverse-Hessian costs
nothing, and the whole solve is one ``lax.while_loop`` that ``vmap`` turns into a lockstep
loop over the batch, ending when every problem has stopped.

Each problem carries a status code instead of raising (errors belong at the boundary):

* ``CONVERGED`` (0): ``max|∇f| ≤ gtol``, or no trial step can change ``x`` any more while
  ``max|∇f| ≤ sqrt(gtol)`` (the objective is flat to machine precision);
* ``MAX_STEPS`` (1): the step budget ran out first;
* ``NONFINITE`` (2): the objective or gradient is NaN/inf at the start;
* ``STALLED`` (3): the line search cannot decrease ``f`` although the gradient is not small.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jaxscale.solver import minimize, CONVERGED
    >>> with jax.enable_x64(True):
    ...     f = lambda x: jnp.sum((x - jnp.array([1.0, -2.0])) ** 2) + 0.1 * jnp.sum(x**4)
    ...     res = jax.vmap(lambda x0: minimize(f, x0))(jnp.zeros((3, 2)))
    >>> np.asarray(res.status).tolist()
    [0, 0, 0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

RUNNING, CONVERGED, MAX_STEPS, NONFINITE, STALLED = -1, 0, 1, 2, 3
STATUS_NAMES = {CONVERGED: "converged", MAX_STEPS: "max_steps", NONFINITE: "nonfinite", STALLED: "stalled"}

_C1 = 1e-4  # Armijo sufficient-decrease constant (Nocedal & Wright's usual choice)
XTOL = 1e-15  # default relative step size below which a trial step no longer changes x


class SolverResult(NamedTuple):
    """Arrays-only result of one (or, under vmap, a batch of) minimisation(s)."""

    x: jax.Array
    value: jax.Array
    grad_norm: jax.Array  # max |gradient| at x
    steps: jax.Array  # iterations taken (one objective+gradient evaluation each)
    status: jax.Array


class State(NamedTuple):
    """Per-problem solver state (a pytree; batch it with ``vmap``)."""

    x: jax.Array
    f: jax.Array
    g: jax.Array
    h: jax.Array  # inverse-Hessian approximation
    p: jax.Array  # search direction
    t: jax.Array  # trial step length along p
    fresh: jax.Array  # h has not been rescaled yet (first accepted step pending)
    k: jax.Array  # objective+gradient evaluations so far
    status: jax.Array


# Tiny matrix algebra written as broadcast-and-sum: under vmap, XLA:CPU fuses these into the
# surrounding elementwise loops, whereas batched 5x5 dot products become separate, slow kernels.
def _matvec(h, v):
    return jnp.sum(h * v[None, :], axis=1)


def _dot(u, v):
    return jnp.sum(u * v)


def _outer(u, v):
    return u[:, None] * v[None, :]


def _descent(h, g):
    """Direction -H g, falling back to steepest descent when H has lost positive-definiteness."""
    p = -_matvec(h, g)
    ok = _dot(g, p) < 0
    return jnp.where(ok, p, -g), jnp.where(ok, h, jnp.eye(g.shape[0], dtype=g.dtype))


def _bfgs_update(h, s, y, fresh):
    sy = _dot(s, y)
    yy = _dot(y, y)
    curvature_ok = sy > 1e-12 * jnp.sqrt(_dot(s, s) * yy)
    # Scale the initial identity to the observed curvature before the first update
    # (Nocedal & Wright eq. 6.20); this sets the step length of everything that follows.
    eye = jnp.eye(s.shape[0], dtype=s.dtype)
    h = jnp.where(fresh & curvature_ok, (sy / jnp.where(yy > 0, yy, 1.0)) * eye, h)
    rho = 1.0 / jnp.where(curvature_ok, sy, 1.0)
    hy = _matvec(h, y)
    updated = h + ((sy + _dot(y, hy)) * rho * rho) * _outer(s, s) - rho * (_outer(hy, s) + _outer(s, hy))
    return jnp.where(curvature_ok, updated, h), fresh & ~curvature_ok


def backtrack(t, f0, ft, slope, finite):
    """The step after a rejected trial ``t``: the minimiser of the quadratic through
    ``f(0) = f0``, ``f'(0) = slope`` and ``f(t) = ft``, kept within ``[0.1 t, 0.5 t]``; a
    non-finite trial just shrinks hard."""
    denom = 2.0 * (ft - f0 - slope * t)
    t_quad = jnp.where(denom > 0, -slope * t * t / jnp.where(denom > 0, denom, 1.0), 0.5 * t)
    return jnp.where(finite, jnp.clip(t_quad, 0.1 * t, 0.5 * t), 0.1 * t)


def status_code(finite, stalled, gmax, k, *, max_steps: int, gtol: float):
    """Status code: non-finite first, then gradient small, then no progress possible, then budget."""
    return jnp.where(
        ~finite,
        NONFINITE,
        jnp.where(
            gmax <= gtol,
            CONVERGED,
            jnp.where(
                stalled,
                jnp.where(gmax <= jnp.sqrt(gtol), CONVERGED, STALLED),
                jnp.where(k >= max_steps, MAX_STEPS, RUNNING),
            ),
        ),
    ).astype(jnp.int32)


def abs_inverse(hess: jax.Array, floor: float) -> jax.Array:
    """``Q |Λ|⁻¹ Qᵀ`` for a symmetric ``hess = Q Λ Qᵀ``, ``|Λ|`` floored at ``floor`` times its
    largest: a positive-definite inverse that keeps the exact curvature's scale and axes where
    ``hess`` is indefinite (moving away along negative curvature instead of towards it)."""
    eig, q = jnp.linalg.eigh(0.5 * (hess + hess.T))
    size = jnp.abs(eig)
    size = jnp.maximum(size, floor * jnp.max(size) + jnp.finfo(hess.dtype).tiny)
    return (q / size[None, :]) @ q.T


def start(x0: jax.Array, h0: jax.Array | None = None) -> State:
    """A state whose first :func:`step` evaluates ``f`` at ``x0`` (t = 0, f = +inf accepts it).

    ``h0`` (optional, ``[p, p]``): the inverse-Hessian approximation to start from, e.g.
    :func:`abs_inverse` of the exact Hessian at ``x0``; the first direction is then ``-h0 ∇f``
    and no rescaling follows. Without it (or where it is not finite), the first step is a unit
    step along steepest descent and the identity is rescaled at the first update.
    """
    # Every field is made *like* x0 (full_like keeps its type), so that inside a user's
    # shard_map, where x0 varies across devices, the loop's initial state varies too.
    scalar = x0[0]
    eye = jnp.eye(x0.shape[0], dtype=x0.dtype) + jnp.zeros_like(x0)[:, None]
    seeded = jnp.zeros_like(scalar, dtype=bool) if h0 is None else jnp.all(jnp.isfinite(h0))
    return State(
        x=x0,
        f=jnp.full_like(scalar, jnp.inf),
        g=jnp.zeros_like(x0),
        h=eye if h0 is None else jnp.where(seeded, h0, eye),
        p=jnp.zeros_like(x0),
        t=jnp.zeros_like(scalar),
        fresh=~seeded,
        k=jnp.full_like(scalar, 0, dtype=jnp.int32),
        status=jnp.full_like(scalar, RUNNING, dtype=jnp.int32),
    )


def step(value_and_grad: Callable, s: State, *, max_steps: int, gtol: float, xtol: float = XTOL) -> State:
    """One iteration = one objective+gradient evaluation; a no-op once ``s.status`` is final.

    ``value_and_grad(x) -> (f, g)``. The first call (``k == 0``) only evaluates the start.
    The same as :func:`update` at :func:`trial`, for callers that evaluate the trial points
    themselves (e.g. a block of lanes in one precision or another).
    """
    xt = trial(s)
    ft, gt = value_and_grad(xt)
    return update(s, xt, ft, gt, max_steps=max_steps, gtol=gtol, xtol=xtol)


def trial(s: State) -> jax.Array:
    """The point the next :func:`step` evaluates."""
    return s.x + s.t * s.p


def update(s: State, xt, ft, gt, *, max_steps: int, gtol, xtol=XTOL) -> State:
    """:func:`step`'s state from the objective ``ft`` and gradient ``gt`` at ``xt = trial(s)``.
    ``gtol`` and ``xtol`` may be traced (e.g. per lane)."""
    first = s.k == 0
    gp = _dot(s.g, s.p)
    finite = jnp.isfinite(ft) & jnp.all(jnp.isfinite(gt))
    accept = finite & (ft <= s.f + _C1 * s.t * gp)

    # Accepted: quasi-Newton update and a new direction with a unit step. At the start,
    # the first step has unit length along steepest descent, whatever the scale of f.
    eye = jnp.eye(s.x.shape[0], dtype=s.x.dtype)
    h_first = eye / jnp.maximum(jnp.sqrt(_dot(gt, gt)), jnp.finfo(s.x.dtype).tiny)
    h_upd, fresh_new = _bfgs_update(s.h, xt - s.x, gt - s.g, s.fresh)
    # A seeded start (not fresh) takes its first direction from its own h.
    p_new, h_new = _descent(jnp.where(first, jnp.where(s.fresh, h_first, s.h), h_upd), gt)
    fresh_new = jnp.where(first, s.fresh, fresh_new)

    t_shrunk = backtrack(s.t, s.f, ft, gp, finite)

    x = jnp.where(accept, xt, s.x)
    f = jnp.where(accept, ft, s.f)
    g = jnp.where(accept, gt, s.g)
    k = s.k + 1
    gmax = jnp.max(jnp.abs(g))
    xtol = jnp.maximum(xtol, jnp.finfo(s.x.dtype).eps)  # float32: a step below eps cannot move x
    step_vanished = ~accept & (jnp.max(jnp.abs(t_shrunk * s.p)) <= xtol * (1.0 + jnp.max(jnp.abs(s.x))))
    status = status_code(~(first & ~finite), step_vanished, gmax, k, max_steps=max_steps, gtol=gtol)
    new = State(
        x=x,
        f=f,
        g=g,
        h=jnp.where(accept, h_new, s.h),
        p=jnp.where(accept, p_new, s.p),
        t=jnp.where(accept, jnp.ones_like(s.t), t_shrunk),
        fresh=jnp.where(accept, fresh_new, s.fresh),
        k=k,
        status=status.astype(jnp.int32),
    )
    running = s.status == RUNNING
    return jax.tree.map(lambda a, b: jnp.where(running, a, b), new, s)


def result(s: State) -> SolverResult:
    return SolverResult(s.x, s.f, jnp.max(jnp.abs(s.g), axis=-1), s.k, s.status)


def unsolved(x0: jax.Array, value=jnp.inf, status=RUNNING) -> SolverResult:
    """Results ``[M]`` of the starts ``x0 [M, p]`` before any step: ``value`` and ``status``, no
    steps, gradient norm 0; made like ``x0`` (as :func:`start`) and with no arithmetic on
    constants, which XLA would fold while compiling, at a cost that grows with ``M``
    (benchmarks/RESULTS.md, "Compile time").

    Example:
        >>> r = unsolved(jnp.ones((2, 3)), value=jnp.nan, status=9)
        >>> r.value.tolist(), r.grad_norm.tolist(), r.steps.tolist(), r.status.tolist()
        ([nan, nan], [0.0, 0.0], [0, 0], [9, 9])
    """
    scalar = x0[:, 0]
    return SolverResult(
        x=x0,
        value=jnp.full_like(scalar, value),
        grad_norm=jnp.zeros_like(scalar),
        steps=jnp.zeros_like(scalar, dtype=jnp.int32),
        status=jnp.full_like(scalar, status, dtype=jnp.int32),
    )


def minimize(
    fun: Callable[[jax.Array], jax.Array],
    x0: jax.Array,
    *,
    max_steps: int = 500,
    gtol: float = 1e-10,
    xtol: float = XTOL,
    h0: jax.Array | None = None,
) -> SolverResult:
    """Minimise a smooth scalar ``fun`` from ``x0 [p]`` by BFGS with a folded backtracking step.

    Pure and traceable; ``jax.vmap`` it (or use :func:`minimize_batch`) to solve many problems
    in lockstep. ``gtol`` is an absolute bound on ``max|∇f|``; ``xtol`` the relative step size
    below which a trial step no longer changes ``x``; ``max_steps`` counts objective+gradient
    evaluations, the first (at ``x0``) included. ``h0``: an inverse Hessian to start from
    (:func:`start`), e.g. ``abs_inverse(jax.hessian(fun)(x0), 1e-6)``. Respects the dtype of ``x0``.
    """
    value_and_grad = jax.value_and_grad(fun)
    final = lax.while_loop(
        lambda s: s.status == RUNNING,
        lambda s: step(value_and_grad, s, max_steps=max_steps, gtol=gtol, xtol=xtol),
        start(x0, h0),
    )
    return result(final)


def minimize_batch(
    fun: Callable[..., jax.Array],
    x0: jax.Array,
    *args,
    in_axes=0,
    max_steps: int = 500,
    gtol: float = 1e-10,
    xtol: float = XTOL,
) -> SolverResult:
    """Solve ``min_x fun(x, *args)`` for a leading batch axis of independent problems.

    ``x0`` is ``[M, p]``; ``args`` are batched along axis 0 unless ``in_axes`` (one entry per
    arg, as in ``jax.vmap``) says otherwise. One lockstep loop serves the whole batch.
    """
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)

    def one(x, *a):
        return minimize(lambda z: fun(z, *a), x, max_steps=max_steps, gtol=gtol, xtol=xtol)

    return jax.vmap(one, in_axes=(0, *axes))(x0, *args)


# Consecutive L-BFGS iterations without a new best point before a solve counts as stalled.
# optax's zoom search fails now and then on the kinked Huber objective and returns a worse
# point, yet plain continuation recovers: on the Chinchilla data, runs of up to 12 such
# iterations preceded convergence to the optimum (benchmarks/RESULTS.md, "Solvers"), so
# stopping at the first one would stall good starts. 25 leaves a 2x margin.
LBFGS_PATIENCE = 25


class _LbfgsCarry(NamedTuple):
    x: jax.Array  # optax's iterate (may be worse than the best point)
    opt_state: optax.OptState
    f: jax.Array
    g: jax.Array
    best: tuple[jax.Array, jax.Array, jax.Array]  # (x, f, g) of the best point so far
    fails: jax.Array  # consecutive iterations without a new best point
    k: jax.Array  # L-BFGS iterations (line searches) so far
    status: jax.Array


def minimize_lbfgs(
    fun: Callable[[jax.Array], jax.Array],
    x0: jax.Array,
    *,
    max_steps: int = 500,
    gtol: float = 1e-10,
    memory_size: int = 10,
) -> SolverResult:
    """Minimise ``fun`` from ``x0 [p]`` with ``optax.lbfgs`` and its zoom line search.

    For laws with many parameters, where a dense inverse Hessian stops being free, and as an
    independent cross-check of :func:`minimize`. Returns the best point seen, with the same
    :class:`SolverResult` and status codes, except that ``steps`` counts L-BFGS iterations
    (each one line search of one or more objective+gradient evaluations) and ``max_steps``
    bounds them. ``LBFGS_PATIENCE`` iterations in a row without a lower ``f`` (or, at equal
    ``f``, a smaller ``max|∇f|``) end the solve as ``STALLED``, or ``CONVERGED`` if
    ``max|∇f| ≤ sqrt(gtol)`` (as :func:`step` does when its step vanishes); an iterate whose
    ``f`` or gradient is not finite ends it as ``NONFINITE``. Pure and traceable (``vmap``
    runs a batch in lockstep); respects the dtype of ``x0``.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from jaxscale.solver import minimize_lbfgs
        >>> with jax.enable_x64(True):
        ...     f = lambda x: jnp.sum((x - jnp.array([1.0, -2.0])) ** 2) + 0.1 * jnp.sum(x**4)
        ...     res = jax.vmap(lambda x0: minimize_lbfgs(f, x0))(jnp.zeros((3, 2)))
        >>> np.asarray(res.status).tolist(), np.round(np.asarray(res.x[0]), 6).tolist()
        ([0, 0, 0], [0.86883, -1.423318])
    """
    dtype = jnp.asarray(x0).dtype

    def objective(x):
        # The line search stores f in x0's dtype: a fun that promotes (float32 x, float64
        # constants) would otherwise change the loop's carry type.
        return jnp.asarray(fun(x), dtype)

    opt = optax.lbfgs(memory_size=memory_size)
    # At the start (no stored value yet) this evaluates fun; afterwards it would return the
    # value and gradient the line search computed at its accepted point.
    value_and_grad = optax.value_and_grad_from_state(objective)

    def body(c: _LbfgsCarry) -> _LbfgsCarry:
        updates, state = opt.update(c.g, c.opt_state, c.x, value=c.f, grad=c.g, value_fn=objective)
        x = optax.apply_updates(c.x, updates)
        # What value_and_grad(x, state=state) returns, read directly: under vmap its lax.cond
        # becomes a select that evaluates fun once more per iteration.
        # Where the stored value is not finite, re-evaluating would give the same value.
        f, g = optax.tree.get(state, "value"), optax.tree.get(state, "grad")
        finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(g))
        _, best_f, best_g = c.best
        gmax, best_gmax = jnp.max(jnp.abs(g)), jnp.max(jnp.abs(best_g))
        # At equal f a smaller gradient is progress: near the optimum f stops changing in
        # its last bits before the gradient is small.
        improved = finite & ((f < best_f) | ((f == best_f) & (gmax < best_gmax)))
        best = jax.tree.map(lambda a, b: jnp.where(improved, a, b), (x, f, g), c.best)
        fails = jnp.where(improved, 0, c.fails + 1)
        k = c.k + 1
        stalled = fails >= LBFGS_PATIENCE
        status = status_code(finite, stalled, jnp.max(jnp.abs(best[2])), k, max_steps=max_steps, gtol=gtol)
        return _LbfgsCarry(x, state, f, g, best, fails, k, status)

    state0 = opt.init(x0)
    f0, g0 = value_and_grad(x0, state=state0)
    finite0 = jnp.isfinite(f0) & jnp.all(jnp.isfinite(g0))
    k0 = jnp.array(0, jnp.int32)
    status0 = status_code(finite0, jnp.array(False), jnp.max(jnp.abs(g0)), k0, max_steps=max_steps, gtol=gtol)
    init = _LbfgsCarry(x0, state0, f0, g0, (x0, f0, g0), k0, k0, status0)
    final = lax.while_loop(lambda c: c.status == RUNNING, body, init)
    x, f, g = final.best
    return SolverResult(x, f, jnp.max(jnp.abs(g)), final.k, final.status)
