"""isoFLOP points from training curves: each run's loss interpolated at target budgets.

Porian et al. (2024) and Li et al. (2025) build their isoFLOP curves from checkpoint logs:
for every run and target budget C, the loss at exactly C is read off the run's curve by
linear interpolation in (log compute, log loss) between the two checkpoints around C. A run
contributes to a budget only when one of its checkpoints lies within ``rtol`` of C (their 10%);
a budget beyond the run's last checkpoint (or before its first) but within ``rtol`` of it takes
that checkpoint's loss (no extrapolation). The table that comes out is what
:func:`jaxscale.isoflop` takes (and, one curve per run, what :func:`jaxscale.envelope` does
itself over a grid).

Example:
    >>> import numpy as np, pandas as pd
    >>> curve = pd.DataFrame({"run": "a", "params": 1e8, "tokens": [1e9, 2e9, 4e9], "loss": [4.0, 3.5, 3.2]})
    >>> at = isoflop_points(curve, budgets=[6e17, 1.2e18, 2.6e18])  # the last within 10% of the end
    >>> at["loss"].tolist(), (at["tokens"] / 1e9).round(3).tolist()
    ([4.0, 3.5, 3.2], [1.0, 2.0, 4.333])
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import checks
from .io import python_value, read_runs, read_table
from .queries import select_rows
from .runs import describe_rows

DEFAULT_RTOL = 0.1  # Porian et al.'s and Li et al.'s flop_tolerance


class CheckpointWarning(UserWarning):
    """Target budgets that no run's checkpoints reach."""


def _run_keys(df: pd.DataFrame, run: str | Sequence[str]) -> tuple[list[str], pd.Series]:
    """The run-id columns and each row's run key (a tuple for several columns)."""
    cols = [run] if isinstance(run, str) else list(run)
    if not cols:
        raise ValueError("run names the column(s) identifying a training run, e.g. run='run' or run=['model', 'lr']")
    return cols, df[cols[0]] if len(cols) == 1 else pd.Series(
        list(zip(*(df[c] for c in cols), strict=True)), index=df.index
    )


