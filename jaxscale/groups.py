"""``fit_groups``: one fit per group of runs (dataset, configuration, model family), all at once.

Groups are ragged; each is padded with weight-0 points to a bucket size, chosen for the
archive (:func:`jaxscale.batches.group_buckets`: few sizes where a compilation costs more than
the padding it saves), so that groups of similar size share one compiled kernel call: every
group × every start of a bucket is solved in one call (chunked to bound memory), and the kernel
compiles once per bucket size rather than once per group size as a loop of ``fit`` would.
A weight-0 point adds exactly 0 to the objective, so each group's optimum is its own fit's.

Example:
    >>> import pandas as pd
    >>> import jaxscale as js
    >>> df = pd.DataFrame(js.datasets.chinchilla_table()).query("in_epoch_fit_set == 1")
    >>> df["half"] = ["small" if n < 1e9 else "large" for n in df["params_N"]]
    >>> table = js.fit_groups(df, by="half", N="params_N", D="tokens_D")
    >>> table[["half", "n_points", "converged"]].values.tolist()
    [['large', 122, True], ['small', 118, True]]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import jax
import numpy as np
import pandas as pd

from . import backends, batches, checks, group_runner, identify, objective, refinement, specs
from .fit import match_inputs
from .io import read_runs, read_weights
from .laws import Law, get_law
from .refinement import Solved
from .results import BootstrapResult, FitResult, fit_result
from .runs import Runs

TOO_FEW_RUNS = "too_few_runs"


def _group_ids(runs: Runs) -> tuple[list[tuple], np.ndarray]:
    """Sorted group keys (first-seen order if the keys cannot be sorted) and each run's group id."""
    codes, uniques = pd.factorize(runs.groups)  # keys hashed in C, in first-seen order
    keys = list(uniques)
    try:
        order = sorted(range(len(keys)), key=keys.__getitem__)
    except TypeError:
        order = list(range(len(keys)))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys))
    return [keys[i] for i in order], rank[codes]


