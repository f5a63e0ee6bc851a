"""Which starts to refine: every candidate start ranked by its initial objective, per problem.

Many problems on shared data (bootstrap resamples) are ranked by one matrix product: the
objective of start ``s`` under weights ``w`` is ``w @ R[s]``, where ``R[s, i]`` is the loss of
start ``s`` at point ``i``, because the objective is linear in the weights. A single fit, or
groups with data of their own, are ranked one problem at a time in two stages. The kernel takes
each problem's best starts from :func:`screened_starts` (groups center the candidates on their
own data there), and a staged first pass spread over them from :func:`spread_first`.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from . import backends, specs
from .laws import Law
from .objective import point_losses
from .problem import Config, Data, centered_starts, full_theta
from .selection import SORT_AT_MOST, smallest_k

# Two-stage screening of one problem's data (a single fit, or each group): rank every start on
# SCREEN_POINTS evenly spaced points, keep the best max(PRESELECT, PRESELECT_PER_REFINED x
# n_refine), rank those on all points. The exact ranking of S starts costs S x P loss
# evaluations per problem, most of a grouped fit's time; this costs S x 32 + 128 x P for 8
# refined starts (256 x P for a fit's 64). On the 10,000-group archive, keeping 128 rather than
# 256 of the 4,500 changed the 8 chosen on 3 groups (64: on 245) and cut screening by 18%
# (benchmarks/RESULTS.md, "Screening"). Used only where P and S are large enough to gain.
SCREEN_POINTS = 32
PRESELECT = 128
PRESELECT_PER_REFINED = 4


def point_loss(cfg: Config, data: Data, starts_c, points=None):
    """Loss ``[S, P']`` of every start at every point (or at the given point indices)."""
    log_x, log_y = (data.log_x, data.log_y) if points is None else (data.log_x[points], data.log_y[points])
    return jax.vmap(
        lambda x: point_losses(
            cfg.law.log_predict(full_theta(cfg, data, x), log_x),
            log_y,
            loss_fn=cfg.loss_fn,
            delta=cfg.delta,
            scale=cfg.scale,
            penalty=cfg.penalty,
        )
    )(starts_c)


def coarse_loss(cfg: Config, data: Data, starts_c, points=None):
    """:func:`point_loss` for a first, coarse ranking: in float32 where the law allows it.

    A float64 exp or log costs XLA:CPU several times its float32 counterpart, and this ranking
    is most of screening's arithmetic (benchmarks/RESULTS.md, "float32 coarse screening"). The
    best PRESELECT of that ranking are ranked again in float64 on every point, so float32's
    ~1e-7 relative rounding only decides which of the starts near the last place kept are kept,
    never the final order.
    """
    if coarse_in_float32(cfg, starts_c):
        data, starts_c = jax.tree.map(lambda a: a.astype(jnp.float32), (data, starts_c))
    return point_loss(cfg, data, starts_c, points)


def coarse_in_float32(cfg: Config, starts_c) -> bool:
    return cfg.law.screen_float32 and starts_c.dtype == jnp.float64


def coarse_values(cfg: Config, data: Data, starts_c, w, points=None):
    """Objective ``[S]`` of every start under weights ``w`` at the given points (all by default)
    for the coarse ranking: term by term where ``cfg.grid_starts`` (:func:`grid_values`), else
    from :func:`coarse_loss`."""
    if cfg.grid_starts:
        dtype = jnp.float32 if coarse_in_float32(cfg, starts_c) else starts_c.dtype
        return grid_values(cfg, data, w, points, dtype)
    coarse = coarse_loss(cfg, data, starts_c, points)
    return w.astype(coarse.dtype) @ coarse.T


@functools.cache
def _term_clusters(law: Law, free: tuple[int, ...]) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] | None:
    """The terms of a LogSumExp-linear law (``laws.lse_linear``) in clusters that share no free
    parameter, as ``(free parameters, terms)`` pairs; None for other laws, or where a free
    parameter is in no term."""
    terms = getattr(law.log_predict, "lse_terms", None)
    if terms is None:
        return None
    clusters: list[tuple[set[int], list[int]]] = []
    for j, (coef, powers) in enumerate(terms):
        params = ({coef} if coef is not None else set()) | {e for e, _ in powers}
        params &= set(free)
        joined = [c for c in clusters if c[0] & params]
        clusters = [c for c in clusters if not c[0] & params]
        clusters.append((params.union(*(c[0] for c in joined)), sorted([j, *(t for c in joined for t in c[1])])))
    if set().union(*(c[0] for c in clusters)) != set(free):
        return None
    return tuple((tuple(sorted(p)), tuple(t)) for p, t in clusters)


