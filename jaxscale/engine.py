"""The one compiled kernel behind fit, bootstrap and groups: starts × weights → best optimum.

A *problem* is one weight vector over the data points (the plain fit: all ones; a bootstrap
resample: multinomial counts; a cluster resample: per-cluster counts). For each problem the
kernel optionally screens a candidate start set by its initial objective, refines the best
few with the lockstep BFGS of :mod:`jaxscale.solver`, and keeps the best start. Problems are
processed in chunks of a fixed size (one compilation, bounded memory, cache-sized batches).

Screening costs one matrix product: the objective of every candidate start for every
problem is ``W @ R.T`` where ``R[s, i]`` is the loss of start ``s`` at point ``i``, because
the objective is linear in the weights.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .laws import Law, center, uncenter
from .objective import law_objective, residual_loss
from .solver import minimize


class Config(NamedTuple):
    """Static configuration of a kernel (hashable: it is a jit static argument)."""

    law: Law
    loss: str
    delta: float
    free: tuple[int, ...]  # indices of the fitted parameters being optimised
    max_steps: int
    gtol: float


class Data(NamedTuple):
    """Arrays shared by every problem of a call."""

    log_x: jax.Array  # [P, k]
    log_y: jax.Array  # [P]
    theta_fixed: jax.Array  # [p]: values of the held-fixed parameters (others ignored)
    shift: jax.Array  # [n_pairs]: centre per law.center_pairs (0 = not centred)


class Best(NamedTuple):
    """Per-problem outcome: the best start's optimum, in the law's fitted parameters."""

    theta: jax.Array  # [B, p]
    value: jax.Array  # [B]
    status: jax.Array  # [B]
    steps: jax.Array  # [B]
    grad_norm: jax.Array  # [B]
    start: jax.Array  # [B]: index into the candidate start set
    start_values: jax.Array  # [B, S']: final objective of every refined start


def _full(cfg: Config, data: Data, x_free):
    return uncenter(cfg.law, data.theta_fixed.at[..., cfg.free].set(x_free), data.shift)


def _objective(cfg: Config, data: Data, x_free, weights):
    theta = _full(cfg, data, x_free)
    return law_objective(theta, cfg.law, data.log_x, data.log_y, weights, loss=cfg.loss, delta=cfg.delta)


def centred_starts(cfg: Config, data: Data, starts: np.ndarray) -> jax.Array:
    """Starts in the law's fitted parameters ``[S, p]`` -> the solver's free, centred coordinates."""
    free_mask = np.isin(np.arange(cfg.law.n_params), cfg.free)
    theta = jnp.where(free_mask, jnp.asarray(starts), data.theta_fixed)
    return center(cfg.law, theta, data.shift)[:, cfg.free]


@partial(jax.jit, static_argnames=("cfg", "n_refine"))
def solve_chunk(cfg: Config, data: Data, starts_c: jax.Array, weights: jax.Array, n_refine: int) -> Best:
    """Solve one chunk of problems. ``starts_c [S, p_free]`` (centred), ``weights [B, P]``.

    ``n_refine < S`` screens the starts per problem and refines the best ``n_refine``;
    otherwise every start is refined.
    """
    n_starts = starts_c.shape[0]
    if n_refine < n_starts:
        point_loss = jax.vmap(
            lambda x: residual_loss(
                cfg.law.log_predict(_full(cfg, data, x), data.log_x) - data.log_y, loss=cfg.loss, delta=cfg.delta
            )
        )(starts_c)  # [S, P]
        screened = weights @ point_loss.T  # [B, S]
        screened = jnp.where(jnp.isnan(screened), jnp.inf, screened)
        _, idx = jax.lax.top_k(-screened, n_refine)  # [B, n_refine]
    else:
        idx = jnp.broadcast_to(jnp.arange(n_starts), (weights.shape[0], n_starts))
    x0 = starts_c[idx]  # [B, S', p_free]

    def one_start(x, w):
        return minimize(lambda z: _objective(cfg, data, z, w), x, max_steps=cfg.max_steps, gtol=cfg.gtol)

    res = jax.vmap(jax.vmap(one_start, in_axes=(0, None)))(x0, weights)
    values = jnp.where(jnp.isfinite(res.value), res.value, jnp.inf)
    best = jnp.argmin(values, axis=1)

    def pick(a):
        return jnp.take_along_axis(a, best.reshape((-1,) + (1,) * (a.ndim - 1)), axis=1)[:, 0]

    return Best(
        theta=jax.vmap(lambda x: _full(cfg, data, x))(pick(res.x)),
        value=pick(res.value),
        status=pick(res.status),
        steps=pick(res.steps),
        grad_norm=pick(res.grad_norm),
        start=jnp.take_along_axis(idx, best[:, None], axis=1)[:, 0],
        start_values=values,
    )


def solve(
    cfg: Config,
    data: Data,
    starts: np.ndarray,
    weights: np.ndarray,
    *,
    n_refine: int,
    chunk_size: int,
    progress=None,
) -> Best:
    """All problems (rows of ``weights [B, P]``) in chunks of ``chunk_size`` problems.

    The last chunk is padded with copies of the first problem and trimmed, so every chunk
    has the same shape and the kernel compiles once. Results do not depend on ``chunk_size``
    because no computation mixes problems.
    """
    starts_c = centred_starts(cfg, data, starts)
    weights = np.asarray(weights)
    n = weights.shape[0]
    chunk = max(1, min(chunk_size, n))
    outs = []
    for lo in range(0, n, chunk):
        w = weights[lo : lo + chunk]
        pad = chunk - w.shape[0]
        if pad:
            w = np.concatenate([w, np.repeat(weights[:1], pad, axis=0)])
        out = solve_chunk(cfg, data, starts_c, jnp.asarray(w), min(n_refine, starts_c.shape[0]))
        outs.append(jax.tree.map(lambda a, keep=chunk - pad: np.asarray(a)[:keep], out))
        if progress is not None:
            progress(min(lo + chunk, n), n)
    return Best(*(np.concatenate(parts) for parts in zip(*outs, strict=True)))


def make_data(law: Law, log_x: np.ndarray, log_y: np.ndarray, theta_fixed: np.ndarray, free: tuple[int, ...]) -> Data:
    """Centre each coefficient/exponent pair on its input's mean, unless the coefficient is fixed."""
    means = log_x.mean(axis=0)
    shift = np.array([means[inp] if coef in free else 0.0 for coef, _, inp in law.center_pairs])
    return Data(jnp.asarray(log_x), jnp.asarray(log_y), jnp.asarray(theta_fixed), jnp.asarray(shift))
