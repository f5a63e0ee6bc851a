"""The runner: one validated problem family in, solved problems out.

``fit``, ``bootstrap``, ``fit_groups`` and ``validate`` are adapters: each reads its input,
builds one :class:`~jaxscale.specs.Spec` (:func:`jaxscale.specs.make_spec`) and calls one
solve here:

* :func:`solve_one`: one weight vector over one data set (a fit);
* :func:`solve_resamples`: many weight vectors over one data set (bootstrap resamples), in
  float64, or searched in float32 and finished in float64 (:mod:`jaxscale.polish`);
* :func:`solve_groups`: one problem per group of runs, ragged groups padded to buckets, and
  optionally resamples of every group.

Which problems are solved again from more starts, and which result is kept, is
:mod:`jaxscale.refinement`'s; the refinement counts are the spec's (:mod:`jaxscale.specs`).
Here: which converged resamples are flagged unidentified (:func:`flag_flat`), and how
resamples are drawn (:func:`resample_weights`). Padding and chunking over devices are in
:mod:`jaxscale.batches`, the compiled kernel in :mod:`jaxscale.engine`.

Example:
    >>> import jax, numpy as np
    >>> import jaxscale as js
    >>> from jaxscale import runner, specs
    >>> runs = js.datasets.chinchilla()
    >>> spec = specs.make_spec(js.get_law("chinchilla"), n_refine=specs.N_REFINE_ONE)
    >>> with jax.enable_x64(True):
    ...     data = specs.make_data(spec, runs.log_inputs(), runs.log_loss())
    ...     solved, _, _ = runner.solve_one(spec, data, np.ones(runs.n_points))
    >>> int(solved.status[0]), int(solved.n_starts[0])
    (0, 64)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import backends, batches, identify, polish, problem
from .refinement import (
    STAGE_ABOVE_RUNS,
    Solved,
    first_pass,
    replace_rows,
    retry,
    solved_from,
    stages_bucket,
    vanished,
)
from .solver import CONVERGED
from .specs import N_REFINE_MANY, Spec

GROUP_RESAMPLE_CHUNK = 1024  # most group resamples per call: each carries its group's data
# What a group costs beyond its padded points, in points: ordering fit_groups' calls only
# (_bucket_calls). On the 10,000-group archive, calls of buckets 64 (unstaged), 192 and 320 took
# time in proportion to groups x (size + 128) x starts refined, within 2% (benchmarks/RESULTS.md).
CALL_FIXED_POINTS = 128


def flag_flat(spec: Spec, data, solved: Solved, weights_of: Callable[[np.ndarray], np.ndarray], **grouped) -> Solved:
    """``solved`` with status :data:`jaxscale.identify.UNIDENTIFIED_CODE` for each converged
    problem whose optimum lies on a flat direction of its objective (the curvature check of
    :func:`jaxscale.identify.flat_problems`); parameters whose term vanished are left out.

    Such a resample counts as failed: its parameters are one point of a valley the resample
    does not pin down. Signs and the design are not checked per resample: a resample whose
    exponent crosses 0 is still a draw of the estimator, and dropping it would narrow the
    interval.
    """
    status = np.array(solved.status)
    rows = np.flatnonzero(status == CONVERGED)
    if rows.size == 0:
        return solved
    skip = vanished(spec, solved.theta, solved.sensitivity)[:, list(spec.cfg.free)]
    flat = identify.flat_problems(spec.cfg, data, solved, rows, weights_of, skip, **grouped)
    status[rows[flat]] = identify.UNIDENTIFIED_CODE
    return solved._replace(status=status)


def resample_weights(key: jax.Array, lo: int, hi: int, n_points: int, clusters: np.ndarray | None = None) -> np.ndarray:
    """Multinomial weights ``[hi - lo, n_points]`` for resamples ``lo..hi-1`` of ``key``:
    resample ``i`` is drawn from ``fold_in(key, i)``, whatever the chunking.

    ``clusters`` (integer cluster id per point, 0..C-1) switches to a cluster bootstrap:
    C clusters drawn with replacement, each point weighted by its cluster's count.

    Always drawn with x64 on: ``randint`` draws other integers with x64 off (its int32 path),
    so a float32 bootstrap would otherwise solve other resamples than its seed names.

    Example:
        >>> import jax, numpy as np
        >>> resample_weights(jax.random.key(0), 0, 2, 5).sum(axis=1).tolist()
        [5.0, 5.0]
    """
    n_units = n_points if clusters is None else int(clusters.max()) + 1

    def one(i):
        draws = jax.random.randint(jax.random.fold_in(key, i), (n_units,), 0, n_units)
        return jnp.bincount(draws, length=n_units)

    # Drawn for a power-of-two count and trimmed: these eager ops compile once per shape, and
    # callers ask for many counts (e.g. the rows a check needs), which would each compile anew.
    size = batches.power_of_two(hi - lo)
    with jax.enable_x64(True):
        counts = np.asarray(jax.vmap(one)(jnp.arange(lo, lo + size)), dtype=np.float64)[: hi - lo]
    return counts if clusters is None else counts[:, clusters]


def solve_one(spec: Spec, data: problem.Data, w: np.ndarray) -> tuple[Solved, problem.Data, np.ndarray]:
    """One problem (weights ``w [P]`` over ``data``), padded to a bucket size so that fits of
    many run counts share a few compiled kernels; retried as :func:`retry` says. Returns the
    solution and the padded data and weights (for checks at the optimum)."""
    data, w = batches.pad_points(data, w, batches.bucket_size(len(w)))

    def solve(rows: np.ndarray, k: int, cfg: problem.Config = spec.cfg) -> Solved:
        # One problem: no more lanes than starts (cross-chunk bit-identity is moot here).
        lanes = min(spec.lanes, k)
        return solved_from(batches.solve(cfg, data, spec.candidates, w[None], n_refine=k, chunk_size=1, lanes=lanes))

    solved = retry(spec, solve(np.arange(1), spec.n_refine), solve)
    return solved, data, w


def solve_resamples(
    spec: Spec,
    data: problem.Data,
    weights: batches.WeightSource,
    n: int,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Solved:
    """``n`` problems over one data set, problem ``i`` weighted by ``weights(i, i + 1)``
    (made chunk by chunk, so memory stays bounded); retried (:func:`retry`) and flagged
    (:func:`flag_flat`). With ``spec.dtype == "float32"`` every problem is searched in single
    precision, then finished by a float64 BFGS from its float32 optimum; one whose polish
    fails is solved again from the grid in float64."""
    cfg, k = spec.cfg, spec.n_refine
    search_data, search_weights = data, weights
    if spec.dtype == "float32":
        search_data = problem.Data(*(np.asarray(a, dtype=np.float32) for a in data))
        search_weights = lambda lo, hi: weights(lo, hi).astype(np.float32)  # noqa: E731
    with jax.enable_x64(spec.dtype == "float64"):
        best = batches.solve(
            cfg,
            search_data,
            spec.candidates.astype(search_data.log_y.dtype),
            search_weights,
            n_problems=n,
            n_refine=k,
            chunk_size=spec.chunk_size,
            lanes=spec.lanes,
            devices=spec.devices,
            progress=progress,
            first_refine=first_pass(spec),  # staged within each call (engine._staged)
            at_once=backends.sizes().calls_at_once,
        )
    with jax.enable_x64(True):

        def weights_of(rows: np.ndarray) -> np.ndarray:
            return batches.rows_of(weights, rows, spec.chunk_size)

        def solve_rows(rows: np.ndarray, more: int, cfg: problem.Config = cfg) -> Solved:
            best = batches.solve(
                cfg,
                data,
                spec.candidates,
                weights_of(rows),
                n_refine=more,
                chunk_size=spec.chunk_size,
                lanes=spec.lanes,
                devices=spec.devices,
                at_once=backends.sizes().calls_at_once,
            )
            return solved_from(best)

        if spec.dtype == "float32":
            solved = solved_from(polish.polish(cfg, data, best, weights, n))
            rows = np.flatnonzero(solved.status != CONVERGED)
            if rows.size:
                solved = replace_rows(solved, rows, solve_rows(rows, k))
        else:
            solved = solved_from(best)
        solved = retry(spec, solved, solve_rows)
        return flag_flat(spec, data, solved, weights_of)


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
) -> list[Bucket]:
    """One problem per group ``ids`` (rows ``members[g]`` of ``log_x``, ``log_y``, weighted by
    ``run_weights`` [rows], default 1): groups of similar size share a bucket (padded to one
    size, the buckets chosen for these groups: :func:`jaxscale.batches.group_buckets`) and one
    kernel call per chunk of it; retried (:func:`retry`) in one call for all
    buckets (:func:`retry_groups`). ``n_resamples``: also solve that many resamples of every
    group, group ``g``'s drawn as :func:`jaxscale.bootstrap` with seed ``seed + g`` draws them.
    ``retry_later``: return the buckets before the retry (and leave the last progress report),
    for the caller to run :func:`retry_groups` beside other work."""
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


def retry_groups(spec: Spec, log_x, log_y, members, buckets: list[Bucket], run_weights=None) -> list[Bucket]:
    """Every bucket's groups retried (:func:`retry`) in one solve: those to solve again are
    padded to the largest of their buckets' sizes (weight-0 points add exactly 0 to the
    objective), so the retry compiles one kernel rather than one per bucket it draws from."""
    if not buckets:
        return buckets
    solved = Solved(*(np.concatenate(parts) for parts in zip(*(b.solved for b in buckets), strict=True)))
    groups = [g for b in buckets for g in b.ids]
    size_of = np.concatenate([np.full(len(b.ids), b.weights.shape[1]) for b in buckets])

    def solve_rows(rows: np.ndarray, k: int, cfg: problem.Config) -> Solved:
        size = int(size_of[rows].max())
        picked = [members[groups[r]] for r in rows]
        data, w = batches.pad_groups(spec.cfg, spec.theta_fixed, log_x, log_y, picked, size, run_weights)
        return _solve_padded(spec._replace(cfg=cfg), data, w, k)

    solved = retry(spec, solved, solve_rows)
    ends = np.cumsum([len(b.ids) for b in buckets])
    return [
        b._replace(solved=Solved(*(a[end - len(b.ids) : end] for a in solved)))
        for b, end in zip(buckets, ends, strict=True)
    ]


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
