"""Refinement passes within one kernel call: a first pass, then more starts where it is in doubt.

A staged call refines each problem's first few screened starts, then the rest of its refined
starts for the problems the first pass leaves in doubt (:func:`jaxscale.refinement.in_doubt_traced`),
and, where the call also retries (``fit_groups``), more screened starts for the problems whose
best start did not converge or lost a term (:func:`jaxscale.refinement.retried_traced`, the
rows :func:`jaxscale.refinement.retry` solves again). Every pass runs on the same lanes as one
loop body (:mod:`jaxscale.engine`'s lane loop, handed in as ``solve``), so the solver compiles
once and no pass needs a kernel of its own.

Example:
    >>> import jax.numpy as jnp
    >>> x0, owner = items(jnp.arange(12.0).reshape(6, 2), jnp.array([[0, 2], [5, 1]]), grouped=False)
    >>> x0.tolist(), owner.tolist()
    ([[0.0, 1.0], [4.0, 5.0], [10.0, 11.0], [2.0, 3.0]], [0, 0, 1, 1])
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from . import refinement, solver
from .problem import Config, Data, full_theta, sensitivity

SKIPPED = 9  # status of a start no pass refined (value NaN)


def items(starts_c, idx, grouped: bool):
    """The starts ``idx [B, K]`` (indices into each problem's candidates) as items: ``x0 [B * K,
    p_free]`` and each item's problem ``owner [B * K]``."""
    n_problems, k = idx.shape
    owner = jnp.repeat(jnp.arange(n_problems), k)
    return (starts_c[owner, idx.reshape(-1)] if grouped else starts_c[idx.reshape(-1)]), owner


def spread_first(starts_c, idx, first: int, grouped: bool):
    """``idx [B, K]`` reordered so that its first ``first`` columns are the best screened start and
    then, one by one, the start farthest from those already taken (distances in units of the
    start grid's spread per coordinate): starts that agree from far apart are better evidence of
    one basin than neighbours of the best, which tend to share its basin whatever it is."""
    scale = jnp.std(starts_c, axis=-2, keepdims=True) + 1e-12  # [1, p] or [B, 1, p]
    pts = jnp.take_along_axis(starts_c / scale, idx[..., None], axis=-2) if grouped else (starts_c / scale)[idx]

    def order(p):  # p [K, p_free] -> a permutation of range(K)
        taken = jnp.zeros(p.shape[0], bool).at[0].set(True)
        near = jnp.sum((p - p[0]) ** 2, axis=-1)  # squared distance to the nearest taken start
        for _ in range(first - 1):
            pick = jnp.argmax(jnp.where(taken, -1.0, near))
            taken = taken.at[pick].set(True)
            near = jnp.minimum(near, jnp.sum((p - p[pick]) ** 2, axis=-1))
        return jnp.argsort(~taken, stable=True)  # taken ones first, each part in rank order

    perm = jax.vmap(order)(pts)
    return jnp.take_along_axis(idx, perm, axis=1)


def staged(
    solve: Callable,
    cfg: Config,
    data: Data,
    starts_c,
    idx,
    weights,
    grouped: bool,
    first: int,
    spread: bool,
    n_refine: int | None = None,
):
    """Refine each problem's best ``first`` screened starts of ``idx [B, K]``, then, in the same
    call and on the same lanes, the rest of its first ``n_refine`` (default ``K``) for the
    problems that first pass leaves in doubt; ``spread``: the first pass is spread over the
    ``n_refine`` (:func:`spread_first`), else the best ``first``. With ``n_refine < K`` a third
    pass refines the rest of the ``K`` for the problems whose best of the first ``n_refine`` did
    not converge or lost a term: :func:`jaxscale.refinement.retry`'s retry, in the call, with its
    solver (:func:`jaxscale.refinement.retry_config`: ``"bfgs_mixed"``'s float64 BFGS).

    ``solve(x0, owner, n_items, double)`` solves the first ``n_items`` items (``double``: those
    in float64 from their start, or None) on the call's lanes. Results ``[B * K]`` (the
    screened ranks, reordered where spread); the starts not refined have value NaN and status
    :data:`SKIPPED`. Each refined start's arithmetic is what it is unstaged (the lanes' width is
    the same), so a problem in doubt gets exactly its ``n_refine``-start result.
    """
    n_problems, k = idx.shape
    n_refine = k if n_refine is None else n_refine
    retries = n_refine < k
    if spread:
        idx = jnp.concatenate([spread_first(starts_c, idx[:, :n_refine], first, grouped), idx[:, n_refine:]], axis=1)
    x0, owner = items(starts_c, idx, grouped)
    per_problem = 0 if grouped else None
    column = jnp.tile(jnp.arange(k), n_problems)  # [B * K]
    # A retry's float64 BFGS (refinement.retry_config) is, for "bfgs_mixed", a lane finishing from its start.
    double = (column >= n_refine) if retries and cfg.method == "bfgs_mixed" else None

    def best_of(x, value, status, d, w, n: int):
        """The best of a problem's first ``n`` columns: its parameters, status and sensitivity."""
        best = jnp.argmin(jnp.where(jnp.isfinite(value[:n]), value[:n], jnp.inf))
        theta = full_theta(cfg, d, x[best])
        return theta, status[best], sensitivity(cfg, d, theta, w)

    def next_passes(x, value, status, d, w):
        theta, best_status, sens = best_of(x, value, status, d, w, first)
        doubt = refinement.in_doubt_traced(cfg, theta, value[:first], best_status, sens)
        if not retries:
            return doubt, doubt
        return doubt, refinement.retried_traced(cfg, *best_of(x, value, status, d, w, n_refine))

    def stage(carry, i):
        # One pass over the items ``wanted``, moved to the front of the queue; then the items
        # of the next pass. Every pass is this one loop body, so the solver compiles once (a
        # pass's criteria, a sensitivity or two per problem, are computed each time and dropped
        # where no pass follows: little beside the solve).
        res, wanted = carry
        order = jnp.argsort(~wanted, stable=True)
        out = solve(x0[order], owner[order], jnp.sum(wanted), None if double is None else double[order])
        out = jax.tree.map(lambda a: jnp.zeros_like(a).at[order].set(a), out)  # back to problem order
        res = jax.tree.map(lambda r, o: jnp.where(wanted.reshape((-1,) + (1,) * (o.ndim - 1)), o, r), res, out)
        per = jax.tree.map(lambda a: a.reshape((n_problems, k) + a.shape[1:]), res)
        doubt, again = jax.vmap(next_passes, in_axes=(0, 0, 0, per_problem, 0))(
            per.x, per.value, per.status, data, weights
        )
        more = jnp.repeat(doubt, k) & (column >= first) & (column < n_refine)
        if retries:
            more = jnp.where(i == 0, more, jnp.repeat(again, k) & (column >= n_refine))
        return (res, more), None

    skipped = solver.unsolved(x0, value=jnp.nan, status=SKIPPED)  # the starts no pass refines
    (res, _), _ = jax.lax.scan(stage, (skipped, column < first), jnp.arange(3 if retries else 2))
    return res
