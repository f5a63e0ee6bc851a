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
from .selection import SORT_AT_MOST, smallest_k

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


class Limits(NamedTuple):
    """The solver's step budget and gradient tolerance, passed to kernels as arrays rather than
    in the static :class:`Config`, so that a new ``max_steps`` or ``gtol`` reuses the compiled
    kernel instead of compiling another (~3 s for a Chinchilla fit on 2 CPU cores)."""

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
    shift: jax.Array  # [n_pairs]: centre per law.center_pairs (0 = not centred)


class Best(NamedTuple):
    """Per-problem outcome: the best start's optimum, in the law's fitted parameters."""

    theta: jax.Array  # [B, p]
    value: jax.Array  # [B]
    status: jax.Array  # [B]
    steps: jax.Array  # [B]
    grad_norm: jax.Array  # [B]
    start_values: jax.Array  # [B, S']: final objective of every refined start
    sensitivity: jax.Array  # [B, p]: max over weighted points of |d log L / d theta_j| at theta


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


# Two-stage screening of one problem's data (a single fit, or each group): rank every start on
# SCREEN_POINTS evenly spaced points, keep the best PRESELECT, rank those on all points. The
# exact ranking of S starts costs S x P loss evaluations per problem, most of a grouped fit's
# time; this costs S x 32 + 256 x P. Used only where P and S are large enough to gain.
SCREEN_POINTS = 32
PRESELECT = 256


def _sensitivity(cfg: Config, data: Data, theta, w):
    """``max_i |∂ log L̂(x_i) / ∂θ_j|`` over the points of positive weight, per parameter ``[p]``.

    Near 0 when θ_j's term has vanished from the law at every run (e.g. ``A / N^α`` with α so
    large that the term is 1e-8 of the loss): the gradient along θ_j is then ~0 too, so the
    solver stops on that plateau and calls it converged, though the optimum may lie elsewhere.
    """
    jac = jax.jacfwd(lambda th: cfg.law.log_predict(th, data.log_x))(theta)  # [P, p]
    return jnp.max(jnp.where(w[:, None] > 0, jnp.abs(jac), 0.0), axis=0)


def _point_loss(cfg: Config, data: Data, starts_c, points=None):
    """Loss ``[S, P']`` of every start at every point (or at the given point indices)."""
    log_x, log_y = (data.log_x, data.log_y) if points is None else (data.log_x[points], data.log_y[points])
    return jax.vmap(
        lambda x: residual_loss(cfg.law.log_predict(_full(cfg, data, x), log_x) - log_y, loss=cfg.loss, delta=cfg.delta)
    )(starts_c)


def _coarse_loss(cfg: Config, data: Data, starts_c, points=None):
    """:func:`_point_loss` for a first, coarse ranking: in float32 where the law allows it.

    XLA:CPU spends ~2.4 ns on a float64 exp and ~8 ns on a float64 log, against ~0.6 and ~1.5
    in float32; ranking 4,500 starts on 32 points took 1.6-1.8 ms per problem in float64 and
    0.38 ms in float32 (2-core EPYC). The best PRESELECT of that ranking are ranked again in
    float64 on every point, so float32's ~1e-7 relative rounding only decides which of the
    starts near the 256th place are kept, never the final order.
    """
    if _coarse_in_float32(cfg, starts_c):
        data, starts_c = jax.tree.map(lambda a: a.astype(jnp.float32), (data, starts_c))
    return _point_loss(cfg, data, starts_c, points)


def _coarse_in_float32(cfg: Config, starts_c) -> bool:
    return cfg.law.screen_float32 and starts_c.dtype == jnp.float64


def _screen_one(cfg: Config, data: Data, starts_c, w, n_refine: int, alone: bool = False):
    """Indices ``[n_refine]`` of one problem's best starts by initial objective.

    ``alone``: the kernel screens only this problem (a single fit), so its long first ranking
    is sorted rather than bisected: the same starts, ~1 ms slower once per fit, while the
    240-point fit's kernel compiles in 3.1 s instead of 3.8 s (medians of 3, 2-core CPU).
    Kernels that screen many problems keep the bisection, cheaper per problem.
    """
    n_starts, n_points = starts_c.shape[0], data.log_y.shape[0]
    keep = max(PRESELECT, n_refine)
    sort_at_most = n_starts if alone else SORT_AT_MOST

    def best(values, k):
        return smallest_k(values, k, sort_at_most)

    if n_starts <= 2 * keep or (n_points <= 2 * SCREEN_POINTS and not _coarse_in_float32(cfg, starts_c)):
        return best(w @ _point_loss(cfg, data, starts_c).T, n_refine)
    if n_points <= 2 * SCREEN_POINTS:  # few points: the coarse ranking uses them all
        coarse = _coarse_loss(cfg, data, starts_c)
        w_coarse = w
    else:
        # Evenly spaced over the points up to the last of positive weight: padding (weight-0
        # points appended to reach a kernel's shape) is never sampled.
        n_valid = n_points - jnp.argmax(w[::-1] > 0)
        sub = jnp.round(jnp.linspace(0.0, 1.0, SCREEN_POINTS) * (n_valid - 1)).astype(jnp.int32)
        coarse = _coarse_loss(cfg, data, starts_c, sub)
        w_coarse = w[sub]
    pre = best(w_coarse.astype(coarse.dtype) @ coarse.T, keep)
    return pre[best(w @ _point_loss(cfg, data, starts_c[pre]).T, n_refine)]