@checks.renamed(bootstrap="n_resamples")
def fit_groups(
    source: pd.DataFrame | str | os.PathLike | Runs,
    by: str | Sequence[str] | None = None,
    law: str | Law = "chinchilla",
    *,
    loss: str = "loss",
    loss_fn: str = "huber",
    delta: float = 1e-3,
    scale: str = "log",
    reduction: str = "sum",
    overestimate_penalty: float = 1.0,
    starts: str | np.ndarray = "screen",
    n_refine: int = specs.N_REFINE_MANY,
    staged: bool = True,
    fixed: Mapping[str, float] | None = None,
    max_steps: int = 1000,
    gtol: float = 1e-10,
    small: str = "error",
    retry: bool = True,
    n_resamples: int = 0,
    level: float = 0.95,
    seed: int = 0,
    chunk_size: int | None = None,
    lanes: int | None = None,
    devices: int | None = None,
    solver: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    where=None,
    C: str | None = None,
    flops_per_token: float = 6.0,
    weights: str | Sequence[float] | None = None,
    **inputs: str,
) -> pd.DataFrame:
    """Fit ``law`` to every group of runs; one row per group.

    Args:
        source: a DataFrame or a CSV/Parquet/JSON/JSONL path (read with :func:`read_runs`,
            which takes ``loss``, ``where``, ``C``, ``flops_per_token`` and the input columns
            ``**inputs``, e.g. ``N="params"``), or :class:`Runs` read with ``group=``.
        by: the column(s) whose values key the groups.
        law, loss_fn, delta, scale, reduction, overestimate_penalty, starts, n_refine, fixed,
        max_steps, gtol, solver: as ``law``,
            ``loss``, ... of :func:`jaxscale.fit` (``loss`` here names the loss *column*),
            except that each group refines its best 8 screened starts by default (fit: 64)
            and that the default solver (None) is the backend's
            (:data:`jaxscale.backends.Sizes.grouped_solver`): on a CPU ``"bfgs_mixed"``, the
            same optima from a search in float32 (benchmarks/RESULTS.md, "Solvers").
        staged: with screened starts, each group refines 3 of them first (4 in groups of at
            most 64 runs), spread over its best ``n_refine``, and the rest only where those
            disagree, fail or lose a term (:func:`jaxscale.refinement.in_doubt`), in the same
            kernel call; ``False``: all ``n_refine`` (benchmarks/RESULTS.md, "Refinement
            policy"). Resamples refine all.
        small: a group with no more runs than free parameters raises (``"error"``), or is
            kept in the table unfitted with status ``"too_few_runs"`` (``"report"``).
        retry: refit each group whose best start did not converge, or stopped where a term of
            the law vanished (see ``FitResult.vanished``), from 8 times as many screened starts (64 by
            default; :func:`jaxscale.refinement.retry`), keeping whichever result is better; groups
            that still fail stay in the table with their status.
        n_resamples: resamples per group (0: none); adds ``<param>_lower``/``_upper`` columns
            at ``level`` for every parameter and derived quantity, from converged resamples.
            The ``g``-th group (in table order) is resampled as ``jaxscale.bootstrap(group,
            n_resamples=n_resamples, seed=seed + g, staged=False)`` would resample it (every
            resample refines its best ``n_refine``), so any row can be reproduced alone.
            With :class:`Runs` as ``source``, ``by`` is ignored: the groups are the runs' own.
        chunk_size: most groups per kernel call (bounds memory: the largest bucket's data is
            ``chunk_size x size x (inputs + 2)`` floats, 34 MB for 2,048 groups of 512 runs);
            a bucket is split into equal calls. lanes: starts iterated side by side. Both
            default to the backend's (:func:`jaxscale.backends.sizes`; 2,048 and 512 on a CPU).
        devices: local devices to shard chunks over (default: all); results do not depend on it.
        progress: called as ``progress(done, total)`` after each chunk.
        weights: per-run weights (default 1; 0 leaves a run out): a column of ``source``
            (read with :func:`jaxscale.io.read_weights`), or one number per run (per row of
            ``source`` after ``where``). As :func:`jaxscale.fit`'s ``weights`` within each group:
            ``n_points`` counts a group's runs of non-zero weight, a ``"mean"`` objective is over
            their total weight, and resamples' counts are multiplied by them.

    Returns:
        DataFrame, one row per group: the group keys, ``law``, the natural parameters, the
        derived quantities, ``objective``, ``status``, ``converged``, ``steps``,
        ``grad_norm``, ``n_points``, ``n_starts`` (starts refined: 3, 4 or 8 staged; more where
        retried), ``n_at_optimum`` (of those), ``vanished`` (parameters whose term
        vanished, comma-separated; see ``FitResult.vanished``), ``unidentified`` and
        ``unidentified_reason`` (parameters the group's runs do not determine, and why: status
        ``"unidentified"``, see :mod:`jaxscale.identify`); with ``n_resamples``, the interval
        columns, ``n_resamples``, ``boot_failed_fraction`` and ``boot_warning`` (intervals of zero
        width or that exclude their estimate; see ``BootstrapResult.ci``). Groups whose fit did
        not converge stay in the table with their status.
    """
    law = get_law(law)
    checks.arguments(
        law,
        delta=delta,
        n_refine=n_refine,
        fixed=fixed,
        max_steps=max_steps,
        gtol=gtol,
        retry=retry,
        n_resamples=n_resamples,
        level=level,
        seed=seed,
        chunk_size=chunk_size,
        lanes=lanes,
        devices=devices,
    )
    checks.check_callable("progress", progress)
    if small not in ("error", "report"):
        raise ValueError(f"small must be 'error' or 'report'; got {small!r}")
    runs, by = _read(source, by, loss=loss, where=where, C=C, flops_per_token=flops_per_token, **inputs)
    keys, gid = _group_ids(runs)
    w = _weights(source, runs, weights, where)
    spec = specs.make_spec(
        law,
        loss_fn=loss_fn,
        delta=delta,
        scale=scale,
        reduction=reduction,
        overestimate_penalty=overestimate_penalty,
        fixed=fixed,
        max_steps=max_steps,
        gtol=gtol,
        solver=solver or backends.sizes().grouped_solver,
        starts=starts,
        n_refine=n_refine,
        lanes=lanes,
        chunk_size=chunk_size,
        devices=devices,
        retry=retry,
        retry_failed=True,
        staged=staged,
    )
    specs.check_zeros(runs.log_loss(), spec.cfg)
    members = _members(gid, len(keys))
    used = [int(np.count_nonzero(w[rows])) for rows in members]
    few = [g for g, n in enumerate(used) if specs.too_few_runs(n, spec.cfg)]
    if few and small == "error":
        raise ValueError(_too_few_message(law, spec, keys, used, few, weighted=weights is not None))
    ids = sorted(set(range(len(keys))) - set(few))
    fits, boots = _solve(spec, runs, members, ids, used, w, n_resamples, seed, progress)
    return _table(law, by, keys, used, fits, boots, level)


