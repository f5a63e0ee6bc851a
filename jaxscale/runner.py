"""The runner: one validated problem family in, solved problems out.

``fit``, ``bootstrap``, ``fit_groups`` and ``validate`` are adapters: each reads its input,
builds one :class:`~jaxscale.specs.Spec` (:func:`jaxscale.specs.make_spec`) and calls one
solve here:

* :func:`solve_one`: one weight vector over one data set (a fit);
* :func:`solve_resamples`: many weight vectors over one data set (bootstrap resamples), in
  float64, or searched in float32 and finished in float64 (:mod:`jaxscale.polish`);
* :func:`solve_groups`: one problem per group of runs, ragged groups padded to buckets, and
  optionally resamples of every group.

The policies live here and nowhere else (the refinement counts with the spec, in
:mod:`jaxscale.specs`): which problems are solved again from more starts and which result is
kept (:func:`retry`), which converged resamples are flagged unidentified (:func:`flag_flat`),
and how resamples are drawn (:func:`resample_weights`). Padding and chunking over devices are
in :mod:`jaxscale.batches`, the compiled kernel in :mod:`jaxscale.engine`.

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

from . import batches, identify, polish, problem
from .solver import CONVERGED
from .specs import (
    N_REFINE_MANY,
    N_REFINE_WARM,
    Spec,
)

# A problem whose best start did not converge, or stopped where a term of the law vanished,
# is solved again from this many times more screened starts: a few best starts can all stop
# on the same plateau, reported converged at a worse objective, and more starts escape it.
RETRY_FACTOR = 8
# Two optima are the same when their objectives agree to this relative tolerance.
SAME_OPTIMUM_RTOL = 1e-9
# A coefficient fitted as a log below this (natural value < 1e-13) has gone to 0.
VANISHED_LOG = -30.0
# A free parameter whose change by 1 moves no run's predicted log-loss by more than this has
# dropped out of the law with its term (|d log L / d theta| is ~0.01-10 at a real optimum).
INERT_TOL = 1e-6
# A bootstrap stages its resamples (runner.escalate) only where at least this share of the
# point fit's refined starts reached its optimum: data whose starts spread over several basins
# give resamples that do too, and there a few agreeing starts can share a worse one
# (benchmarks/RESULTS.md, "Refinement policy": 13 of 64 on the synthetic group that needed it).
STAGE_AGREEMENT = 0.5
GROUP_RESAMPLE_CHUNK = 1024  # most group resamples per call: each carries its group's data


class Solved(NamedTuple):
    """Each problem's best start (host arrays, one row per problem)."""

    theta: np.ndarray  # [B, p] the law's fitted parameters
    value: np.ndarray  # [B] objective
    status: np.ndarray  # [B] solver status code (identify.UNIDENTIFIED_CODE once flagged)
    steps: np.ndarray  # [B]
    grad_norm: np.ndarray  # [B]
    sensitivity: np.ndarray  # [B, p] see problem.sensitivity
    n_starts: np.ndarray  # [B] starts refined
    n_at_optimum: np.ndarray  # [B] refined starts whose objective matches the best one


def solved_from(best: problem.Best) -> Solved:
    """An engine outcome as :class:`Solved` (the refined starts' objectives reduced to counts)."""
    values = np.asarray(best.start_values, dtype=np.float64)
    value = np.asarray(best.value, dtype=np.float64)
    tol = SAME_OPTIMUM_RTOL * np.maximum(np.abs(value), 1e-300)
    at_optimum = np.isfinite(values) & (values <= (value + tol)[:, None])
    return Solved(
        theta=np.asarray(best.theta),
        value=np.asarray(best.value),
        status=np.asarray(best.status),
        steps=np.asarray(best.steps),
        grad_norm=np.asarray(best.grad_norm),
        sensitivity=np.asarray(best.sensitivity),
        n_starts=np.full(value.shape, values.shape[1]),
        n_at_optimum=at_optimum.sum(axis=1),
    )


def replace_rows(solved: Solved, rows: np.ndarray, other: Solved) -> Solved:
    """``solved`` with problems ``rows`` taken from ``other`` (one row of ``other`` per row)."""
    out = []
    for mine, theirs in zip(solved, other, strict=True):
        a = np.array(mine)
        a[rows] = theirs
        out.append(a)
    return Solved(*out)


def vanished(spec: Spec, theta: np.ndarray, sensitivity: np.ndarray) -> np.ndarray:
    """``[B, p]``: free parameters whose term vanished (a log coefficient below
    :data:`VANISHED_LOG`, or no prediction moves with it: :data:`INERT_TOL`)."""
    free = np.isin(np.arange(spec.cfg.law.n_params), spec.cfg.free)
    gone = np.asarray(spec.cfg.law.log_scale) & (np.asarray(theta, dtype=np.float64) < VANISHED_LOG)
    return free & (gone | (np.asarray(sensitivity) < INERT_TOL))


