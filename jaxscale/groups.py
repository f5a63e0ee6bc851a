"""``fit_groups``: one fit per group of runs (dataset, configuration, model family), all at once.

Groups are ragged; each is padded with weight-0 points to a bucket size (the next power of
two, at least 8) so that groups of similar size share one compiled kernel call: every group ×
every start of a bucket is solved in one call (chunked to bound memory), and the kernel
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
from typing import Any

import jax
import numpy as np
import pandas as pd

from . import batches, checks, identify, problem
from .bootstrap import DEFAULT_N_REFINE as BOOT_N_REFINE
from .bootstrap import BootstrapResult, mark_flat, refit_vanished, resample_weights
from .fit import (
    FitResult,
    better,
    candidate_starts,
    make_config,
    match_inputs,
    needs_retry,
    result_from_best,
    too_few_runs,
)
from .io import read_runs
from .laws import Law, get_law
from .runs import Runs

# Starts refined per group after screening the grid. On 512 synthetic groups of 20-300 runs
# the best 2 screened starts reached the best 64's optimum on every group (benchmarks/RESULTS.md,
# "Refined starts"), so 8 keeps a 4x margin.
DEFAULT_N_REFINE = 8
# Starts refined, in a second pass, for a group whose best start did not converge or stopped
# where a term vanished (fit's default): 64 starts resolve most of them (benchmarks/RESULTS.md,
# "Refined starts").
RETRY_N_REFINE = 64
TOO_FEW_RUNS = "too_few_runs"
# Most resamples per kernel call of fit_groups(bootstrap=...): each carries a copy of its
# group's padded data, 16 MB per call for groups of 512 runs.
BOOTSTRAP_CHUNK = 1024


def _group_ids(runs: Runs) -> tuple[list[tuple], np.ndarray]:
    """Sorted group keys (first-seen order if the keys cannot be sorted) and each run's group id."""
    keys = list(dict.fromkeys(runs.groups))
    try:
        keys = sorted(keys)
    except TypeError:
        pass
    index = {key: i for i, key in enumerate(keys)}
    return keys, np.array([index[key] for key in runs.groups], dtype=np.int64)