def with_grid_starts(cfg: Config, starts) -> Config:
    """``cfg`` with ``grid_starts`` set where the candidate ``starts [S, p]`` are the law's grid
    (:func:`jaxscale.specs.grid_starts`) and the law a LogSumExp of linear terms: the coarse
    ranking may then build each start's prediction from its terms' values (:func:`grid_values`).

    Example:
        >>> import jaxscale as js
        >>> spec = specs.make_spec(js.get_law("chinchilla"))
        >>> grid = spec.candidates
        >>> with_grid_starts(spec.cfg, grid).grid_starts, with_grid_starts(spec.cfg, grid[:9]).grid_starts
        (True, False)
    """
    starts = np.asarray(starts)
    grid = _law_grid(cfg.law, cfg.free) if _term_clusters(cfg.law, cfg.free) is not None else None
    return cfg._replace(grid_starts=grid is not None and starts.shape == grid.shape and bool(np.all(starts == grid)))


@functools.cache
def _law_grid(law: Law, free: tuple[int, ...]) -> np.ndarray:
    """:func:`jaxscale.specs.grid_starts`, built once per law and free set (every solve checks its
    candidates against it), read-only."""
    grid = specs.grid_starts(law, free)
    grid.setflags(write=False)
    return grid


def grid_values(cfg: Config, data: Data, w, points=None, dtype=jnp.float32):
    """Objective ``[S]`` of every start of the law's grid (``cfg.grid_starts``), in ``dtype``,
    under weights ``w`` at the given points.

    The grid is a Cartesian product, and each LogSumExp term depends on a few of its
    parameters: Chinchilla's ``exp(a − α log N)`` takes 30 values per point, not 4,500. So the
    exps are taken once per value of each term, summed over the product by broadcasting, and
    only the log and the loss are per start and point (benchmarks/RESULTS.md, "Screening", for
    what that saves). The shift by the largest term at each point keeps
    every exp at most 1; a start whose terms all lie ~88 below it (far beyond the data, a
    hopeless start) rounds to a zero sum and ranks last.
    """
    law, free = cfg.law, cfg.free
    log_x, log_y = (data.log_x, data.log_y) if points is None else (data.log_x[points], data.log_y[points])
    log_x, log_y, fixed = log_x.astype(dtype), log_y.astype(dtype), data.theta_fixed.astype(dtype)
    sizes = [len(law.grid[i]) for i in free]
    parts = []  # per cluster: its terms' values [values of its parameters, points], its broadcast shape
    for params, members in _term_clusters(law, free):
        combos = list(itertools.product(*(law.grid[i] for i in params)))  # [()] where none is free
        sub = np.array(combos, dtype=dtype).reshape(len(combos), len(params))
        # theta [p, combinations, 1]: the cluster's grid values, the held-fixed values elsewhere
        # (the other free parameters' rows are not read by the cluster's terms).
        theta = jnp.stack(
            [
                jnp.asarray(sub[:, params.index(i), None]) if i in params else jnp.full((len(sub), 1), fixed[i])
                for i in range(law.n_params)
            ]
        )
        ts = law.log_predict.term_values(theta, log_x)
        parts.append(
            ([ts[j] for j in members], [size if i in params else 1 for i, size in zip(free, sizes, strict=True)])
        )
    top = jax.lax.stop_gradient(functools.reduce(jnp.maximum, [jnp.max(t, axis=0) for ts, _ in parts for t in ts]))
    total = functools.reduce(jnp.add, [sum(jnp.exp(t - top) for t in ts).reshape(*shape, -1) for ts, shape in parts])
    log_pred = (top + jnp.log(total)).reshape(-1, log_y.shape[0])
    losses = point_losses(log_pred, log_y, loss_fn=cfg.loss_fn, delta=cfg.delta, scale=cfg.scale, penalty=cfg.penalty)
    return losses @ w.astype(dtype)


def screen_one(cfg: Config, data: Data, starts_c, w, n_refine: int, alone: bool = False):
    """Indices ``[n_refine]`` of one problem's best starts by initial objective.

    ``alone``: the kernel screens only this problem (a single fit), so its long first ranking
    is sorted rather than bisected: the same starts, about a millisecond more once per fit, for
    a kernel that compiles faster (benchmarks/RESULTS.md, "Compile time"). Kernels that screen
    many problems keep the bisection, cheaper per problem.
    """
    n_starts, n_points = starts_c.shape[0], data.log_y.shape[0]
    keep = max(PRESELECT, PRESELECT_PER_REFINED * n_refine)
    sort_at_most = n_starts if alone else SORT_AT_MOST

    def best(values, k):
        return smallest_k(values, k, sort_at_most)

    if n_starts <= 2 * keep or (n_points <= 2 * SCREEN_POINTS and not coarse_in_float32(cfg, starts_c)):
        return best(w @ point_loss(cfg, data, starts_c).T, n_refine)
    if n_points <= 2 * SCREEN_POINTS:  # few points: the coarse ranking uses them all
        coarse = coarse_values(cfg, data, starts_c, w)
    else:
        # Evenly spaced over the points up to the last of positive weight: padding (weight-0
        # points appended to reach a kernel's shape) is never sampled.
        n_valid = n_points - jnp.argmax(w[::-1] > 0)
        sub = jnp.round(jnp.linspace(0.0, 1.0, SCREEN_POINTS) * (n_valid - 1)).astype(jnp.int32)
        coarse = coarse_values(cfg, data, starts_c, w[sub], sub)
    pre = best(coarse, keep)
    return pre[best(w @ point_loss(cfg, data, starts_c[pre]).T, n_refine)]