def keep_better(solved: Solved, rows: np.ndarray, again: Solved) -> Solved:
    """``solved`` with problems ``rows`` solved ``again``, unless the first result is strictly
    better (the same start can end in other last bits)."""
    first = np.asarray(solved.value, dtype=np.float64)[rows]
    take = (again.value <= first * (1 + SAME_OPTIMUM_RTOL)) | ~np.isfinite(first)
    return replace_rows(solved, rows[take], Solved(*(np.asarray(a)[take] for a in again)))


def first_pass(spec: Spec) -> int:
    """Starts each problem refines at first: ``spec.first_refine``, or all when not staged."""
    return min(spec.first_refine, spec.n_refine)


def may_stage(n_at_optimum: int, n_starts: int) -> bool:
    """Whether resamples of data whose fit had ``n_at_optimum`` of ``n_starts`` refined starts at
    its optimum may be staged (:data:`STAGE_AGREEMENT`)."""
    return n_at_optimum >= STAGE_AGREEMENT * n_starts


def with_point_estimate(spec: Spec, theta: np.ndarray, n_at_optimum: int, n_starts: int, *, warm: bool) -> Spec:
    """A bootstrap's spec once its point fit (``theta``, and ``n_at_optimum`` of its ``n_starts``
    refined starts at its optimum) is known.

    ``warm``: the point estimate and the grid compete in each resample's screening and the best
    :data:`~jaxscale.specs.N_REFINE_WARM` are refined (nearly always the point estimate and the
    best grid start). Staged (``spec.first_refine < spec.n_refine``): the point estimate joins
    the candidates of the first pass where :func:`may_stage` allows; elsewhere, and where the
    point fit failed, staging is off and every resample refines all ``n_refine``.
    """
    point = np.asarray(theta, dtype=np.float64)[None]
    if warm:
        return spec._replace(candidates=np.vstack([point, spec.candidates]), n_refine=N_REFINE_WARM)
    if first_pass(spec) >= spec.n_refine:
        return spec
    if may_stage(n_at_optimum, n_starts) and np.all(np.isfinite(point)):
        return spec._replace(candidates=np.vstack([point, spec.candidates]))
    return spec._replace(first_refine=spec.n_refine)


def escalate(spec: Spec, solved: Solved, solve_rows: Callable[[np.ndarray, int], Solved]) -> Solved:
    """After a first pass of :func:`first_pass` starts, solve again from all ``spec.n_refine``
    the problems it leaves in doubt: the best start did not converge, a term vanished, or the
    refined starts did not all reach the same optimum (a sign of several basins, where more
    starts may find a lower one)."""
    if first_pass(spec) >= spec.n_refine:
        return solved
    doubt = (solved.status != CONVERGED) | vanished(spec, solved.theta, solved.sensitivity).any(axis=1)
    doubt |= solved.n_at_optimum < solved.n_starts
    rows = np.flatnonzero(doubt)
    return keep_better(solved, rows, solve_rows(rows, spec.n_refine)) if rows.size else solved


def retry(spec: Spec, solved: Solved, solve_rows: Callable[[np.ndarray, int], Solved]) -> Solved:
    """Solve again, from :data:`RETRY_FACTOR` times more screened starts (which include the
    first pass's), each problem whose best start stopped where a term vanished (and, with
    ``spec.retry_failed``, each that did not converge): a vanished term is a real outcome
    (the runs do not need it) or a plateau that the solver took for an optimum, and more
    starts tell them apart. The retry's result is kept unless the first is strictly better
    (the same start can end in other last bits).

    A fit of one data set (``fit``) and bootstrap resamples are not solved again when they
    fail to converge: a budget the caller set (``max_steps``) is theirs to raise, and a
    failed resample is counted as failed. Groups are (``fit_groups``): with only a few
    starts each, another basin often converges where the first few did not."""
    more = min(len(spec.candidates), RETRY_FACTOR * spec.n_refine)
    if not spec.retry or more <= spec.n_refine:
        return solved
    again = vanished(spec, solved.theta, solved.sensitivity).any(axis=1)
    if spec.retry_failed:
        again |= solved.status != CONVERGED
    rows = np.flatnonzero(again)
    if rows.size == 0:
        return solved
    return keep_better(solved, rows, solve_rows(rows, more))


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

    with jax.enable_x64(True):
        counts = np.asarray(jax.vmap(one)(jnp.arange(lo, hi)), dtype=np.float64)
    return counts if clusters is None else counts[:, clusters]