def isoflop_points(
    curves: pd.DataFrame | str | os.PathLike,
    budgets: Sequence[float],
    *,
    run: str | Sequence[str] = "run",
    N: str = "params",
    tokens: str = "tokens",
    loss: str = "loss",
    flops: str | None = None,
    flops_per_token: float = 6.0,
    by: str | Sequence[str] | None = None,
    where=None,
    rtol: float = DEFAULT_RTOL,
    lowest_per_size: bool = False,
) -> pd.DataFrame:
    """Each run's loss at each target budget, from its checkpoints: the input of :func:`jaxscale.isoflop`.

    Args:
        curves: a DataFrame or a CSV/Parquet/JSON/JSONL file, one row per checkpoint.
        budgets: the target budgets C (FLOPs).
        run: the column, or list of columns, identifying a run (e.g. ``["model", "lr", "sweep"]``).
        N, tokens, loss: the columns of the run's parameter count (fixed along a run), the tokens
            seen at the checkpoint and the loss there.
        flops: a column of each checkpoint's compute; by default ``flops_per_token · N · tokens``.
        by: columns kept as they are (one value per run), e.g. a dataset, for ``isoflop(by=...)``.
        where: a pandas query string or boolean mask picking the checkpoints to use.
        rtol: a run gives a point at C only if one of its checkpoints lies within this relative
            distance of C.
        lowest_per_size: keep, per budget (and ``by`` group), only the lowest loss of each N
            (e.g. the best learning rate of a size, as Porian et al. and Li et al. do).

    Returns:
        One row per (run, budget reached): ``flops`` (the budget), ``params``, ``tokens``
        (``C / (flops_per_token · N)``), ``loss`` (interpolated), the run and ``by`` columns,
        and ``nearest_rtol`` (relative distance from C to the run's nearest checkpoint).

    Raises:
        ValueError: naming the column and rows of missing columns, non-numeric or non-positive
            values, a run whose N changes, or two checkpoints of a run at the same compute.
        Checkpoints need not be sorted.
    """
    df = curves if isinstance(curves, pd.DataFrame) else read_table(curves)
    if where is not None:
        df = select_rows(df, where)
    by_cols = [] if by is None else [by] if isinstance(by, str) else list(by)
    budgets = checks.check_budgets("budgets", budgets)
    if not (np.isfinite(rtol) and 0 < rtol < 1):
        raise ValueError(f"rtol is a relative distance between 0 and 1 (0.1: within 10%); got {rtol}")
    run_cols = [run] if isinstance(run, str) else list(run)
    needed = [*run_cols, N, loss, flops or tokens, *by_cols]
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise ValueError(
            f"missing column(s) {missing}; available columns: {list(df.columns)}. Name yours with "
            "isoflop_points(..., run=..., N=..., tokens=..., loss=..., flops=..., by=...)"
        )
    run_cols, key = _run_keys(df, run)
    labels = df.index.to_numpy()
    absent = df[run_cols].isna().any(axis=1).to_numpy()
    if absent.any():
        raise ValueError(
            f"column(s) {run_cols} have {int(absent.sum())} missing run ids ({describe_rows(labels, absent)}): "
            "label every checkpoint with the run it belongs to"
        )
    inputs = {"N": N, "flops": flops} if flops else {"N": N, "tokens": tokens}
    runs = read_runs(df, loss=loss, check_duplicates=False, **inputs)  # names bad values by column and row
    c = runs.x[:, 1] if flops else flops_per_token * runs.x[:, 0] * runs.x[:, 1]
    pts = pd.DataFrame({"key": key.to_numpy(), "n": runs.x[:, 0], "c": c, "y": runs.y, "row": np.arange(len(df))})
    _check_curves(pts, labels, N)
    rows = []
    log_b = np.log(budgets)
    for _, curve in pts.groupby("key", sort=False):
        curve = curve.sort_values("c")
        log_c, log_y = np.log(curve["c"].to_numpy()), np.log(curve["y"].to_numpy())
        nearest = np.min(np.abs(log_c[None, :] - log_b[:, None]), axis=1)
        reach = nearest <= np.log1p(rtol) + 1e-12
        if not reach.any():
            continue
        first = curve.iloc[0]
        values = np.exp(np.interp(log_b[reach], log_c, log_y))  # clamped at the ends: no extrapolation
        for b, v, gap in zip(budgets[reach], values, np.expm1(nearest[reach]), strict=True):
            rows.append((int(first["row"]), b, first["n"], v, gap))
    if not rows:
        raise ValueError(
            f"no run has a checkpoint within {rtol:.0%} of any budget in {list(budgets)}: check the budgets' "
            f"units (FLOPs) and columns {N!r}, {flops or tokens!r}"
        )
    at = pd.DataFrame(rows, columns=["row", "flops", N, loss, "nearest_rtol"])
    source = df.iloc[at["row"].to_numpy()][list(dict.fromkeys([*run_cols, *by_cols]))].reset_index(drop=True)
    out = pd.concat([source, at.drop(columns="row")], axis=1)
    out[tokens] = out["flops"] / (flops_per_token * out[N])
    unreached = sorted(set(budgets) - set(out["flops"]))
    if unreached:
        warnings.warn(
            CheckpointWarning(
                f"isoflop_points: no run has a checkpoint within {rtol:.0%} of budget(s) "
                + ", ".join(f"{b:.3g}" for b in unreached)
            ),
            stacklevel=2,
        )
    if lowest_per_size:
        keep = out.groupby([*by_cols, "flops", N], sort=False)[loss].idxmin()
        out = out.loc[np.sort(keep.to_numpy())].reset_index(drop=True)
    cols = [*dict.fromkeys([*by_cols, *run_cols]), "flops", N, tokens, loss, "nearest_rtol"]
    return out[cols].sort_values([*by_cols, "flops", N], kind="stable", ignore_index=True)


def _check_curves(pts: pd.DataFrame, labels: np.ndarray, N: str) -> None:
    """A run has one N, and one checkpoint per compute."""
    usual = pts.groupby("key", sort=False)["n"].transform(lambda s: s.mode().iloc[0]).to_numpy()
    bad = pts["n"].to_numpy() != usual
    if bad.any():
        r = pts["key"][bad].iloc[0]
        odd = bad & (pts["key"] == r).to_numpy()
        raise ValueError(
            f"run {python_value(r)!r} has checkpoints with another value in column {N!r} "
            f"({describe_rows(labels, odd)}): N is fixed along a training curve; fix those rows or give "
            "each model size its own run id (several run columns: run=[...])"
        )
    dup = pts.duplicated(["key", "c"], keep=False).to_numpy()
    if dup.any():
        r = pts["key"][dup].iloc[0]
        same = dup & (pts["key"] == r).to_numpy()
        raise ValueError(
            f"run {python_value(r)!r} has several checkpoints at the same compute ({describe_rows(labels, same)}): "
            "drop the duplicates (e.g. repeated final evaluations) or average their losses first; if they are "
            "different runs (another learning rate or seed), name them apart: run=[...] takes several columns"
        )
