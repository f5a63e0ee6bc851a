"""The points of an isoFLOP analysis (:func:`jaxscale.isoflop`): read, grouped, binned into
budgets (:mod:`jaxscale.budgets`), windowed and padded to one array shape ``[G, K, P]``.

Example:
    >>> import numpy as np, pandas as pd
    >>> df = pd.DataFrame({"flops": np.repeat([1e18, 1e19], 3), "params": [1e7, 2e7, 4e7] * 2, "loss": 3.0})
    >>> data, table, info = prepare(df, "flops", "params", "loss", [], None)
    >>> data.x.shape, table["n_runs"].tolist(), info["sides"]
    ((1, 1, 2, 3), [3, 3], ('N',))
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from . import _approaches as shared
from . import budgets, optima
from .io import read_runs


class Padded(NamedTuple):
    """Every group's budgets and points, padded to ``[G, K, P]`` (points sorted by the first side per budget).

    A side is the input whose optimum is found per budget: N, D, or both (``[S, ...]`` arrays).
    """

    x: np.ndarray  # [S,G,K,P] log N or log D minus the budget's center: keeps the normal equations well conditioned
    y: np.ndarray  # [G,K,P] loss
    mask: np.ndarray  # [G,K,P] 1.0 for a real point, 0.0 for padding
    weight: np.ndarray  # [G,K,P] the point's weight in its parabola (the mask unless weights are given)
    center: np.ndarray  # [S,G,K] the mean of the side's log values in the budget
    log_c: np.ndarray  # [G,K] log of the budget (0 on padding)
    budget_id: np.ndarray  # [G,K] the budget's rank among all its group's budgets: its PRNG stream
    group_id: np.ndarray  # [G] hash of the group's key: its PRNG stream


def _read(df: pd.DataFrame, *, flops: str, N: str | None, D: str | None, loss: str, by: list[str], weights, budget):
    """The runs' columns as arrays (bad values named by column and row) and the sides fitted."""
    if N is None and D is None:
        raise ValueError("name the model-size column N=..., the tokens column D=..., or both")
    sides = tuple(s for s, col in (("N", N), ("D", D)) if col is not None)
    wanted = (flops, loss, *by, *([N] if N else []), *([D] if D else []), *([weights] if weights else []))
    missing = [c for c in (*wanted, *([budget] if budget else [])) if c not in df.columns]
    if missing:
        raise ValueError(
            f"missing column(s) {missing}; available columns: {list(df.columns)}. "
            "Name yours with isoflop(..., flops=..., N=..., D=..., loss=..., by=..., weights=..., budget=...)"
        )
    inputs = {s: col for s, col in (("N", N), ("D", D)) if col is not None}
    extra = {"w": weights} if weights else {}
    # names the column and rows of bad values
    runs = read_runs(df, loss=loss, flops=flops, check_duplicates=False, **inputs, **extra)
    column = {name: runs.x[:, i] for i, name in enumerate(runs.inputs)}
    return sides, column, runs.y


def _check_one_per_size(pts: pd.DataFrame, sides: tuple[str, ...], flops: str) -> None:
    """An interpolant takes one loss per size: name a budget with a size repeated."""
    for s in sides:
        repeated = pts.duplicated(["b", f"log_{s}"], keep=False)
        if repeated.any():
            c = pts.loc[repeated, "c"].iloc[0]
            size = "model size" if s == "N" else "token count"
            raise ValueError(
                f"method='akima' interpolates one loss per {size}, but the budget "
                f"{flops}={c:.4g} has {int(repeated.sum())} runs sharing a size; keep the lowest loss of each size "
                "first (as Porian et al. do), e.g. df.groupby([..., size]).min(), or use method='parabola'"
            )