def fit_groups(
    source: pd.DataFrame | str | os.PathLike | Runs,
    by: str | Sequence[str] | None = None,
    law: str | Law = "chinchilla",
    *,
    loss: str = "loss",
    loss_fn: str = "huber",
    delta: float = 1e-3,
    starts: str | np.ndarray = "screen",
    n_refine: int = DEFAULT_N_REFINE,
    fixed: Mapping[str, float] | None = None,
    max_steps: int = 1000,
    gtol: float = 1e-10,
    small: str = "error",
    retry: bool = True,
    bootstrap: int = 0,
    level: float = 0.95,
    seed: int = 0,
    chunk_size: int = 2048,
    lanes: int = 512,
    devices: int | None = None,
    solver: str = "bfgs",
    progress: Callable[[int, int], None] | None = None,
    where=None,
    C: str | None = None,
    flops_per_token: float = 6.0,
    **inputs: str,
) -> pd.DataFrame:
    """Fit ``law`` to every group of runs; one row per group.

    Args:
        source: a DataFrame or a CSV/Parquet/JSON/JSONL path (read with :func:`read_runs`,
            which takes ``loss``, ``where``, ``C``, ``flops_per_token`` and the input columns
            ``**inputs``, e.g. ``N="params"``), or :class:`Runs` read with ``group=``.
        by: the column(s) whose values key the groups.
        law, loss_fn, delta, starts, n_refine, fixed, max_steps, gtol, solver: as ``law``,
            ``loss``, ... of :func:`jaxscale.fit` (``loss`` here names the loss *column*),
            except that each group refines its best 8 screened starts by default (fit: 64).
        small: a group with no more runs than free parameters raises (``"error"``), or is
            kept in the table unfitted with status ``"too_few_runs"`` (``"report"``).
        retry: refit each group whose best start did not converge, or stopped where a term of
            the law vanished (``at_bound``), from its best 64 screened starts (fit's default),
            keeping whichever result is better; groups that still fail stay in the table with
            their status.
        bootstrap: resamples per group (0: none); adds ``<param>_lower``/``_upper`` columns
            at ``level`` for every parameter and derived quantity, from converged resamples.
            The ``g``-th group (in table order) is resampled as ``jaxscale.bootstrap(group,
            n=bootstrap, seed=seed + g)`` would resample it, so any row can be reproduced alone.
            With :class:`Runs` as ``source``, ``by`` is ignored: the groups are the runs' own.
        chunk_size: most groups per kernel call (bounds memory: the largest bucket's data is
            ``chunk_size x size x (inputs + 2)`` floats, 34 MB for 2,048 groups of 512 runs);
            a bucket is split into equal calls. lanes: starts iterated side by side.
        devices: local devices to shard chunks over (default: all); results do not depend on it.
        progress: called as ``progress(done, total)`` after each chunk.

    Returns:
        DataFrame, one row per group: the group keys, ``law``, the natural parameters, the
        derived quantities, ``objective``, ``status``, ``converged``, ``steps``,
        ``grad_norm``, ``n_points``, ``n_at_optimum``, ``at_bound`` (parameters whose term
        vanished, comma-separated; see ``FitResult.at_bound``), ``unidentified`` and
        ``unidentified_reason`` (parameters the group's runs do not determine, and why: status
        ``"unidentified"``, see :mod:`jaxscale.identify`); with ``bootstrap``, ``boot_warning``
        (intervals of zero width or that exclude their estimate; see ``BootstrapResult.ci``).
        Groups whose fit did not converge
        stay in the table with their status.
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
        bootstrap=bootstrap,
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
    with jax.enable_x64(True):
        cfg, theta_fixed = make_config(
            law, loss=loss_fn, delta=delta, fixed=fixed, max_steps=max_steps, gtol=gtol, solver=solver
        )
        log_x, log_y = match_inputs(runs, law), runs.log_loss()
        order = np.argsort(gid, kind="stable")  # each group's runs in their original order
        members = np.split(order, np.cumsum(np.bincount(gid, minlength=len(keys)))[:-1])
        few = [g for g, rows in enumerate(members) if too_few_runs(len(rows), cfg)]
        if few and small == "error":
            shown = "; ".join(f"group {keys[g]!r} has {len(members[g])} runs" for g in few[:5])
            more = f" and {len(few) - 5} more" if len(few) > 5 else ""
            raise ValueError(
                f"{shown}{more}: law {law.name!r} has {len(cfg.free)} free parameters and needs at least "
                f"{len(cfg.free) + 1} runs per group. Add runs, drop those groups with where=, "
                "or keep them unfitted in the table with small='report'"
            )
        fit_ids = sorted(set(range(len(keys))) - set(few))
        candidates, k = candidate_starts(law, cfg, starts, n_refine)
        # Few groups need few lanes; the cap must not depend on chunk_size, since the lane count
        # fixes the compiled arithmetic and results would then depend on the chunking.
        lanes = min(lanes, max(1, k * len(fit_ids)))
        n_devices = len(jax.local_devices()) if devices is None else int(devices)
        fits: dict[int, FitResult] = {}
        boots: dict[int, BootstrapResult] = {}
        solved = 0

        def solve(data, w, ids, k):
            best = batches.solve(
                cfg,
                data,
                candidates,
                w,
                n_refine=k,
                chunk_size=chunk_size,
                lanes=lanes,
                devices=n_devices,
                grouped=True,
            )
            return [
                result_from_best(
                    law,
                    best,
                    j,
                    n_candidates=len(candidates),
                    n_points=len(members[g]),
                    fixed=fixed,
                    loss=loss_fn,
                    delta=delta,
                )
                for j, g in enumerate(ids)
            ]

        for size, ids in _buckets(members, fit_ids):
            data, w = batches.pad_groups(cfg, theta_fixed, log_x, log_y, [members[g] for g in ids], size)
            fits.update(zip(ids, solve(data, w, ids, k), strict=True))
            again = [j for j, g in enumerate(ids) if needs_retry(fits[g])]
            if again and retry and k < RETRY_N_REFINE < len(candidates):
                # A group whose best start did not converge, or stopped where a term vanished,
                # gets fit()'s default 64 starts (which include the first pass's 8).
                subset = problem.Data(*(a[again] for a in data))
                for j, res in zip(again, solve(subset, w[again], [ids[j] for j in again], RETRY_N_REFINE), strict=True):
                    fits[ids[j]] = better(fits[ids[j]], res)
            fits.update(zip(ids, identify.assess_groups(cfg, data, w, [fits[g] for g in ids]), strict=True))
            if bootstrap:
                # As bootstrap() does: screened starts refine its default few, other start sets all.
                boot_k = BOOT_N_REFINE if k < len(candidates) else k
                boots.update(
                    _bootstrap_bucket(
                        cfg,
                        data,
                        w,
                        ids,
                        members,
                        candidates,
                        boot_k,
                        fits,
                        bootstrap,
                        seed,
                        chunk_size,
                        lanes,
                        n_devices,
                    )
                )
            solved += len(ids)
            if progress is not None:
                progress(solved, len(fit_ids))
    return _table(law, by, keys, members, fits, boots, level)


def _read(source, by, **read_options) -> tuple[Runs, list[str]]:
    if isinstance(source, Runs):
        if source.groups is None:
            raise ValueError("these runs have no groups: read them with read_runs(..., group=[...]) or pass by=[...]")
        return source, list(source.group_columns)
    if by is None or (not isinstance(by, str) and len(by) == 0):
        raise ValueError("fit_groups needs by='column' (or a list of columns) naming the groups")
    by = [by] if isinstance(by, str) else list(by)
    return read_runs(source, group=by, **read_options), by


def _buckets(members: list[np.ndarray], ids: list[int]) -> list[tuple[int, list[int]]]:
    """Groups to fit, by padded size (smallest first)."""
    out: dict[int, list[int]] = {}
    for g in ids:
        out.setdefault(batches.bucket_size(len(members[g])), []).append(g)
    return sorted(out.items())


def _bootstrap_bucket(cfg, data, w, ids, members, candidates, k, fits, n, seed, chunk_size, lanes, devices):
    """``n`` resamples of every group of a bucket, as one grouped solve: problem ``j * n + i``
    is resample ``i`` of group ``g = ids[j]``, drawn as ``bootstrap(group, seed=seed + g)`` draws it."""
    size = w.shape[1]

    def weights(lo: int, hi: int) -> np.ndarray:
        out = np.zeros((hi - lo, size))
        for j in range(lo // n, (hi - 1) // n + 1):
            a, b = max(lo, j * n) - j * n, min(hi, (j + 1) * n) - j * n
            g_key = jax.random.key(seed + ids[j])
            out[j * n + a - lo : j * n + b - lo, : len(members[ids[j]])] = resample_weights(
                g_key, a, b, len(members[ids[j]])
            )
        return out

    chunk = min(4 * chunk_size, BOOTSTRAP_CHUNK)
    data_index = np.repeat(np.arange(len(ids)), n)

    def solve(w, n_refine, rows):
        return batches.solve(
            cfg,
            data,
            candidates,
            w,
            n_problems=len(rows),
            n_refine=n_refine,
            chunk_size=chunk,
            lanes=lanes,
            devices=devices,
            grouped=True,
            data_index=data_index[rows],
        )

    best = solve(weights, k, np.arange(len(ids) * n))
    best = refit_vanished(
        best, cfg.free, k, len(candidates), lambda rows, more: solve(batches.rows_of(weights, rows, chunk), more, rows)
    )
    best = mark_flat(
        cfg, data, best, lambda rows: batches.rows_of(weights, rows, chunk), grouped=True, data_index=data_index
    )
    draws = np.asarray(cfg.law.to_natural(best.theta)).reshape(len(ids), n, -1)
    value, status = best.value.reshape(len(ids), n), best.status.reshape(len(ids), n)
    return {
        g: BootstrapResult(cfg.law, fits[g], draws[j], value[j], status[j], seed + g, None) for j, g in enumerate(ids)
    }


def _table(law: Law, by: list[str], keys, members, fits: dict, boots: dict, level: float) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for g, key in enumerate(keys):
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        res = fits.get(g)
        if res is None:
            row |= {"law": law.name, **dict.fromkeys((*law.natural, *law.derived_names), np.nan)}
            row |= {"objective": np.nan, "status": TOO_FEW_RUNS, "converged": False, "steps": 0}
            row |= {"grad_norm": np.nan, "n_points": len(members[g]), "n_at_optimum": 0, "at_bound": ""}
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
    row |= {"grad_norm": res.grad_norm, "n_points": res.n_points, "n_at_optimum": res.n_at_optimum}
    row["at_bound"] = ",".join(res.at_bound)
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
    out["boot_n"] = 0 if boot is None else boot.n
    out["boot_failed_fraction"] = np.nan if boot is None else boot.failed_fraction
    # What is wrong with any interval (BootstrapResult.ci's warning), e.g. "alpha: zero width".
    notes = [] if ci is None else [f"{name}: {why}" for name, why in ci["warning"].items() if why]
    out["boot_warning"] = "; ".join(notes)
    return out
