"""The one compiled kernel behind fit and bootstrap: starts × weights → best optimum.

A *problem* is one weight vector over the data points (the plain fit: all ones; a bootstrap
resample: multinomial counts; a cluster resample: per-cluster counts). For each problem the
kernel optionally screens a candidate start set by its initial objective, refines the best
few with the lockstep BFGS of :mod:`jaxscale.solver` (or optax's L-BFGS, ``Config.method``),
and keeps the best start. Problems are processed in chunks of a fixed size (one compilation,
bounded memory, cache-sized batches).

Screening costs one matrix product: the objective of every candidate start for every
problem is ``W @ R.T`` where ``R[s, i]`` is the loss of start ``s`` at point ``i``, because
the objective is linear in the weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from . import solver
from .laws import Law, center, uncenter
from .objective import law_objective, residual_loss

# "bfgs": the lane-refill dense BFGS of _solve_items (few parameters); "lbfgs": optax's
# L-BFGS, vmapped in plain lockstep (many parameters, and a cross-check).
METHODS = ("bfgs", "lbfgs")


class Config(NamedTuple):
    """Static configuration of a kernel (hashable: it is a jit static argument)."""

    law: Law
    loss: str
    delta: float
    free: tuple[int, ...]  # indices of the fitted parameters being optimised
    max_steps: int
    gtol: float
    method: str = "bfgs"  # one of METHODS


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
    start_values: jax.Array  # [B, S']: final objective of every refined start


def _full(cfg: Config, data: Data, x_free):
    return uncenter(cfg.law, data.theta_fixed.at[..., cfg.free].set(x_free), data.shift)


def _objective(cfg: Config, data: Data, x_free, weights):
    theta = _full(cfg, data, x_free)
    return law_objective(theta, cfg.law, data.log_x, data.log_y, weights, loss=cfg.loss, delta=cfg.delta)


def objective_value_and_grad(cfg: Config, data: Data, x_free, weights):
    """``(f, ∇f)`` in the solver's (free, centred) coordinates."""
    return jax.value_and_grad(_objective, argnums=2)(cfg, data, x_free, weights)


def centred_starts(cfg: Config, data: Data, starts: np.ndarray) -> jax.Array:
    """Starts in the law's fitted parameters ``[S, p]`` -> the solver's free, centred coordinates."""
    free_mask = np.isin(np.arange(cfg.law.n_params), cfg.free)
    theta = jnp.where(free_mask, jnp.asarray(starts), data.theta_fixed)
    return center(cfg.law, theta, data.shift)[:, cfg.free]


def _screen(cfg: Config, data: Data, starts_c, weights, n_refine: int):
    """Indices ``[B, n_refine]`` of each problem's best starts by initial objective (or all)."""
    n_starts = starts_c.shape[0]
    if n_refine >= n_starts:
        return jnp.broadcast_to(jnp.arange(n_starts), (weights.shape[0], n_starts))
    point_loss = jax.vmap(
        lambda x: residual_loss(
            cfg.law.log_predict(_full(cfg, data, x), data.log_x) - data.log_y, loss=cfg.loss, delta=cfg.delta
        )
    )(starts_c)  # [S, P]
    screened = weights @ point_loss.T  # [B, S]: the objective is linear in the weights
    screened = jnp.where(jnp.isnan(screened), jnp.inf, screened)
    return jax.lax.top_k(-screened, n_refine)[1]


def _solve_items(cfg: Config, data: Data, x0, owner, weights, lanes: int, refill_every: int):
    """Solve ``M`` items (start ``x0[i]`` with weights ``weights[owner[i]]``) on ``lanes`` lanes.

    A lockstep batch waits for its slowest member, and step counts here are heavy-tailed
    (a few starts crawl through the flat, L1-like part of the Huber loss). So lanes are
    refilled: every ``refill_every`` iterations, lanes whose item has finished write it out
    and take the next item from the queue. Each item's arithmetic is independent of which
    lane runs it and when, so results do not depend on ``lanes`` scheduling or chunking
    (the lane count fixes the compiled shape, so keep it fixed for bit-identical results).
    """
    n_items = x0.shape[0]

    def advance(state, lane_w):
        return jax.vmap(
            lambda st, w: solver.step(
                lambda z: objective_value_and_grad(cfg, data, z, w), st, max_steps=cfg.max_steps, gtol=cfg.gtol
            )
        )(state, lane_w)

    lane_item = jnp.arange(lanes)
    live = lane_item < n_items
    take = jnp.where(live, lane_item, 0)
    state = jax.vmap(solver.start)(x0[take])
    # Idle lanes (more lanes than items) start finished so they never count as work.
    state = state._replace(status=jnp.where(live, state.status, solver.MAX_STEPS))
    lane_item = jnp.where(live, lane_item, -1)
    out = solver.result(jax.vmap(solver.start)(x0))  # placeholders, every item is overwritten

    def cond(carry):
        return jnp.any(carry[1] >= 0)

    def body(carry):
        state, lane_item, next_item, out = carry
        lane_w = weights[owner[jnp.maximum(lane_item, 0)]]
        state = jax.lax.fori_loop(0, refill_every, lambda _, st: advance(st, lane_w), state)
        finished = (state.status != solver.RUNNING) & (lane_item >= 0)
        res = solver.result(state)
        dest = jnp.where(finished, lane_item, n_items)  # n_items: dropped
        out = jax.tree.map(lambda o, r: o.at[dest].set(r, mode="drop"), out, res)
        new_item = next_item + jnp.cumsum(finished) - 1
        refill = finished & (new_item < n_items)
        fresh = jax.vmap(solver.start)(x0[jnp.where(refill, new_item, 0)])
        state = jax.tree.map(lambda a, b: jnp.where(refill.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), fresh, state)
        lane_item = jnp.where(finished, jnp.where(refill, new_item, -1), lane_item)
        return state, lane_item, next_item + jnp.sum(finished), out

    init = (state, lane_item, jnp.minimum(lanes, n_items), out)
    return jax.lax.while_loop(cond, body, init)[3]