def prepare(
    df: pd.DataFrame,
    flops: str,
    N: str | None,
    loss: str,
    by: list[str],
    window: float | None,
    weights: str | None = None,
    *,
    D: str | None = None,
    budget: str | None = None,
    budget_rtol: float | None = None,
    bins_per_decade: float | None = None,
    budget_range: tuple[float, float] | None = None,
    one_per_size: bool = False,
):
    """Validate, group, bin, window and pad the points; returns (padded arrays, per-budget table, group info)."""
    sides, column, y = _read(df, flops=flops, N=N, D=D, loss=loss, by=by, weights=weights, budget=budget)
    gid, keys = shared.group_keys(df, by)
    pts = pd.DataFrame({"g": gid, "run_c": column["flops"], "y": y})
    for s in sides:
        pts[f"log_{s}"] = np.log(column[s])
    pts["w"] = column["w"] if weights else 1.0
    names = df[budget].to_numpy() if budget else None
    pts["label"], pts["c"] = 0, 0.0
    binning = {"method": "exact"}
    for g in range(len(keys)):  # budgets are formed within each group
        rows = np.flatnonzero(gid == g)
        named = None if names is None else names[rows]
        made = budgets.assign(column["flops"][rows], names=named, rtol=budget_rtol, per_decade=bins_per_decade)
        pts.loc[rows, "label"], pts.loc[rows, "c"], binning = made.label, made.compute, made.binning
        if names is not None:
            pts.loc[rows, "name"] = names[rows]
    if budget_range is not None:
        pts = pts[(pts["c"] >= budget_range[0]) & (pts["c"] <= budget_range[1])]
    first = f"log_{sides[0]}"
    pts = pts.sort_values(["g", "c", "label", first], kind="stable", ignore_index=True)
    pts["b"] = pts.groupby(["g", "c", "label"], sort=True).ngroup()
    # The budget's rank among all its group's budgets names its PRNG stream, whatever is skipped.
    pts["rank"] = pts.groupby("g")["b"].rank(method="dense").astype(np.int64) - 1
    if window is not None:  # keep points within `window` (in log N or log D) of the budget's lowest loss
        best = pts.loc[pts.groupby("b")["y"].idxmin()].set_index("b")[first]
        pts = pts[(pts[first] - pts["b"].map(best)).abs() <= window]
    if one_per_size:
        _check_one_per_size(pts, sides, flops)
    few = np.zeros(len(pts), bool)
    for s in sides:  # a parabola needs 3 distinct sizes
        few |= pts.groupby("b")[f"log_{s}"].transform("nunique").to_numpy() < optima.MIN_SIZES
    skipped = pts[few].groupby("g")["b"].nunique().reindex(range(len(keys)), fill_value=0).to_numpy()
    pts = pts[~few].reset_index(drop=True)
    if pts.empty:
        sizes = "model sizes" if sides[0] == "N" else "token counts"
        raise ValueError(
            f"no budget has at least 3 distinct {sizes}{' within the window' if window else ''}: a parabola "
            f"needs 3; check that column {flops!r} holds the same value for runs of one budget, or form "
            "budgets with budget_rtol=..., bins_per_decade=... or budget=<column naming the budget>"
        )
    pts["k"] = pts.groupby("g")["b"].rank(method="dense").astype(np.int64) - 1
    pts["slot"] = pts.groupby("b").cumcount()
    grouped = pts.groupby("b", sort=True)
    agg = {"g": ("g", "first"), "k": ("k", "first"), "rank": ("rank", "first"), "compute": ("c", "first")}
    agg |= {"n_runs": ("y", "size"), "flops_min": ("run_c", "min"), "flops_max": ("run_c", "max")}
    if budget:
        agg["name"] = ("name", "first")
    table = grouped.agg(**agg)
    lowest = pts.loc[grouped["y"].idxmin()].set_index("b")
    for s in sides:
        table[f"center_{s}"] = grouped[f"log_{s}"].mean()
        table[f"lo_{s}"], table[f"hi_{s}"] = grouped[f"log_{s}"].min(), grouped[f"log_{s}"].max()
        table[f"best_{s}"] = lowest[f"log_{s}"]  # where the lowest observed loss is
    G, K, P = len(keys), int(pts["k"].max()) + 1, int(pts["slot"].max()) + 1
    at = (pts["g"].to_numpy(), pts["k"].to_numpy(), pts["slot"].to_numpy())
    bat = (table["g"].to_numpy(), table["k"].to_numpy())
    S = len(sides)
    x, center = np.zeros((S, G, K, P)), np.zeros((S, G, K))
    y, mask, weight = np.zeros((G, K, P)), np.zeros((G, K, P)), np.zeros((G, K, P))
    log_c, budget_id = np.zeros((G, K)), np.zeros((G, K), np.int64)
    log_c[bat], budget_id[bat] = np.log(table["compute"]), table["rank"]
    for i, s in enumerate(sides):
        center[i][bat] = table[f"center_{s}"]
        x[i][at] = pts[f"log_{s}"].to_numpy() - center[i][at[:2]]
    y[at], mask[at], weight[at] = pts["y"], 1.0, pts["w"]
    padded = Padded(x, y, mask, weight, center, log_c, budget_id, shared.group_ids(keys))
    info = {"keys": keys, "skipped": skipped, "n_points": np.bincount(at[0], minlength=G), "sides": sides}
    return padded, table, info | {"binning": binning}