def _members(gid: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Each group's run indices, in the runs' original order."""
    order = np.argsort(gid, kind="stable")
    return np.split(order, np.cumsum(np.bincount(gid, minlength=n_groups))[:-1])


def _solve(spec, runs: Runs, members, ids: list[int], used: list[int], w, n_resamples: int, seed: int, progress):
    """Each group ``ids``' fit (and resamples): dicts by group id of FitResult and BootstrapResult."""
    law = spec.cfg.law
    fits: dict[int, FitResult] = {}
    boots: dict[int, BootstrapResult] = {}
    with jax.enable_x64(True):
        log_x, log_y = match_inputs(runs, law), runs.log_loss()
        # The largest bucket, and one of its groups: the shapes of the checks' and the retry's kernels.
        sizes = group_runner.bucket_groups(members, ids)
        like = (members[sizes[max(sizes)][0]], max(sizes)) if ids else None
        ahead = _checks_compiled_ahead(spec, log_x, log_y, like, len(ids), w)
        retry_kernel: list[Future] = []

        def start_retry_kernel(solved: Solved) -> None:
            # The retry's kernel compiles from the first call that needs it, beside the calls
            # left, rather than alone after them.
            if not retry_kernel and refinement.retry_rows(spec, solved).size:
                args = (spec, log_x, log_y, *like, w)
                retry_kernel.append(batches.in_background(group_runner.compile_retry, *args))

        first = group_runner.solve_groups(
            spec,
            log_x,
            log_y,
            members,
            ids,
            n_resamples=n_resamples,
            seed=seed,
            progress=progress,
            run_weights=w,
            retry_later=True,
            on_call=start_retry_kernel,
        )
        totals = {g: float(np.sum(w[members[g]])) for g in ids}

        # The retry solves a few groups, in a call that leaves cores idle: every group's first
        # result is checked beside it, and the groups it changed again after.
        def check() -> list[list[FitResult]]:
            if ahead is not None:
                ahead.result()  # the kernel compiled: the calls below reuse it
            return _checked(spec, first, None, used, totals)

        compiled = retry_kernel[0] if retry_kernel else None
        jobs = [lambda: group_runner.retry_groups(spec, log_x, log_y, members, first, w, compiled), check]
        buckets, assessed = batches.side_by_side(lambda job: job(), jobs, backends.sizes().calls_at_once)
        if progress is not None and ids:
            progress(len(ids), len(ids))
        changed = [np.flatnonzero(_rows_differ(a.solved, b.solved)) for a, b in zip(first, buckets, strict=True)]
        if any(rows.size for rows in changed):
            again = _checked(spec, buckets, changed, used, totals, like=len(ids))
            for results, rows, new in zip(assessed, changed, again, strict=True):
                for j, result in zip(rows, new, strict=True):
                    results[j] = result
        for bucket, results in zip(buckets, assessed, strict=True):
            fits.update(zip(bucket.ids, results, strict=True))
            if bucket.resamples is not None:
                boots.update(_bootstraps(law, bucket, fits, totals, n_resamples, seed))
    return fits, boots


def _checks_compiled_ahead(spec, log_x, log_y, like: tuple | None, n_groups: int, w) -> Future | None:
    """The checks' kernel (:func:`jaxscale.identify.compile_grouped_curvature`, for ``n_groups``
    groups padded to their largest bucket; ``like``: one of its groups' runs and its size)
    compiling in a thread of its own, from now: beside the solver kernels' tracing, which holds
    Python and leaves a core idle, rather than after the solve, when it would wait for the
    compilation (None: no groups)."""
    if like is None:
        return None
    runs, size = like
    data, weights = batches.pad_groups(spec.cfg, spec.theta_fixed, log_x, log_y, [runs], size, w)
    return batches.in_background(identify.compile_grouped_curvature, spec.cfg, data, weights, n_groups)


def _checked(spec, buckets, rows, used, totals, like: int | None = None) -> list[list[FitResult]]:
    """The fit results of rows ``rows[i]`` of bucket ``i`` (``rows`` None: all of them), checked
    (:func:`jaxscale.identify.assess_groups`, every bucket's at once: their curvature matrices
    share one compiled shape, that of ``like`` groups where given)."""
    parts = []
    for i, bucket in enumerate(buckets):
        picked = np.arange(len(bucket.ids)) if rows is None else rows[i]
        found = [
            fit_result(spec, bucket.solved, j, n_points=used[bucket.ids[j]], total_weight=totals[bucket.ids[j]])
            for j in picked.tolist()
        ]
        data = type(bucket.data)(*(np.asarray(a)[picked] for a in bucket.data))
        parts.append((data, bucket.weights[picked], found))
    return identify.assess_groups(spec.cfg, parts, like=like)


def _rows_differ(a: Solved, b: Solved) -> np.ndarray:
    """``[B]`` whether row i of two solutions differs in any field (NaN equal to NaN)."""
    out = np.zeros(len(a.value), dtype=bool)
    for x, y in zip(a, b, strict=True):
        x, y = np.asarray(x).reshape(len(out), -1), np.asarray(y).reshape(len(out), -1)
        out |= ~np.all((x == y) | (np.isnan(x) & np.isnan(y)), axis=1)
    return out


def group_fits(
    runs: Runs, law: Law, *, fixed: Mapping[str, float] | None = None, weights=None
) -> tuple[list[tuple], list[np.ndarray], dict[int, FitResult], np.ndarray]:
    """Every group's fit (:func:`fit_groups`' defaults) of ``runs`` read with ``group=``: the
    sorted group keys, each group's run indices, the fits by group index (groups with too
    few runs of non-zero weight raise, naming them) and the checked weights (one per run)."""
    keys, gid = _group_ids(runs)
    spec = specs.make_spec(law, fixed=fixed, retry_failed=True, staged=True)
    specs.check_zeros(runs.log_loss(), spec.cfg)
    w = _weights(runs, runs, weights, where=None)
    members = _members(gid, len(keys))
    used = [int(np.count_nonzero(w[rows])) for rows in members]
    few = [g for g, n in enumerate(used) if specs.too_few_runs(n, spec.cfg)]
    if few:
        raise ValueError(_too_few_message(law, spec, keys, used, few, weighted=weights is not None))
    fits, _ = _solve(spec, runs, members, list(range(len(keys))), used, w, 0, 0, None)
    return keys, members, fits, w


def _weights(source, runs: Runs, weights, where) -> np.ndarray:
    """One weight per run (default 1): read from a column of ``source``, or given."""
    if weights is None:
        return np.ones(runs.n_points)
    if isinstance(weights, str):
        if isinstance(source, Runs):
            raise ValueError(
                f"weights={weights!r} names a column, but the source is Runs, which keeps no other columns: "
                "give one weight per run (a list or array), or pass the DataFrame or file"
            )
        return read_weights(source, weights, where=where)
    try:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"weights must be a column name or one number per run; got {type(weights).__name__}") from None
    if w.shape != (runs.n_points,):
        raise ValueError(f"weights must give one number per run: {runs.n_points} runs, {w.size} weights")
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        raise ValueError(
            f"weights must be finite and >= 0 (0 leaves a run out); the run labelled {runs.rows[bad[0]]!r} has "
            f"{w[bad[0]]!r}"
        )
    return w


