"""The one compiled kernel behind fit and bootstrap: starts × weights → best optimum.

For each problem (one weight vector over the data points, see :mod:`jaxscale.problem`) the
kernel optionally screens a candidate start set by its initial objective
(:mod:`jaxscale.screening`), refines the best few with the lockstep BFGS of
:mod:`jaxscale.solver` (or the damped Newton of :mod:`jaxscale.newton`, or optax's L-BFGS:
``Config.method``), and keeps the best start.
One call solves one chunk of problems (:func:`solve_chunk`, or :func:`sharded_solver` for a
chunk per device); :mod:`jaxscale.batches` pads problems and splits a batch into such calls.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from . import backends, mixed, newton, refinement, solver
from .problem import (
    METHODS,
    Best,
    Config,
    Data,
    Limits,
    full_theta,
    objective,
    objective_value_and_grad,
    sensitivity,
)
from .screening import screened_starts, spread_first

# Lanes iterated as one vectorised step. Once the queue of starts runs dry, the live lanes
# are packed to the front and only the blocks holding them are stepped, so a call's tail (a
# few slow starts) does not iterate every lane. Narrower blocks cut more of the tail but step
# each lane more slowly (a step has fixed costs), so the best width depends on the job:
# narrower for grouped data than for resamples of shared data (a grouped call's second, staged
# pass is mostly tail), narrowest for a single fit (all of whose 64 lanes are tail), and twice
# as wide in float32, whose lane-step costs less.
# The widths were chosen by end-to-end timings: benchmarks/RESULTS.md, "Lane packing".
BLOCK_GROUPED = 32  # float64 widths
BLOCK_SHARED = 256
FEW_LANES = 64  # at most this many lanes: blocks of BLOCK_FEW
BLOCK_FEW = 16
# The status of a start that a staged solve did not refine (its problem was not in doubt).
SKIPPED = 9
# A seeded BFGS start's inverse Hessian: |eigenvalues| floored at this fraction of the largest.
# 1e-8 (Newton's floor, re-evaluated every step) let a first step along a near-flat direction
# run an exponent to ~500 on one archive group, where a term vanished and BFGS stopped on the
# plateau; 1e-6 and 1e-4 did not, and took as few steps (benchmarks/RESULTS.md, "Solvers").
START_FLOOR = 1e-6


def lane_layout(lanes: int, grouped: bool, dtype=jnp.float64, backend: str | None = None) -> tuple[int, int]:
    """``(block, n_blocks)``: ``lanes`` rounded up to whole blocks of :data:`BLOCK_FEW` lanes
    (for at most :data:`FEW_LANES` lanes), :data:`BLOCK_GROUPED` (each problem has its own
    data) or :data:`BLOCK_SHARED` (problems share the data), twice as wide in float32; one
    block of all lanes where ``backend`` (default JAX's) steps them at once
    (:mod:`jaxscale.backends`). The width depends on nothing else, so it is the same in every
    chunk of a solve.

    Example:
        >>> import numpy as np
        >>> lane_layout(512, grouped=True), lane_layout(512, grouped=False), lane_layout(64, grouped=False)
        ((32, 16), (256, 2), (16, 4))
        >>> lane_layout(512, grouped=False, dtype=np.float32), lane_layout(512, grouped=True, backend="gpu")
        ((512, 1), (512, 1))
    """
    if backends.sizes(backend).one_block:
        return lanes, 1
    widest = BLOCK_FEW if lanes <= FEW_LANES else BLOCK_GROUPED if grouped else BLOCK_SHARED
    block = min(lanes, widest * 8 // np.dtype(dtype).itemsize)
    return block, -(-lanes // block)


def _stepper(cfg: Config):
    """``(module, evaluate)``: the solver stepping the lanes (its ``start``, ``step`` and
    ``result``) and what its step evaluates, ``evaluate(data, x, weights)``."""
    if cfg.method == "newton":
        return newton, lambda d, z, w: newton.value_grad_hess(lambda u: objective(cfg, d, u, w))(z)
    return solver, lambda d, z, w: objective_value_and_grad(cfg, d, z, w)


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
    n_items=None,
):
    """Solve ``M`` items (start ``x0[i]`` with weights ``weights[owner[i]]``) on ``lanes`` lanes;
    with ``n_items`` (a traced count), only the first ``n_items`` (the others' results are
    placeholders).

    ``grouped``: ``data`` has one set of arrays per problem and each lane reads its owner's.

    A lockstep batch waits for its slowest member, and step counts here are heavy-tailed
    (a few starts crawl through the flat, L1-like part of the Huber loss). So lanes are
    refilled: every ``refill_every`` iterations, lanes whose item has finished write it out
    and take the next item from the queue. Once the queue is empty, lanes fall idle; they
    are then packed behind the live ones, and only the blocks of :func:`lane_layout` that
    hold a live lane are stepped. Each item's arithmetic is that of a fixed-width step,
    whichever lane of whichever block runs it and when, so results do not depend on
    scheduling or chunking (keep ``lanes`` fixed for bit-identical results: the block width
    fixes the step's shape, but XLA may round another lane count's program differently in the
    last bits: tests/test_groups.py). ``limits``: budget and tolerance.
    """
    size = x0.shape[0]
    n_items = size if n_items is None else n_items
    max_steps, gtol = limits
    block, n_blocks = lane_layout(lanes, grouped, x0.dtype)
    lanes = block * n_blocks
    method, evaluate = _stepper(cfg)

    two_precisions = cfg.method == "bfgs_mixed"  # lanes are mixed.Lanes, not solver states
    data_axis = 0 if grouped else None

    def bfgs(lanes):
        return lanes.state if two_precisions else lanes

    def as_lanes(state):
        return mixed.searching(state) if two_precisions else state

    def advance(state, lane_w, lane_data):
        if two_precisions:
            return mixed.advance(evaluate, state, lane_w, lane_data, data_axis, max_steps, gtol)
        return jax.vmap(
            lambda st, w, d: method.step(lambda z: evaluate(d, z, w), st, max_steps=max_steps, gtol=gtol),
            in_axes=(0, 0, data_axis),
        )(state, lane_w, lane_data)

    def run_block(b, state, lane_item):
        lo = b * block

        def part(a):
            return jax.lax.dynamic_slice_in_dim(a, lo, block)

        block_owner = owner[jnp.maximum(part(lane_item), 0)]
        block_data = jax.tree.map(lambda a: a[block_owner], data) if grouped else data
        block_w = weights[block_owner]  # gathered once per refill, not once per step
        if two_precisions:  # and in single precision, for the lanes still searching
            block_data, block_w = (block_data, mixed.single(block_data)), (block_w, mixed.single(block_w))
        stepped = jax.lax.fori_loop(
            0, refill_every, lambda _, st: advance(st, block_w, block_data), jax.tree.map(part, state)
        )
        return jax.tree.map(lambda a, u: jax.lax.dynamic_update_slice_in_dim(a, u, lo, 0), state, stepped)

    seeded = cfg.method == "bfgs_hessian"
    h0 = _start_curvature(cfg, data, x0, owner, weights, grouped, n_items, block) if seeded else None

    def start(i):
        return jax.vmap(method.start)(x0[i], *(() if h0 is None else (h0[i],)))

    lane_item = jnp.arange(lanes)
    live = lane_item < n_items
    take = jnp.where(live, lane_item, 0)
    state = start(take)
    # Idle lanes (more lanes than items) start finished so they never count as work.
    state = as_lanes(state._replace(status=jnp.where(live, state.status, solver.MAX_STEPS)))
    lane_item = jnp.where(live, lane_item, -1)
    out = solver.unsolved(x0)  # placeholders, every item is overwritten

    def cond(carry):
        return jnp.any(carry[1] >= 0)

    def body(carry):
        state, lane_item, next_item, out = carry
        live_blocks = -(-jnp.sum(lane_item >= 0) // block)  # live lanes are packed in front
        state = jax.lax.fori_loop(0, live_blocks, lambda b, st: run_block(b, st, lane_item), state)
        if two_precisions:
            state = mixed.finish_searches(state)
        finished = (bfgs(state).status != solver.RUNNING) & (lane_item >= 0)
        res = method.result(bfgs(state))
        dest = jnp.where(finished, lane_item, size)  # size: dropped
        out = jax.tree.map(lambda o, r: o.at[dest].set(r, mode="drop"), out, res)
        new_item = next_item + jnp.cumsum(finished) - 1
        refill = finished & (new_item < n_items)
        fresh = as_lanes(start(jnp.where(refill, new_item, 0)))
        state = jax.tree.map(lambda a, b: jnp.where(refill.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), fresh, state)
        lane_item = jnp.where(finished, jnp.where(refill, new_item, -1), lane_item)
        # Live lanes first, in lane order (those still searching before those finishing, so
        # that at most one block holds both: mixed.advance).
        key = jnp.where(lane_item < 0, 2, state.finishing.astype(jnp.int32)) if two_precisions else lane_item < 0
        packed = jnp.argsort(key, stable=True)
        state = jax.tree.map(lambda a: a[packed], state)
        return state, lane_item[packed], next_item + jnp.sum(finished), out

    init = (state, lane_item, jnp.minimum(lanes, n_items), out)
    return jax.lax.while_loop(cond, body, init)[3]


def _start_curvature(cfg: Config, data: Data, x0, owner, weights, grouped: bool, n_items, block: int):
    """Each item's starting inverse Hessian for BFGS (``cfg.method`` ``"bfgs_hessian"``): the exact
    Hessian at its start, inverted by :func:`jaxscale.solver.abs_inverse` with eigenvalues floored
    at :data:`START_FLOOR` of the largest, ``[M, p, p]``; for the first ``n_items`` items only
    (in blocks of ``block``), the others NaN, which :func:`jaxscale.solver.start` replaces by
    the identity, as it does a Hessian that is not finite.

    From a scaled identity, BFGS spends most of its steps learning the curvature; from the exact
    one it took half the steps on the Epoch starts, for one Hessian per start (a few steps'
    worth): benchmarks/RESULTS.md, "Solvers".
    """
    size, q = x0.shape
    block = min(block, size)

    def inverse(z, w, d):
        return solver.abs_inverse(jax.hessian(lambda u: objective(cfg, d, u, w))(z), START_FLOOR)

    def body(b, h):
        lo = jnp.minimum(b * block, size - block)
        xs = jax.lax.dynamic_slice_in_dim(x0, lo, block)
        ow = jax.lax.dynamic_slice_in_dim(owner, lo, block)
        d = jax.tree.map(lambda a: a[ow], data) if grouped else data
        hs = jax.vmap(inverse, in_axes=(0, 0, 0 if grouped else None))(xs, weights[ow], d)
        return jax.lax.dynamic_update_slice_in_dim(h, hs, lo, 0)

    h = jnp.full((size, q, q), jnp.nan, x0.dtype)
    return jax.lax.fori_loop(0, -(-n_items // block), body, h)


def _solve_items_lbfgs(
    cfg: Config, data: Data, x0, item_weights, item_data: bool, limits: Limits
) -> solver.SolverResult:
    """Solve every item (start ``x0[i]``, weights ``item_weights[i]``) with optax's L-BFGS.

    Plain lockstep ``vmap``, no lane refill: the zoom line search is a nested loop that a
    lane cannot leave mid-way, so this path is for laws where BFGS's dense matrix is the cost.
    """
    max_steps, gtol = limits
    return jax.vmap(
        lambda x, w, d: solver.minimize_lbfgs(lambda z: objective(cfg, d, z, w), x, max_steps=max_steps, gtol=gtol),
        in_axes=(0, 0, 0 if item_data else None),
    )(x0, item_weights, data)


def _items(picked):
    """The screened starts ``picked [B, K, p_free]`` as items: ``x0 [B * K, p_free]`` and each
    item's problem ``owner [B * K]``."""
    n_problems, k, p = picked.shape
    return picked.reshape(n_problems * k, p), jnp.repeat(jnp.arange(n_problems), k)


def _staged(cfg: Config, data: Data, picked, weights, lanes, refill_every, grouped, limits, first):
    """Refine each problem's first ``first`` screened starts ``picked [B, K, p_free]``, then, in
    the same call and on the same lanes, the rest of its ``K`` for the problems that first pass
    leaves in doubt (:func:`jaxscale.refinement.in_doubt_traced`). Results ``[B * K]``; the
    starts not refined have value NaN and status :data:`SKIPPED`. Each refined start's
    arithmetic is what it is unstaged (the lanes' width is the same), so a problem in doubt gets
    exactly its ``K``-start result.
    """
    n_problems, k, _ = picked.shape
    x0, owner = _items(picked)
    per_problem = 0 if grouped else None
    first_pass = jnp.tile(jnp.arange(k) < first, n_problems)  # [B * K]

    def doubt(x, value, status, d, w):
        best = jnp.argmin(jnp.where(jnp.isfinite(value), value, jnp.inf))
        theta = full_theta(cfg, d, x[best])
        sens = sensitivity(cfg, d, theta, w)
        return refinement.in_doubt_traced(cfg, theta, value, status[best], sens)

    def stage(carry, _):
        # One pass over the items ``wanted``, moved to the front of the queue; then the items
        # of the next pass: the rest of the starts of the problems the first pass leaves in
        # doubt. Both passes are this one loop body, so the solver compiles once (the second
        # pass's doubt, one sensitivity per problem, is computed and dropped: milliseconds).
        res, wanted = carry
        order = jnp.argsort(~wanted, stable=True)
        out = _solve_items(
            cfg, data, x0[order], owner[order], weights, lanes, refill_every, grouped, limits, jnp.sum(wanted)
        )
        out = jax.tree.map(lambda a: jnp.zeros_like(a).at[order].set(a), out)  # back to problem order
        res = jax.tree.map(lambda r, o: jnp.where(wanted.reshape((-1,) + (1,) * (o.ndim - 1)), o, r), res, out)
        firsts = jax.tree.map(lambda a: a.reshape((n_problems, k) + a.shape[1:])[:, :first], res)
        in_doubt = jax.vmap(doubt, in_axes=(0, 0, 0, per_problem, 0))(
            firsts.x, firsts.value, firsts.status, data, weights
        )
        return (res, jnp.repeat(in_doubt, k) & ~first_pass), None

    skipped = solver.unsolved(x0, value=jnp.nan, status=SKIPPED)  # the starts no pass refines
    (res, _), _ = jax.lax.scan(stage, (skipped, first_pass), None, length=2)
    return res


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
    first: int | None = None,
    spread: bool = False,
) -> Best:
    """Solve one chunk of problems. ``starts_c [S, p_free]`` (centered), ``weights [B, P]``;
    ``limits``: the solver's budget and tolerance (``cfg.max_steps`` and ``cfg.gtol`` unused).

    ``grouped``: every problem has its own data (``data`` carries a leading ``[B]`` axis;
    padding points have weight 0), as in ``solve(..., grouped=True)``, and ``starts_c`` is then
    the candidate starts in the law's fitted parameters, ``[S, p]``, each problem centering
    them on its own data in the call (:func:`jaxscale.screening.screened_starts`).

    ``n_refine < S`` screens the starts per problem and refines the best ``n_refine``;
    otherwise every start is refined. All ``B * n_refine`` refinements share ``lanes`` lanes
    (``cfg.method`` ``"bfgs"``, ``"bfgs_hessian"``, ``"bfgs_mixed"`` or ``"newton"``) or run
    side by side in one lockstep batch (``"lbfgs"``). ``first < n_refine`` (not lbfgs): staged
    in the call (:func:`_staged`), the first pass spread over the ``n_refine`` with ``spread``
    (:func:`jaxscale.screening.spread_first`), else their best ``first``; results are in that order.
    """
    n_problems = weights.shape[0]
    picked, scale = screened_starts(cfg, data, starts_c, weights, n_refine, grouped)  # [B, K, p_free]
    k = picked.shape[1]
    staged = first is not None and first < k and cfg.method != "lbfgs"
    if staged and spread:
        picked = jnp.take_along_axis(picked, spread_first(picked, scale, first)[..., None], axis=1)
    if cfg.method == "lbfgs":
        x0, owner = _items(picked)
        item_data = jax.tree.map(lambda a: a[owner], data) if grouped else data
        res = _solve_items_lbfgs(cfg, item_data, x0, weights[owner], grouped, limits)
    elif cfg.method not in METHODS:
        raise ValueError(f"unknown solver method {cfg.method!r}; choose one of {METHODS}")
    elif staged:
        res = _staged(cfg, data, picked, weights, lanes, refill_every, grouped, limits, first)
    else:
        x0, owner = _items(picked)
        res = _solve_items(cfg, data, x0, owner, weights, lanes, refill_every, grouped, limits)
    res = jax.tree.map(lambda a: a.reshape((n_problems, k) + a.shape[1:]), res)
    values = jnp.where(jnp.isfinite(res.value), res.value, jnp.inf)
    best = jnp.argmin(values, axis=1)

    def pick(a):
        return jnp.take_along_axis(a, best.reshape((-1,) + (1,) * (a.ndim - 1)), axis=1)[:, 0]

    per_problem = 0 if grouped else None
    theta = jax.vmap(lambda x, d: full_theta(cfg, d, x), in_axes=(0, per_problem))(pick(res.x), data)
    return Best(
        theta=theta,
        value=pick(res.value),
        status=pick(res.status),
        steps=pick(res.steps),
        grad_norm=pick(res.grad_norm),
        start_values=values,
        sensitivity=jax.vmap(lambda d, t, w: sensitivity(cfg, d, t, w), in_axes=(per_problem, 0, 0))(
            data, theta, weights
        ),
        n_refined=jnp.sum(res.status != SKIPPED, axis=1),
    )