def _screen(cfg: Config, data: Data, starts_c, weights, n_refine: int, grouped: bool = False):
    """Indices ``[B, n_refine]`` of each problem's best starts by initial objective (or all)."""
    n_starts = starts_c.shape[-2]
    if n_refine >= n_starts:
        return jnp.broadcast_to(jnp.arange(n_starts), (weights.shape[0], n_starts))
    if grouped:  # one problem at a time: [S, P] per problem rather than [B, S, P] at once
        return jax.lax.map(lambda a: _screen_one(cfg, a[0], a[1], a[2], n_refine), (data, starts_c, weights))
    if weights.shape[0] == 1:
        return _screen_one(cfg, data, starts_c, weights[0], n_refine, alone=True)[None]
    # Many problems on shared data: one [S, P] table serves them all, since the objective is
    # linear in the weights.
    screened = weights @ _point_loss(cfg, data, starts_c).T  # [B, S]
    return jax.vmap(lambda v: smallest_k(v, n_refine))(screened)


def _solve_items(
    cfg: Config,
    data: Data,
    x0,
    owner,
    weights,
    lanes: int,
    refill_every: int,
    grouped: bool,
    limits: Limits,
):
    """Solve ``M`` items (start ``x0[i]`` with weights ``weights[owner[i]]``) on ``lanes`` lanes.

    ``grouped``: ``data`` has one set of arrays per problem and each lane reads its owner's.

    A lockstep batch waits for its slowest member, and step counts here are heavy-tailed
    (a few starts crawl through the flat, L1-like part of the Huber loss). So lanes are
    refilled: every ``refill_every`` iterations, lanes whose item has finished write it out
    and take the next item from the queue. Each item's arithmetic is independent of which
    lane runs it and when, so results do not depend on ``lanes`` scheduling or chunking
    (the lane count fixes the compiled shape, so keep it fixed for bit-identical results).
    ``limits``: the solver's budget and tolerance.
    """
    n_items = x0.shape[0]
    max_steps, gtol = limits

    def advance(state, lane_w, lane_data):
        return jax.vmap(
            lambda st, w, d: solver.step(
                lambda z: objective_value_and_grad(cfg, d, z, w), st, max_steps=max_steps, gtol=gtol
            ),
            in_axes=(0, 0, 0 if grouped else None),
        )(state, lane_w, lane_data)

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
        lane_owner = owner[jnp.maximum(lane_item, 0)]
        lane_data = jax.tree.map(lambda a: a[lane_owner], data) if grouped else data
        lane_w = weights[lane_owner]  # gathered once per refill, not once per step
        state = jax.lax.fori_loop(0, refill_every, lambda _, st: advance(st, lane_w, lane_data), state)
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


def _solve_items_lbfgs(
    cfg: Config, data: Data, x0, item_weights, item_data: bool, limits: Limits
) -> solver.SolverResult:
    """Solve every item (start ``x0[i]``, weights ``item_weights[i]``) with optax's L-BFGS.

    Plain lockstep ``vmap``, no lane refill: the zoom line search is a nested loop that a
    lane cannot leave mid-way, so this path is for laws where BFGS's dense matrix is the cost.
    """
    max_steps, gtol = limits
    return jax.vmap(
        lambda x, w, d: solver.minimize_lbfgs(lambda z: _objective(cfg, d, z, w), x, max_steps=max_steps, gtol=gtol),
        in_axes=(0, 0, 0 if item_data else None),
    )(x0, item_weights, data)