def _too_few_message(law: Law, spec: specs.Spec, keys, used: list[int], few: list[int], *, weighted: bool) -> str:
    runs = "runs of non-zero weight" if weighted else "runs"
    shown = "; ".join(f"group {keys[g]!r} has {used[g]} {runs}" for g in few[:5])
    more = f" and {len(few) - 5} more" if len(few) > 5 else ""
    n_free = len(spec.cfg.free)
    return (
        f"{shown}{more}: law {law.name!r} has {n_free} free parameters and needs at least {n_free + 1} runs "
        "per group. Add runs, drop those groups with where=, or keep them unfitted in the table with small='report'"
    )


def _bootstraps(law: Law, bucket: group_runner.Bucket, fits: dict, totals: dict, n: int, seed: int) -> dict:
    """Each group's resamples of a bucket as its :class:`BootstrapResult`."""
    draws = np.asarray(law.to_natural(bucket.resamples.theta)).reshape(len(bucket.ids), n, -1)
    value = np.asarray(bucket.resamples.value).reshape(len(bucket.ids), n)
    status = np.asarray(bucket.resamples.status).reshape(len(bucket.ids), n)
    return {
        g: BootstrapResult(
            law,
            fits[g],
            draws[j],
            objective.reported(value[j], totals[g], fits[g].reduction),
            status[j],
            seed + g,
            None,
        )
        for j, g in enumerate(bucket.ids)
    }


