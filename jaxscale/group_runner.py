"""The runner's groups (``fit_groups``): one problem per group of runs, all at once.

Groups are ragged: each is padded with weight-0 points (which add exactly 0 to its objective)
to a bucket size chosen for the archive (:func:`bucket_groups`), and the groups of a bucket are
solved in kernel calls of one shape (:func:`solve_groups`, in the order of
:func:`jaxscale.batches.bucket_calls`), optionally with resamples of every group. Groups whose
best start failed or lost a term are retried (:func:`retry_groups`, the policy of
:func:`jaxscale.refinement.retry`) in calls of one shape too, whose kernel can compile before
the groups to retry are known (:func:`compile_retry`). The single-data-set solves are in
:mod:`jaxscale.runner`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import NamedTuple

import jax
import numpy as np

from . import backends, batches, problem
from .refinement import (
    STAGE_ABOVE_RUNS,
    Solved,
    first_pass,
    retry,
    retry_config,
    retry_starts,
    solved_from,
    stages_bucket,
)
from .runner import flag_flat, resample_weights
from .specs import N_REFINE_MANY, Spec

GROUP_RESAMPLE_CHUNK = 1024  # most group resamples per call: each carries its group's data
# What a group costs beyond its padded points, in points: ordering fit_groups' calls only
# (_bucket_calls). On the 10,000-group archive, calls of buckets 64 (unstaged), 192 and 320 took
# time in proportion to groups x (size + 128) x starts refined, within 2% (benchmarks/RESULTS.md).
CALL_FIXED_POINTS = 128


class Bucket(NamedTuple):
    """The groups of one padded size and their solutions."""

    ids: list[int]  # group ids (positions in ``members``)
    data: problem.Data  # [G, size, ...] host arrays, padded with weight-0 points
    weights: np.ndarray  # [G, size] 1 for a group's runs, 0 for padding
    solved: Solved  # one row per group
    resamples: Solved | None  # [G * n] rows: resample i of group ids[j] is row j * n + i


def solve_groups(
    spec: Spec,
    log_x: np.ndarray,
    log_y: np.ndarray,
    members: list[np.ndarray],
    ids: list[int],
    *,
    n_resamples: int = 0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    run_weights: np.ndarray | None = None,
    retry_later: bool = False,
    on_call: Callable[[Solved], None] | None = None,
) -> list[Bucket]:
    """One problem per group ``ids`` (rows ``members[g]`` of ``log_x``, ``log_y``, weighted by
    ``run_weights`` [rows], default 1): groups of similar size share a bucket (padded to one
    size, the buckets chosen for these groups: :func:`jaxscale.batches.group_buckets`) and one
    kernel call per chunk of it; retried (:func:`retry`) in calls of one shape for all
    buckets (:func:`retry_groups`). ``n_resamples``: also solve that many resamples of every
    group, group ``g``'s drawn as :func:`jaxscale.bootstrap` with seed ``seed + g`` draws them.
    ``retry_later``: return the buckets before the retry (and leave the last progress report),
    for the caller to run :func:`retry_groups` beside other work. ``on_call``: called with each
    kernel call's solutions as the call ends (e.g. to compile the retry's kernel once a call
    shows that one is needed: :func:`compile_retry`)."""
    # Few groups need few lanes; the cap must not depend on chunk_size, since the lane count
    # fixes the compiled arithmetic and results would then depend on the chunking.
    spec = spec._replace(lanes=min(spec.lanes, max(1, spec.n_refine * len(ids))))
    sizes = bucket_groups(members, ids)
    calls = _bucket_calls(spec, {size: len(group) for size, group in sizes.items()})

    def solve_call(call: batches.Call) -> tuple[problem.Data, np.ndarray, Solved] | None:
        size, lo, hi, compile_only = call
        # Padded to the bucket's call shape with copies of its first group, as batches.solve
        # pads its last call (results trimmed): every call of a bucket runs one kernel.
        picked = batches.pad_rows(np.asarray(sizes[size][lo:hi]), calls.rows[size])
        data, w = batches.pad_groups(
            spec.cfg, spec.theta_fixed, log_x, log_y, [members[g] for g in picked], size, run_weights
        )
        # Staged within each kernel call (engine._staged): no second call with new shapes.
        first = stages_bucket(spec, size)
        solved = _solve_padded(spec, data, w, spec.n_refine, first, calls.chunk[size], compile_only)
        return None if compile_only else jax.tree.map(lambda a: np.asarray(a)[: hi - lo], (data, w, solved))

    parts: dict[int, dict[int, tuple]] = {size: {} for size in sizes}
    done = 0
    for call, part in zip(calls.order, batches.side_by_side(solve_call, calls.order, calls.at_once), strict=True):
        if call.compile_only:
            continue
        size, lo, hi, _ = call
        parts[size][lo] = part
        if on_call is not None:
            on_call(part[2])
        done += hi - lo
        if progress is not None and done < len(ids):  # the last report waits for the retry
            progress(done, len(ids))

    def bucket(size: int) -> Bucket:
        data, w, solved = jax.tree.map(lambda *a: np.concatenate(a), *(parts[size][lo] for lo in sorted(parts[size])))
        resamples = _group_resamples(spec, data, w, sizes[size], members, n_resamples, seed) if n_resamples else None
        return Bucket(sizes[size], data, w, solved, resamples)

    out = list(batches.side_by_side(bucket, sorted(sizes), calls.at_once if n_resamples else 1))
    if retry_later:
        return out
    buckets = retry_groups(spec, log_x, log_y, members, out, run_weights)
    if progress is not None and ids:
        progress(len(ids), len(ids))
    return buckets


def bucket_groups(members: list[np.ndarray], ids: list[int]) -> dict[int, list[int]]:
    """Groups ``ids`` (runs ``members[g]``) by the size :func:`solve_groups` pads them to: the
    buckets chosen for these groups (:func:`jaxscale.batches.group_buckets`), none holding both
    staged and unstaged groups (:data:`jaxscale.refinement.STAGE_ABOVE_RUNS`).

    Example:
        >>> import numpy as np
        >>> bucket_groups([np.arange(20), np.arange(300), np.arange(30)], [0, 1, 2])
        {32: [0, 2], 320: [1]}
    """
    size_of = batches.group_buckets(
        [len(members[g]) for g in ids], backends.sizes().compile_points, split_after=STAGE_ABOVE_RUNS
    )
    out: dict[int, list[int]] = {}
    for g in ids:
        out.setdefault(size_of[len(members[g])], []).append(g)
    return out


def _bucket_calls(spec: Spec, counts: dict[int, int]) -> batches.Calls:
    """:func:`jaxscale.batches.bucket_calls` for fit_groups' buckets (``counts``: groups per
    bucket size), each group's work its padded points and a fixed part times the starts it refines
    (a staged group: its first pass, and all of them for the tenth or so in doubt)."""

    def work(size: int) -> float:
        first = stages_bucket(spec, size)
        starts = spec.n_refine if first is None else first + (spec.n_refine - first) / 8
        return (size + CALL_FIXED_POINTS) * starts

    per_group = {size: work(size) for size in counts}
    return batches.bucket_calls(counts, per_group, spec.chunk_size, spec.devices, backends.sizes().calls_at_once)


def _solve_padded(
    spec: Spec,
    data: problem.Data,
    w: np.ndarray,
    k: int,
    first: int | None = None,
    chunk: int | None = None,
    compile_only: bool = False,
) -> Solved | None:
    """One problem per padded group (``data [G, size, ...]``, run weights ``w [G, size]``), ``k``
    starts each, staged with ``first``, in calls of ``chunk`` groups per device (default the
    spec's); ``compile_only``: compile the kernel and return None (``batches.solve``)."""
    best = batches.solve(
        spec.cfg,
        data,
        spec.candidates,
        w,
        n_refine=k,
        chunk_size=spec.chunk_size if chunk is None else chunk,
        lanes=spec.lanes,
        devices=spec.devices,
        grouped=True,
        first_refine=first,
        spread_first=True,  # groups: a first pass spread over the 8 (refinement.stages_bucket)
        compile_only=compile_only,
    )
    return None if best is None else solved_from(best)


def retry_groups(
    spec: Spec, log_x, log_y, members, buckets: list[Bucket], run_weights=None, compiled: Future | None = None
) -> list[Bucket]:
    """Every bucket's groups retried (:func:`retry`) in calls of one shape, whatever groups it
    draws: :func:`retry_call_rows` groups a call, each padded to the largest bucket size (weight-0
    points add exactly 0 to the objective). So the retry compiles one kernel, and can compile it
    before the groups to retry are known (:func:`compile_retry`; ``compiled``: that compilation,
    waited for before the first call rather than compiled twice)."""
    if not buckets:
        return buckets
    solved = Solved(*(np.concatenate(parts) for parts in zip(*(b.solved for b in buckets), strict=True)))
    groups = [g for b in buckets for g in b.ids]
    size = max(b.weights.shape[1] for b in buckets)

    def solve_rows(rows: np.ndarray, k: int, cfg: problem.Config) -> Solved:
        if compiled is not None:
            compiled.result()
        picked = [members[groups[r]] for r in rows]
        return _solve_retry(spec, cfg, log_x, log_y, picked, size, k, run_weights)

    solved = retry(spec, solved, solve_rows)
    ends = np.cumsum([len(b.ids) for b in buckets])
    return [
        b._replace(solved=Solved(*(a[end - len(b.ids) : end] for a in solved)))
        for b, end in zip(buckets, ends, strict=True)
    ]


def compile_retry(spec: Spec, log_x, log_y, runs: np.ndarray, size: int, run_weights=None) -> None:
    """Compile the kernel of :func:`retry_groups`' calls for buckets of at most ``size`` runs
    (whichever of their groups it retries; ``runs``: one group's run indices, for the shapes),
    without running it."""
    cfg, k = retry_config(spec.cfg), retry_starts(spec)
    _solve_retry(spec, cfg, log_x, log_y, [runs], size, k, run_weights, compile_only=True)


def retry_call_rows(spec: Spec) -> int:
    """Groups per device in each of :func:`retry_groups`' kernel calls: as many as fill the lanes
    with their retry's starts, at least :data:`jaxscale.batches.GROUPED_MIN_ROWS`.

    Example:
        >>> import jaxscale as js
        >>> from jaxscale import specs
        >>> retry_call_rows(specs.make_spec(js.get_law("chinchilla"), n_refine=8, lanes=512))
        8
    """
    return max(batches.GROUPED_MIN_ROWS, spec.lanes // retry_starts(spec))


def _solve_retry(
    spec: Spec, cfg, log_x, log_y, picked: list, size: int, k: int, run_weights, compile_only: bool = False
) -> Solved | None:
    """The groups of runs ``picked`` solved from ``k`` starts with ``cfg``, padded to ``size`` runs,
    in calls of :func:`retry_call_rows` groups per device (the last filled with copies of the
    first group, trimmed): every call has one shape."""
    rows = retry_call_rows(spec)
    step = rows * spec.devices
    padded = list(picked) + [picked[0]] * (-len(picked) % step)
    data, w = batches.pad_groups(spec.cfg, spec.theta_fixed, log_x, log_y, padded, size, run_weights)
    solved = _solve_padded(spec._replace(cfg=cfg), data, w, k, chunk=rows, compile_only=compile_only)
    return None if solved is None else Solved(*(np.asarray(a)[: len(picked)] for a in solved))


def _group_resamples(spec: Spec, data: problem.Data, w, ids: list[int], members, n: int, seed: int) -> Solved:
    """``n`` resamples of every group of a bucket (run weights ``w [G, size]``), as one grouped
    solve: a resample's counts times the run weights, as :func:`jaxscale.bootstrap` weighs them."""
    size = data.log_y.shape[1]
    # As bootstrap() does: screened starts refine a few, other start sets all of them.
    k = N_REFINE_MANY if spec.n_refine < len(spec.candidates) else spec.n_refine
    spec = spec._replace(n_refine=k, first_refine=k)  # not staged
    chunk = min(4 * spec.chunk_size, GROUP_RESAMPLE_CHUNK)
    data_index = np.repeat(np.arange(len(ids)), n)

    def weights(lo: int, hi: int) -> np.ndarray:
        out = np.zeros((hi - lo, size))
        for j in range(lo // n, (hi - 1) // n + 1):
            a, b = max(lo, j * n) - j * n, min(hi, (j + 1) * n) - j * n
            n_runs = len(members[ids[j]])
            counts = resample_weights(jax.random.key(seed + ids[j]), a, b, n_runs)
            out[j * n + a - lo : j * n + b - lo, :n_runs] = counts * w[j, :n_runs]
        return out

    def weights_of(rows: np.ndarray) -> np.ndarray:
        return batches.rows_of(weights, rows, chunk)

    def solve(w, n_refine: int, rows: np.ndarray, cfg: problem.Config = spec.cfg) -> Solved:
        best = batches.solve(
            cfg,
            data,
            spec.candidates,
            w,
            n_problems=len(rows),
            n_refine=n_refine,
            chunk_size=chunk,
            lanes=spec.lanes,
            devices=spec.devices,
            grouped=True,
            data_index=data_index[rows],
        )
        return solved_from(best)

    def solve_rows(rows: np.ndarray, more: int, cfg: problem.Config) -> Solved:
        return solve(weights_of(rows), more, rows, cfg)

    solved = solve(weights, first_pass(spec), np.arange(len(ids) * n))
    solved = retry(spec, solved, solve_rows)
    return flag_flat(spec, data, solved, weights_of, grouped=True, data_index=data_index)