def _solve_chunk(
    cfg: Config,
    data: Data,
    starts_c: jax.Array,
    weights: jax.Array,
    limits: Limits,
    n_refine: int,
    lanes: int,
    refill_every: int = 8,
    grouped: bool = False,
) -> Best:
    """Solve one chunk of problems. ``starts_c [S, p_free]`` (centred), ``weights [B, P]``;
    ``limits``: the solver's budget and tolerance (``cfg.max_steps`` and ``cfg.gtol`` unused).

    ``grouped``: every problem has its own data (``data`` and ``starts_c`` carry a leading
    ``[B]`` axis; padding points have weight 0), as in ``solve(..., grouped=True)``.

    ``n_refine < S`` screens the starts per problem and refines the best ``n_refine``;
    otherwise every start is refined. All ``B * n_refine`` refinements share ``lanes`` lanes
    (``cfg.method == "bfgs"``) or run side by side in one lockstep batch (``"lbfgs"``).
    """
    n_problems = weights.shape[0]
    idx = _screen(cfg, data, starts_c, weights, n_refine, grouped)  # [B, K]
    k = idx.shape[1]
    owner = jnp.repeat(jnp.arange(n_problems), k)
    x0 = starts_c[owner, idx.reshape(-1)] if grouped else starts_c[idx.reshape(-1)]
    if cfg.method == "lbfgs":
        item_data = jax.tree.map(lambda a: a[owner], data) if grouped else data
        res = _solve_items_lbfgs(cfg, item_data, x0, weights[owner], grouped, limits)
    elif cfg.method == "bfgs":
        res = _solve_items(cfg, data, x0, owner, weights, lanes, refill_every, grouped, limits)
    else:
        raise ValueError(f"unknown solver method {cfg.method!r}; choose one of {METHODS}")
    res = jax.tree.map(lambda a: a.reshape((n_problems, k) + a.shape[1:]), res)
    values = jnp.where(jnp.isfinite(res.value), res.value, jnp.inf)
    best = jnp.argmin(values, axis=1)

    def pick(a):
        return jnp.take_along_axis(a, best.reshape((-1,) + (1,) * (a.ndim - 1)), axis=1)[:, 0]

    per_problem = 0 if grouped else None
    theta = jax.vmap(lambda x, d: _full(cfg, d, x), in_axes=(0, per_problem))(pick(res.x), data)
    return Best(
        theta=theta,
        value=pick(res.value),
        status=pick(res.status),
        steps=pick(res.steps),
        grad_norm=pick(res.grad_norm),
        start_values=values,
        sensitivity=jax.vmap(lambda d, t, w: _sensitivity(cfg, d, t, w), in_axes=(per_problem, 0, 0))(
            data, theta, weights
        ),
    )


solve_chunk = jax.jit(_solve_chunk, static_argnames=("cfg", "n_refine", "lanes", "refill_every", "grouped"))


@functools.lru_cache(maxsize=32)
def _sharded_solver(cfg: Config, n_refine: int, lanes: int, n_devices: int, grouped: bool = False):
    """``solve_chunk`` over ``n_devices`` local devices, one chunk per device.

    Every device runs the same per-chunk program as the single-device path (same shapes),
    so results do not depend on the device count.
    """
    mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("devices",))
    per_problem = PartitionSpec("devices") if grouped else PartitionSpec()
    fn = jax.shard_map(
        functools.partial(_solve_chunk, cfg, n_refine=n_refine, lanes=lanes, grouped=grouped),
        mesh=mesh,
        in_specs=(per_problem, per_problem, PartitionSpec("devices"), PartitionSpec()),
        out_specs=PartitionSpec("devices"),
        check_vma=False,
    )
    return jax.jit(fn)


WeightSource = Callable[[int, int], np.ndarray]


@functools.partial(jax.jit, static_argnums=0)
def _centred_starts_per_problem(cfg: Config, data: Data, starts: jax.Array) -> jax.Array:
    return jax.vmap(lambda d: centred_starts(cfg, d, starts))(data)