def _solve_items_lbfgs(cfg: Config, data: Data, x0, item_weights) -> solver.SolverResult:
    """Solve every item (start ``x0[i]``, weights ``item_weights[i]``) with optax's L-BFGS.

    Plain lockstep ``vmap``, no lane refill: the zoom line search is a nested loop that a
    lane cannot leave mid-way, so this path is for laws where BFGS's dense matrix is the cost.
    """
    return jax.vmap(
        lambda x, w: solver.minimize_lbfgs(
            lambda z: _objective(cfg, data, z, w), x, max_steps=cfg.max_steps, gtol=cfg.gtol
        )
    )(x0, item_weights)


def _solve_chunk(
    cfg: Config, data: Data, starts_c: jax.Array, weights: jax.Array, n_refine: int, lanes: int, refill_every: int = 8
) -> Best:
    """Solve one chunk of problems. ``starts_c [S, p_free]`` (centred), ``weights [B, P]``.

    ``n_refine < S`` screens the starts per problem and refines the best ``n_refine``;
    otherwise every start is refined. All ``B * n_refine`` refinements share ``lanes`` lanes
    (``cfg.method == "bfgs"``) or run side by side in one lockstep batch (``"lbfgs"``).
    """
    n_problems = weights.shape[0]
    idx = _screen(cfg, data, starts_c, weights, n_refine)  # [B, K]
    k = idx.shape[1]
    owner = jnp.repeat(jnp.arange(n_problems), k)
    x0 = starts_c[idx.reshape(-1)]
    if cfg.method == "lbfgs":
        res = _solve_items_lbfgs(cfg, data, x0, weights[owner])
    elif cfg.method == "bfgs":
        res = _solve_items(cfg, data, x0, owner, weights, lanes, refill_every)
    else:
        raise ValueError(f"unknown solver method {cfg.method!r}; choose one of {METHODS}")
    res = jax.tree.map(lambda a: a.reshape((n_problems, k) + a.shape[1:]), res)
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
        start_values=values,
    )


solve_chunk = jax.jit(_solve_chunk, static_argnames=("cfg", "n_refine", "lanes", "refill_every"))


@functools.lru_cache(maxsize=32)
def _sharded_solver(cfg: Config, n_refine: int, lanes: int, n_devices: int):
    """``solve_chunk`` over ``n_devices`` local devices, one chunk per device.

    Every device runs the same per-chunk program as the single-device path (same shapes),
    so results do not depend on the device count.
    """
    mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("devices",))
    fn = jax.shard_map(
        functools.partial(_solve_chunk, cfg, n_refine=n_refine, lanes=lanes),
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec(), PartitionSpec("devices")),
        out_specs=PartitionSpec("devices"),
        check_vma=False,
    )
    return jax.jit(fn)


WeightSource = Callable[[int, int], np.ndarray]


def solve(
    cfg: Config,
    data: Data,
    starts: np.ndarray,
    weights: np.ndarray | WeightSource,
    *,
    n_refine: int,
    chunk_size: int,
    n_problems: int | None = None,
    lanes: int = 512,
    devices: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Best:
    """All problems in chunks of ``chunk_size`` problems (``devices`` chunks at a time).

    ``weights`` is a ``[B, P]`` array, or a function ``(lo, hi) -> [hi - lo, P]`` (with
    ``n_problems``) so that weights are made chunk by chunk and memory stays bounded. The
    last chunk is padded with copies of its first problem and trimmed: every chunk has the
    same shape and the kernel compiles once. ``lanes`` is how many starts are iterated side
    by side (512 fits the CPU's cache best here). It is not capped by the size of a chunk:
    the lane count fixes the compiled arithmetic, so keeping it fixed makes results
    bit-identical across chunk sizes and device counts (idle lanes cost time only when a
    chunk has fewer refinements than lanes).
    """
    if callable(weights):
        source, n = weights, int(n_problems)
    else:
        array = np.asarray(weights)
        source, n = (lambda lo, hi: array[lo:hi]), array.shape[0]
    starts_c = centred_starts(cfg, data, starts)
    k = min(n_refine, starts_c.shape[0])
    chunk = max(1, min(chunk_size, -(-n // devices)))
    step = chunk * devices
    outs = []
    for lo in range(0, n, step):
        w = source(lo, min(lo + step, n))
        keep = w.shape[0]
        if keep < step:
            w = np.concatenate([w, np.repeat(w[:1], step - keep, axis=0)])
        if devices == 1:
            out = solve_chunk(cfg, data, starts_c, jnp.asarray(w), k, lanes)
        else:
            out = _sharded_solver(cfg, k, lanes, devices)(data, starts_c, jnp.asarray(w))
        outs.append(jax.tree.map(lambda a, keep=keep: np.asarray(a)[:keep], out))
        if progress is not None:
            progress(lo + keep, n)
    return Best(*(np.concatenate(parts) for parts in zip(*outs, strict=True)))


def make_data(law: Law, log_x: np.ndarray, log_y: np.ndarray, theta_fixed: np.ndarray, free: tuple[int, ...]) -> Data:
    """Centre each coefficient/exponent pair on its input's mean, unless the coefficient is fixed."""
    means = log_x.mean(axis=0)
    shift = np.array([means[inp] if coef in free else 0.0 for coef, _, inp in law.center_pairs])
    return Data(jnp.asarray(log_x), jnp.asarray(log_y), jnp.asarray(theta_fixed), jnp.asarray(shift))