@functools.lru_cache(maxsize=8)
def _solve_chunk_compiled_with(options: tuple[tuple[str, object], ...]):
    """:func:`_solve_chunk` jitted with the XLA ``options`` (none: XLA's defaults), once per set."""
    static = ("cfg", "n_refine", "lanes", "refill_every", "grouped", "first", "spread")
    return jax.jit(_solve_chunk, static_argnames=static, compiler_options=dict(options) or None)


solve_chunk = _solve_chunk_compiled_with(())


def _compile_options(grouped: bool) -> tuple[tuple[str, object], ...]:
    """XLA options for a kernel: the backend's for grouped problems
    (:data:`jaxscale.backends.Sizes.grouped_compile`), none (XLA's defaults) for the others."""
    return backends.sizes().grouped_compile if grouped else ()


def chunk_solver(grouped: bool):
    """:data:`solve_chunk`, compiled with :func:`_compile_options` for ``grouped`` problems."""
    return _solve_chunk_compiled_with(_compile_options(grouped))


@functools.lru_cache(maxsize=32)
def sharded_solver(cfg: Config, n_refine: int, lanes: int, n_devices: int, grouped=False, first=None, spread=False):
    """``solve_chunk`` over ``n_devices`` local devices, one chunk per device.

    Every device runs the same per-chunk program as the single-device path (same shapes),
    so results do not depend on the device count.
    """
    mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("devices",))
    per_problem = PartitionSpec("devices") if grouped else PartitionSpec()
    fn = jax.shard_map(
        functools.partial(
            _solve_chunk, cfg, n_refine=n_refine, lanes=lanes, grouped=grouped, first=first, spread=spread
        ),
        mesh=mesh,
        in_specs=(per_problem, PartitionSpec(), PartitionSpec("devices"), PartitionSpec()),
        out_specs=PartitionSpec("devices"),
        check_vma=False,
    )
    return jax.jit(fn, compiler_options=dict(_compile_options(grouped)) or None)