def screen(cfg: Config, data: Data, starts_c, weights, n_refine: int):
    """Indices ``[B, n_refine]`` of each problem's best starts by initial objective (or all), for
    problems that share ``data`` (groups, each with data of its own, are screened one at a time
    by :func:`screen_one`: :func:`screened_starts`)."""
    n_starts = starts_c.shape[-2]
    if n_refine >= n_starts:
        return jnp.broadcast_to(jnp.arange(n_starts), (weights.shape[0], n_starts))
    if weights.shape[0] == 1:
        return screen_one(cfg, data, starts_c, weights[0], n_refine, alone=True)[None]
    # Many problems on shared data: one [S, P] table serves them all, since the objective is
    # linear in the weights.
    screened = weights @ point_loss(cfg, data, starts_c).T  # [B, S]
    # Row by row on a CPU (backends.sizes): the selection's bisection stops early, and under
    # vmap each pass would wait for the slowest row of the batch.
    batch = backends.sizes().screen_batch
    return jax.lax.map(lambda v: smallest_k(v, n_refine), screened, batch_size=None if batch <= 1 else batch)


def screened_starts(
    cfg: Config, data: Data, starts, weights, n_refine: int, grouped: bool
) -> tuple[jax.Array, jax.Array]:
    """Each problem's best ``n_refine`` starts by initial objective (:mod:`jaxscale.screening`),
    in the solver's coordinates, ``[B, K, p_free]`` in rank order, and the spread of all the
    starts per coordinate (for :func:`spread_first`): ``[p_free]``, or ``[B, 1, p_free]`` grouped.

    Shared data: ``starts [S, p_free]``, centered once for all problems. Grouped: ``starts
    [S, p]`` in the law's fitted parameters, centered on each problem's data as it is screened
    (a few problems at a time, :data:`jaxscale.backends.Sizes.screen_batch`): the ``[B, S,
    p_free]`` table of every problem's centered starts is never built, only its screened rows.

    Example:
        >>> import jax, numpy as np
        >>> import jaxscale as js
        >>> from jaxscale import problem, specs
        >>> spec, runs = specs.make_spec(js.get_law("chinchilla")), js.datasets.chinchilla()
        >>> with jax.enable_x64(True):
        ...     data = specs.make_data(spec, runs.log_inputs(), runs.log_loss())
        ...     starts_c = problem.centered_starts(spec.cfg, data, spec.candidates)
        ...     picked, scale = screened_starts(spec.cfg, data, starts_c, np.ones((1, runs.n_points)), 8, False)
        >>> picked.shape, scale.shape
        ((1, 8, 5), (5,))
    """
    if not grouped:
        idx = screen(cfg, data, starts, weights, n_refine)
        return starts[idx], jnp.std(starts, axis=0)

    def one(args):
        d, w = args
        starts_c = centered_starts(cfg, d, starts)
        n_starts = starts_c.shape[0]
        idx = jnp.arange(n_starts) if n_refine >= n_starts else screen_one(cfg, d, starts_c, w, n_refine)
        return starts_c[idx], jnp.std(starts_c, axis=0, keepdims=True)

    batch = backends.sizes().screen_batch
    return jax.lax.map(one, (data, weights), batch_size=None if batch <= 1 else batch)


def spread_first(picked, scale, first: int) -> jax.Array:
    """A permutation ``[B, K]`` of each problem's screened starts ``picked [B, K, p_free]`` (in
    rank order) whose first ``first`` are the best start and then, one by one, the start
    farthest from those already taken (distances in units of ``scale``, the start grid's spread
    per coordinate, ``[p_free]`` or ``[B, 1, p_free]``): starts that agree from far apart are
    better evidence of one basin than neighbours of the best, which tend to share its basin
    whatever it is.

    Example:
        >>> import numpy as np
        >>> picked = np.array([[[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [0.0, 3.0]]])
        >>> spread_first(picked, np.ones(2), 2).tolist()
        [[0, 2, 1, 3]]
    """
    pts = picked / (scale + 1e-12)

    def order(p):  # p [K, p_free] -> a permutation of range(K)
        taken = jnp.zeros(p.shape[0], bool).at[0].set(True)
        near = jnp.sum((p - p[0]) ** 2, axis=-1)  # squared distance to the nearest taken start
        for _ in range(first - 1):
            pick = jnp.argmax(jnp.where(taken, -1.0, near))
            taken = taken.at[pick].set(True)
            near = jnp.minimum(near, jnp.sum((p - p[pick]) ** 2, axis=-1))
        return jnp.argsort(~taken, stable=True)  # taken ones first, each part in rank order

    return jax.vmap(order)(pts)
