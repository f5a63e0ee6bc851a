"""Which problems get more starts, and which result is kept: the refinement policy.

The runner (:mod:`jaxscale.runner`) solves; this module decides, from what a solve returned
(:class:`Solved`), what to solve again:

* :func:`in_doubt` (:func:`in_doubt_traced` inside a kernel): after a staged first pass
  (:func:`first_pass` starts), the problems that get all ``n_refine``, in the same kernel call
  (:func:`jaxscale.engine.solve_chunk`'s ``first``); a bootstrap's first pass includes its
  point estimate where :func:`may_stage` allows (:func:`with_point_estimate`);
* :func:`retry`: :data:`RETRY_FACTOR` times more starts where a term vanished (and, for
  groups, where the best start did not converge);
* :func:`keep_better`: the second result replaces the first unless the first is better.

Example:
    >>> import jaxscale as js
    >>> from jaxscale import refinement, specs
    >>> spec = specs.make_spec(js.get_law("chinchilla"), n_refine=8, staged=True)
    >>> refinement.first_pass(spec), refinement.may_stage(42, 64), refinement.may_stage(13, 64)
    (3, True, False)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from . import problem
from .solver import CONVERGED
from .specs import N_REFINE_WARM, Spec

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
# A bootstrap stages its resamples only where at least this share of the
# point fit's refined starts reached its optimum: data whose starts spread over several basins
# give resamples that do too, and there a few agreeing starts can share a worse one
# (benchmarks/RESULTS.md, "Refinement policy": 13 of 64 on the synthetic group that needed it).
STAGE_AGREEMENT = 0.5
# Groups (fit_groups) refine a first pass spread over their best 8 (screening.spread_first): of
# first_pass(spec) starts where they have more than STAGE_ABOVE_RUNS runs, and of
# SMALL_GROUP_EXTRA more where they have no more (buckets never mix the two: batches.group_buckets
# splits there). On four 2,000-group archives (benchmarks/RESULTS.md, "Refinement policy"): the
# best 3 of every group left 4 (3% noise) and 6 (5%) more groups above the 64-start optimum than
# the best 8; spread over the 8 in every group, 0 and 1; 3 spread in large groups and all 8 in
# small ones, none; 3 spread in large groups and 4 in small ones, none either (3 in small ones:
# 1 more at 3%); 2 spread in large groups, 2 more at 5%.
STAGE_ABOVE_RUNS = 64
SMALL_GROUP_EXTRA = 1


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
        n_starts=np.asarray(best.n_refined),
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


def stages_bucket(spec: Spec, bucket_size: int) -> int | None:
    """Starts a bucket of groups of ``bucket_size`` (padded) runs refines first: :func:`first_pass`
    above :data:`STAGE_ABOVE_RUNS` runs, :data:`SMALL_GROUP_EXTRA` more at or below; None where
    that is all ``n_refine`` (not staged). A bucket larger than that holds only groups of more
    runs than that (:func:`jaxscale.batches.group_buckets`' split).

    Example:
        >>> import jaxscale as js
        >>> from jaxscale import specs
        >>> spec = specs.make_spec(js.get_law("chinchilla"), n_refine=8, staged=True)
        >>> stages_bucket(spec, 320), stages_bucket(spec, 64), stages_bucket(spec._replace(first_refine=8), 64)
        (3, 4, None)
    """
    first = first_pass(spec) + (0 if bucket_size > STAGE_ABOVE_RUNS else SMALL_GROUP_EXTRA)
    return first if first < spec.n_refine else None


def may_stage(n_at_optimum: int, n_starts: int) -> bool:
    """Whether resamples of data whose fit had ``n_at_optimum`` of ``n_starts`` refined starts at
    its optimum may be staged (:data:`STAGE_AGREEMENT`)."""
    return n_at_optimum >= STAGE_AGREEMENT * n_starts


def with_point_estimate(
    spec: Spec,
    theta: np.ndarray,
    n_at_optimum: int,
    n_starts: int,
    *,
    warm: bool,
    may_seed: bool = False,
    converged: bool = True,
) -> Spec:
    """A bootstrap's spec once its point fit (``theta``, and ``n_at_optimum`` of its ``n_starts``
    refined starts at its optimum) is known.

    ``warm``: the point estimate and the grid compete in each resample's screening and the best
    :data:`~jaxscale.specs.N_REFINE_WARM` are refined (nearly always the point estimate and the
    best grid start). Staged (``spec.first_refine < spec.n_refine``): the point estimate joins
    the candidates of the first pass where :func:`may_stage` allows, and there, with
    ``may_seed`` (the caller left the solver to this policy) and a point fit that ``converged``
    (identified), BFGS starts from the exact Hessian (``"bfgs_hessian"``: half the steps on the
    Epoch resamples, the same optima; on noisy data of several basins it left more problems on
    plateaus, and on a flat objective, whose Hessian is singular, it ran a resample into
    max_steps, so only here: benchmarks/RESULTS.md, "Solvers"); elsewhere, and where the
    point fit failed, staging is off and every resample refines all ``n_refine``.
    """
    point = np.asarray(theta, dtype=np.float64)[None]
    if warm:
        return spec._replace(candidates=np.vstack([point, spec.candidates]), n_refine=N_REFINE_WARM)
    if first_pass(spec) >= spec.n_refine:
        return spec
    if may_stage(n_at_optimum, n_starts) and np.all(np.isfinite(point)):
        # One basin, on the evidence of the point fit: BFGS may start from the exact Hessian.
        seed = may_seed and converged and spec.cfg.method == "bfgs"
        seeded = spec.cfg._replace(method="bfgs_hessian") if seed else spec.cfg
        return spec._replace(candidates=np.vstack([point, spec.candidates]), cfg=seeded)
    return spec._replace(first_refine=spec.n_refine)


def in_doubt(spec: Spec, solved: Solved) -> np.ndarray:
    """``[B]``: problems a first pass leaves in doubt: the best start did not converge, a term
    vanished, or the refined starts did not all reach the same optimum (a sign of several
    basins, where more starts may find a lower one)."""
    doubt = (solved.status != CONVERGED) | vanished(spec, solved.theta, solved.sensitivity).any(axis=1)
    return doubt | (solved.n_at_optimum < solved.n_starts)


def in_doubt_traced(cfg: problem.Config, theta, values, status, sensitivity):
    """:func:`in_doubt` inside a kernel, for one problem: its first pass's refined starts'
    objectives ``values [f]``, the best one's ``status``, fitted parameters ``theta [p]`` and
    ``sensitivity [p]`` (:func:`jaxscale.problem.sensitivity`). Pure and traceable."""
    free = np.isin(np.arange(cfg.law.n_params), cfg.free)
    log_scale = np.asarray(cfg.law.log_scale)
    gone = jnp.any(free & ((log_scale & (theta < VANISHED_LOG)) | (sensitivity < INERT_TOL)))
    finite = jnp.where(jnp.isfinite(values), values, jnp.inf)
    best = jnp.min(finite)
    tol = SAME_OPTIMUM_RTOL * jnp.maximum(jnp.abs(best), 1e-300)
    agree = jnp.all(jnp.isfinite(values) & (values <= best + tol))
    return (status != CONVERGED) | gone | ~agree


def retry_config(cfg: problem.Config) -> problem.Config:
    """The solver a retry uses: ``"bfgs_mixed"``'s float64 BFGS, others their own. On a flat
    objective a float32 search can end where BFGS's curvature, learned from float32's rounded
    gradients, leaves the float64 finish crawling to ``max_steps`` (a group's bootstrap
    resample, tests/test_mixed.py); a retry is for such problems, and there are few of them.

    Example:
        >>> import jaxscale as js
        >>> from jaxscale import specs
        >>> cfg = specs.make_spec(js.get_law("chinchilla"), solver="bfgs_mixed").cfg
        >>> retry_config(cfg).method, retry_config(cfg._replace(method="newton")).method
        ('bfgs', 'newton')
    """
    return cfg._replace(method="bfgs") if cfg.method == "bfgs_mixed" else cfg


def retry_starts(spec: Spec) -> int:
    """Screened starts a retry refines (:func:`retry`): :data:`RETRY_FACTOR` times the spec's,
    at most every candidate."""
    return min(len(spec.candidates), RETRY_FACTOR * spec.n_refine)


def retry_rows(spec: Spec, solved: Solved) -> np.ndarray:
    """The problems :func:`retry` solves again: those whose best start stopped where a term
    vanished (and, with ``spec.retry_failed``, those that did not converge); none where the spec
    does not retry, or a retry would refine no more starts than the first solve."""
    if not spec.retry or retry_starts(spec) <= spec.n_refine:
        return np.zeros(0, dtype=np.int64)
    again = vanished(spec, solved.theta, solved.sensitivity).any(axis=1)
    if spec.retry_failed:
        again |= np.asarray(solved.status) != CONVERGED
    return np.flatnonzero(again)


def retry(spec: Spec, solved: Solved, solve_rows: Callable[[np.ndarray, int, problem.Config], Solved]) -> Solved:
    """Solve again, from :data:`RETRY_FACTOR` times more screened starts (which include the
    first pass's), each problem whose best start stopped where a term vanished (and, with
    ``spec.retry_failed``, each that did not converge; :func:`retry_rows`): a vanished term is a
    real outcome (the runs do not need it) or a plateau that the solver took for an optimum, and
    more starts tell them apart. The retry's result is kept unless the first is strictly better
    (the same start can end in other last bits).

    A fit of one data set (``fit``) and bootstrap resamples are not solved again when they
    fail to converge: a budget the caller set (``max_steps``) is theirs to raise, and a
    failed resample is counted as failed. Groups are (``fit_groups``): with only a few
    starts each, another basin often converges where the first few did not."""
    rows = retry_rows(spec, solved)
    if rows.size == 0:
        return solved
    return keep_better(solved, rows, solve_rows(rows, retry_starts(spec), retry_config(spec.cfg)))
