"""Which starts to refine: every candidate start ranked by its initial objective, per problem.

Many problems on shared data (bootstrap resamples) are ranked by one matrix product: the
objective of start ``s`` under weights ``w`` is ``w @ R[s]``, where ``R[s, i]`` is the loss of
start ``s`` at point ``i``, because the objective is linear in the weights. A single fit, or
groups with data of their own, are ranked one problem at a time in two stages.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import backends
from .objective import point_losses
from .problem import Config, Data, full_theta
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
        coarse = coarse_loss(cfg, data, starts_c)
        w_coarse = w
    else:
        # Evenly spaced over the points up to the last of positive weight: padding (weight-0
        # points appended to reach a kernel's shape) is never sampled.
        n_valid = n_points - jnp.argmax(w[::-1] > 0)
        sub = jnp.round(jnp.linspace(0.0, 1.0, SCREEN_POINTS) * (n_valid - 1)).astype(jnp.int32)
        coarse = coarse_loss(cfg, data, starts_c, sub)
        w_coarse = w[sub]
    pre = best(w_coarse.astype(coarse.dtype) @ coarse.T, keep)
    return pre[best(w @ point_loss(cfg, data, starts_c[pre]).T, n_refine)]


def screen(cfg: Config, data: Data, starts_c, weights, n_refine: int, grouped: bool = False):
    """Indices ``[B, n_refine]`` of each problem's best starts by initial objective (or all)."""
    n_starts = starts_c.shape[-2]
    if n_refine >= n_starts:
        return jnp.broadcast_to(jnp.arange(n_starts), (weights.shape[0], n_starts))
    if grouped:  # a few problems at a time (backends.sizes): [S, P] per problem rather than [B, S, P] at once
        batch = backends.sizes().screen_batch
        return jax.lax.map(
            lambda a: screen_one(cfg, a[0], a[1], a[2], n_refine),
            (data, starts_c, weights),
            batch_size=None if batch <= 1 else batch,
        )
    if weights.shape[0] == 1:
        return screen_one(cfg, data, starts_c, weights[0], n_refine, alone=True)[None]
    # Many problems on shared data: one [S, P] table serves them all, since the objective is
    # linear in the weights.
    screened = weights @ point_loss(cfg, data, starts_c).T  # [B, S]
    # Row by row on a CPU (backends.sizes): the selection's bisection stops early, and under
    # vmap each pass would wait for the slowest row of the batch.
    batch = backends.sizes().screen_batch
    return jax.lax.map(lambda v: smallest_k(v, n_refine), screened, batch_size=None if batch <= 1 else batch)