def solve_one(spec: Spec, data: problem.Data, w: np.ndarray) -> tuple[Solved, problem.Data, np.ndarray]:
    """One problem (weights ``w [P]`` over ``data``), padded to a bucket size so that fits of
    many run counts share a few compiled kernels; retried as :func:`retry` says. Returns the
    solution and the padded data and weights (for checks at the optimum)."""
    data, w = batches.pad_points(data, w, batches.bucket_size(len(w)))

    def solve(rows: np.ndarray, k: int) -> Solved:
        # One problem: no more lanes than starts (cross-chunk bit-identity is moot here).
        lanes = min(spec.lanes, k)
        return solved_from(
            batches.solve(spec.cfg, data, spec.candidates, w[None], n_refine=k, chunk_size=1, lanes=lanes)
        )

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
    cfg, k = spec.cfg, first_pass(spec)
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
        )
    with jax.enable_x64(True):

        def weights_of(rows: np.ndarray) -> np.ndarray:
            return batches.rows_of(weights, rows, spec.chunk_size)

        def solve_rows(rows: np.ndarray, more: int) -> Solved:
            best = batches.solve(
                cfg,
                data,
                spec.candidates,
                weights_of(rows),
                n_refine=more,
                chunk_size=spec.chunk_size,
                lanes=spec.lanes,
                devices=spec.devices,
            )
            return solved_from(best)

        if spec.dtype == "float32":
            solved = solved_from(polish.polish(cfg, data, best, weights, n))
            rows = np.flatnonzero(solved.status != CONVERGED)
            if rows.size:
                solved = replace_rows(solved, rows, solve_rows(rows, k))
        else:
            solved = solved_from(best)
        solved = retry(spec, escalate(spec, solved, solve_rows), solve_rows)
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
) -> list[Bucket]:
    """One problem per group ``ids`` (rows ``members[g]`` of ``log_x``, ``log_y``): groups of
    similar size share a bucket (padded to one size) and one kernel call per chunk of it;
    retried (:func:`retry`). ``n_resamples``: also solve that many resamples of every group,
    group ``g``'s drawn as :func:`jaxscale.bootstrap` with seed ``seed + g`` draws them."""
    # Few groups need few lanes; the cap must not depend on chunk_size, since the lane count
    # fixes the compiled arithmetic and results would then depend on the chunking.
    spec = spec._replace(lanes=min(spec.lanes, max(1, spec.n_refine * len(ids))))
    sizes: dict[int, list[int]] = {}
    for g in ids:
        sizes.setdefault(batches.bucket_size(len(members[g])), []).append(g)
    out, done = [], 0
    for size, bucket in sorted(sizes.items()):
        data, w = batches.pad_groups(spec.cfg, spec.theta_fixed, log_x, log_y, [members[g] for g in bucket], size)

        def solve_rows(rows: np.ndarray, k: int, data=data, w=w) -> Solved:
            part = problem.Data(*(np.asarray(a)[rows] for a in data))
            best = batches.solve(
                spec.cfg,
                part,
                spec.candidates,
                w[rows],
                n_refine=k,
                chunk_size=spec.chunk_size,
                lanes=spec.lanes,
                devices=spec.devices,
                grouped=True,
            )
            return solved_from(best)

        solved = solve_rows(np.arange(len(bucket)), first_pass(spec))
        solved = retry(spec, escalate(spec, solved, solve_rows), solve_rows)
        resamples = _group_resamples(spec, data, bucket, members, n_resamples, seed) if n_resamples else None
        out.append(Bucket(bucket, data, w, solved, resamples))
        done += len(bucket)
        if progress is not None:
            progress(done, len(ids))
    return out


def _group_resamples(spec: Spec, data: problem.Data, ids: list[int], members, n: int, seed: int) -> Solved:
    """``n`` resamples of every group of a bucket, as one grouped solve."""
    size = data.log_y.shape[1]
    # As bootstrap() does: screened starts refine a few, other start sets all of them.
    k = N_REFINE_MANY if spec.n_refine < len(spec.candidates) else spec.n_refine
    spec = spec._replace(n_refine=k)
    chunk = min(4 * spec.chunk_size, GROUP_RESAMPLE_CHUNK)
    data_index = np.repeat(np.arange(len(ids)), n)

    def weights(lo: int, hi: int) -> np.ndarray:
        out = np.zeros((hi - lo, size))
        for j in range(lo // n, (hi - 1) // n + 1):
            a, b = max(lo, j * n) - j * n, min(hi, (j + 1) * n) - j * n
            n_runs = len(members[ids[j]])
            out[j * n + a - lo : j * n + b - lo, :n_runs] = resample_weights(
                jax.random.key(seed + ids[j]), a, b, n_runs
            )
        return out

    def weights_of(rows: np.ndarray) -> np.ndarray:
        return batches.rows_of(weights, rows, chunk)

    def solve(w, n_refine: int, rows: np.ndarray) -> Solved:
        best = batches.solve(
            spec.cfg,
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

    def solve_rows(rows: np.ndarray, more: int) -> Solved:
        return solve(weights_of(rows), more, rows)

    solved = solve(weights, first_pass(spec), np.arange(len(ids) * n))
    solved = retry(spec, escalate(spec, solved, solve_rows), solve_rows)
    return flag_flat(spec, data, solved, weights_of, grouped=True, data_index=data_index)