def balanced_chunk(n: int, most: int) -> int:
    """Problems per kernel call: ``n`` split into equal calls of at most ``most`` each.

    Every call of a chunked solve has one shape (the last is padded with copies), so 2,100
    problems in calls of 2,048 would solve 4,096; in two calls of 1,050 they solve 2,100.
    Solver lanes are refilled within a call only, and each call ends waiting for its slowest
    start, so fewer, larger calls are faster: on 2,000 synthetic groups (2-core CPU),
    ``fit_groups`` took 14.4 s in calls of 256 groups and 9.1 s in calls of 2,048.

    Example:
        >>> balanced_chunk(2100, 2048), balanced_chunk(4000, 2048), balanced_chunk(100, 2048)
        (1050, 2000, 100)
    """
    return -(-n // -(-n // max(1, most)))


MIN_BUCKET = 8


def bucket_size(n_points: int) -> int:
    """The padded size of ``n_points`` runs: the next power of two, at least 8.

    Kernels compile once per data shape (~1.4 s each for a Chinchilla fit on 2 CPU cores,
    and each compiled kernel holds ~550 of the process's memory mappings, of 65,530 allowed
    by Linux's default vm.max_map_count). Padding to a few sizes bounds both, whatever the
    number of distinct run counts a loop of fits or an archive of groups meets.

    Example:
        >>> [bucket_size(n) for n in (5, 9, 240, 300)]
        [8, 16, 256, 512]
    """
    return max(MIN_BUCKET, 1 << (int(n_points) - 1).bit_length())


def pad_points(data: Data, weights: np.ndarray, size: int) -> tuple[Data, np.ndarray]:
    """One problem's points padded to ``size`` with weight-0 copies of its points (cycled), which
    add exactly 0 to the objective; the centring shift stays that of the real points."""
    take = np.resize(np.arange(weights.shape[-1]), size)
    padded = np.zeros(weights.shape[:-1] + (size,))
    padded[..., : weights.shape[-1]] = weights
    log_x, log_y = np.asarray(data.log_x)[take], np.asarray(data.log_y)[take]
    return data._replace(log_x=jnp.asarray(log_x), log_y=jnp.asarray(log_y)), padded


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    """Pad the leading axis to ``size`` with copies of the first row (trimmed off afterwards)."""
    return a if a.shape[0] == size else np.concatenate([a, np.repeat(a[:1], size - a.shape[0], axis=0)])


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
    grouped: bool = False,
    data_index: np.ndarray | None = None,
) -> Best:
    """All problems in chunks of ``chunk_size`` problems (``devices`` chunks at a time).

    ``weights`` is a ``[B, P]`` array, or a function ``(lo, hi) -> [hi - lo, P]`` (with
    ``n_problems``) so that weights are made chunk by chunk and memory stays bounded. The
    problems are split into equal chunks of at most ``chunk_size`` (:func:`balanced_chunk`);
    the last is padded with copies of its first problem and trimmed: every chunk has the
    same shape and the kernel compiles once. ``lanes`` is how many starts are iterated side
    by side (512 fits the CPU's cache best here). It is not capped by the size of a chunk:
    the lane count fixes the compiled arithmetic, so keeping it fixed makes results
    bit-identical across chunk sizes and device counts (idle lanes cost time only when a
    chunk has fewer refinements than lanes).

    ``grouped``: each problem has its own data (host arrays in ``data`` with a leading
    ``[B]`` axis, e.g. ragged groups padded with weight-0 points); chunks of it are sent
    to the device one at a time. ``data_index`` (optional, ``[n]``) says which row of
    ``data`` each problem uses (e.g. several resamples of one group).
    """
    if callable(weights):
        source, n = weights, int(n_problems)
    else:
        array = np.asarray(weights)
        source, n = (lambda lo, hi: array[lo:hi]), array.shape[0]
    if grouped:
        starts_j = jnp.asarray(starts)  # centred per problem, chunk by chunk, below
    else:
        starts_c = centred_starts(cfg, data, starts)
    k = min(n_refine, starts.shape[0])
    limits = limits_of(cfg, np.asarray(starts).dtype)
    cfg = cfg._replace(max_steps=0, gtol=0.0)  # in the kernels' static key; limits carries them
    # Grouped: at least 2 problems per call, padding a lone one. XLA compiles a call of one
    # problem differently (its size-1 axes are simplified away), and the last bits that
    # changes set BFGS on another path: parameters differed by up to 4e-8 from the same
    # groups solved 2 or more per call (same optimum, objective within 1e-14).
    chunk = max(2 if grouped else 1, balanced_chunk(-(-n // devices), chunk_size))
    step = chunk * devices
    outs = []
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        w = jnp.asarray(_pad(source(lo, hi), step))
        chunk_data = data
        if grouped:
            rows = np.arange(lo, hi) if data_index is None else np.asarray(data_index)[lo:hi]
            chunk_data = Data(*(jnp.asarray(_pad(np.asarray(a)[rows], step)) for a in data))
            starts_c = _centred_starts_per_problem(cfg, chunk_data, starts_j)
        if devices == 1:
            out = solve_chunk(cfg, chunk_data, starts_c, w, limits, k, lanes, grouped=grouped)
        else:
            out = _sharded_solver(cfg, k, lanes, devices, grouped)(chunk_data, starts_c, w, limits)
        outs.append(jax.tree.map(lambda a, keep=hi - lo: np.asarray(a)[:keep], out))
        if progress is not None:
            progress(hi, n)
    return Best(*(np.concatenate(parts) for parts in zip(*outs, strict=True)))


def make_data(law: Law, log_x: np.ndarray, log_y: np.ndarray, theta_fixed: np.ndarray, free: tuple[int, ...]) -> Data:
    """The kernel's arrays for one data set, centred by :func:`centre_shift`."""
    shift = centre_shift(law, log_x, free)
    return Data(jnp.asarray(log_x), jnp.asarray(log_y), jnp.asarray(theta_fixed), jnp.asarray(shift))


def centre_shift(law: Law, log_x: np.ndarray, free: tuple[int, ...]) -> np.ndarray:
    """Centre each coefficient/exponent pair on its input's mean, unless the coefficient is fixed."""
    means = log_x.mean(axis=0)
    return np.array([means[inp] if coef in free else 0.0 for coef, _, inp in law.center_pairs])