def _read(source, by, **read_options) -> tuple[Runs, list[str]]:
    if isinstance(source, Runs):
        if source.groups is None:
            raise ValueError("these runs have no groups: read them with read_runs(..., group=[...]) or pass by=[...]")
        return source, list(source.group_columns)
    if by is None or (not isinstance(by, str) and len(by) == 0):
        raise ValueError("fit_groups needs by='column' (or a list of columns) naming the groups")
    by = [by] if isinstance(by, str) else list(by)
    return read_runs(source, group=by, **read_options), by


def _table(law: Law, by: list[str], keys, used: list[int], fits: dict, boots: dict, level: float) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for g, key in enumerate(keys):
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        res = fits.get(g)
        if res is None:
            row |= {"law": law.name, **dict.fromkeys((*law.natural, *law.derived_names), np.nan)}
            row |= {"objective": np.nan, "status": TOO_FEW_RUNS, "converged": False, "steps": 0}
            row |= {"grad_norm": np.nan, "n_points": used[g], "n_starts": 0, "n_at_optimum": 0, "vanished": ""}
            row |= {"unidentified": "", "unidentified_reason": ""}
            if boots:
                row |= _interval_columns(law, None, level)
        else:
            row |= result_row(res, boots.get(g), level) if boots else result_row(res)
        rows.append(row)
    return pd.DataFrame(rows)


def result_row(res: FitResult, boot: BootstrapResult | None = None, level: float = 0.95) -> dict[str, Any]:
    """One fit (and its bootstrap) as a row of a :func:`fit_groups` table, less the group keys."""
    row: dict[str, Any] = {"law": res.law.name, **res.params, **res.derived}
    row |= {"objective": res.objective, "status": res.status, "converged": res.converged, "steps": res.steps}
    row |= {"grad_norm": res.grad_norm, "n_points": res.n_points, "n_starts": res.n_starts}
    row["n_at_optimum"] = res.n_at_optimum
    row["vanished"] = ",".join(res.vanished)
    row |= {"unidentified": ",".join(res.unidentified), "unidentified_reason": res.unidentified_reason}
    if boot is not None:
        row |= _interval_columns(res.law, boot, level)
    return row


def _interval_columns(law: Law, boot: BootstrapResult | None, level: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ci = boot.ci(level) if boot is not None and boot.ok.any() else None
    for name in (*law.natural, *law.derived_names):
        out[f"{name}_lower"] = np.nan if ci is None else float(ci.loc[name, "lower"])
        out[f"{name}_upper"] = np.nan if ci is None else float(ci.loc[name, "upper"])
    out["n_resamples"] = 0 if boot is None else boot.n_resamples
    out["boot_failed_fraction"] = np.nan if boot is None else boot.failed_fraction
    # What is wrong with any interval (BootstrapResult.ci's warning), e.g. "alpha: zero width".
    notes = [] if ci is None else [f"{name}: {why}" for name, why in ci["warning"].items() if why]
    out["boot_warning"] = "; ".join(notes)
    return out
