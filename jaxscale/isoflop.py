"""``isoflop``: Hoffmann et al.'s Approach 2 — a parabola per isoFLOP budget, then power laws.

For every compute budget C (runs of one ``flops`` value, or binned: :mod:`jaxscale.budgets`)
the loss is fitted by weighted least squares as a parabola in log N (:mod:`jaxscale.optima`);
its vertex is the budget's compute-optimal size N*(C), and D*(C) = C / (flops_per_token · N*).
With a tokens column the same is done in log D: D* fitted, and N* implied or (with both
columns) fitted too. Least squares across budgets then gives log N* = log k_N + a log C and
log D* = log k_D + b log C (a + b = 1 where one side is implied).

Intervals come from a bootstrap that resamples the points *within each budget* (multinomial
weights, resample ``i`` drawn from ``fold_in(key(seed), i)``) and refits every parabola and
both power laws. Groups × budgets × resamples are padded to one array shape
``[G groups, K budgets, P points]`` (zero weights on padding) and solved by one jit-compiled,
vmapped kernel; pandas stays at the edges.

Example:
    >>> import numpy as np, pandas as pd
    >>> import jaxscale as js
    >>> C = np.repeat([1e18, 1e19, 1e20], 7)
    >>> n_opt = 0.1 * C**0.5  # N* ∝ C^0.5 by construction
    >>> N = n_opt * np.tile([1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8], 3)
    >>> df = pd.DataFrame({"flops": C, "params": N, "loss": 2 + 0.05 * np.log(N / n_opt) ** 2})
    >>> table = js.isoflop(df, n_resamples=100)
    >>> table[["a", "a_lower", "a_upper", "b", "n_budgets"]].round(6).values.tolist()
    [[0.5, 0.5, 0.5, 0.5, 3.0]]
    >>> round(table.budgets[0][0]["N_opt"] / 1e8, 6), round(table.budgets[0][0]["loss"], 6)
    (1.0, 2.0)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import _approaches as shared
from . import budgets, checks, optima
from . import isoflop_report as report
from .io import read_runs, read_table
from .isoflop_report import EdgeOfRangeWarning, IsoflopWarning, isoflop_to_dicts

__all__ = ["EdgeOfRangeWarning", "IsoflopWarning", "isoflop", "isoflop_to_dicts"]


class _Padded(NamedTuple):
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


def _fit(data: _Padded, w: jax.Array, log_fpt: jax.Array, sides: tuple[str, ...], use=True) -> dict[str, jax.Array]:
    """Every budget's optimum on every side, then both power laws, for point weights ``w [G,K,P]``."""
    xv, yv, ok = jax.vmap(optima.parabola, in_axes=(0, None, None))(data.x, data.y, w)
    present = (w > 0)[None]
    lo = jnp.min(jnp.where(present, data.x, jnp.inf), axis=-1)
    hi = jnp.max(jnp.where(present, data.x, -jnp.inf), axis=-1)
    edge = jnp.any(ok & ((xv <= lo) | (xv >= hi)), axis=0)  # the optimum at or past the sampled range
    ok = jnp.all(ok, axis=0) & use
    log_opt = data.center + xv
    other = data.log_c - log_fpt - log_opt[0]  # the implied side: C = flops_per_token · N · D
    log_n, log_d = {
        ("N",): (log_opt[0], other),
        ("D",): (other, log_opt[0]),
        ("N", "D"): (log_opt[0], log_opt[-1]),
    }[sides]
    log_n, log_d = jnp.where(ok, log_n, 0.0), jnp.where(ok, log_d, 0.0)
    a, log_kn = shared.power_law(data.log_c, log_n, ok)
    b, log_kd = shared.power_law(data.log_c, log_d, ok)
    out = {"log_n": log_n, "log_d": log_d, "loss": yv[0], "ok": ok, "edge": edge}
    return out | {"a": a, "b": b, "log_kn": log_kn, "log_kd": log_kd}


def _resample_weights(key: jax.Array, i: jax.Array, data: _Padded) -> jax.Array:
    """Multinomial counts ``[G,K,P]`` for resample ``i``: each budget's points drawn with replacement.

    Every draw has its own key (resample → group hash → budget rank → slot), so a group's
    resamples do not depend on the padding or on which other groups share the call.
    """
    slots = jnp.arange(data.mask.shape[-1])
    n = jnp.sum(data.mask, axis=-1).astype(jnp.int32)

    def budget(key_g, budget_id, n_b):
        key_b = jax.random.fold_in(key_g, budget_id)
        bits = jax.vmap(lambda j: jax.random.bits(jax.random.fold_in(key_b, j), (), jnp.uint32))(slots)
        draws = shared.uniform_below(bits, n_b)
        hits = (draws[:, None] == slots[None, :]) & (slots[:, None] < n_b)
        return jnp.sum(hits, axis=0).astype(data.y.dtype)

    def group(group_id, budget_ids, ns):
        key_g = jax.random.fold_in(jax.random.fold_in(key, i), group_id)
        return jax.vmap(partial(budget, key_g))(budget_ids, ns)

    return jax.vmap(group)(data.group_id, data.budget_id, n)


@partial(jax.jit, static_argnames=("n_resamples", "chunk", "sides"))
def _kernel(data: _Padded, key: jax.Array, log_fpt: jax.Array, *, n_resamples: int, chunk: int, sides: tuple[str, ...]):
    point = _fit(data, data.weight, log_fpt, sides)
    if not n_resamples:
        return point, {}

    # The bootstrap refits the budgets the point estimate used; a resample drops a budget whose
    # parabola it leaves non-convex or undetermined (and we count how often that happens).
    def fit_one(i):  # only what the intervals need: keeps the [n_resamples, G, K] outputs small
        out = _fit(data, _resample_weights(key, i, data) * data.weight, log_fpt, sides, point["ok"])
        return {k: out[k] for k in ("a", "b", "log_kn", "log_kd", "ok", "edge")}

    boot = shared.chunked_resamples(fit_one, n_resamples, chunk)
    used = point["ok"][None]
    boot["dropped"] = jnp.mean((used & ~boot["ok"]).astype(data.y.dtype), axis=0)  # [G, K] per budget
    boot["edge"] = jnp.mean((boot["ok"] & boot["edge"]).astype(data.y.dtype), axis=0)
    boot["any_dropped"] = jnp.mean(jnp.any(used & ~boot["ok"], axis=-1).astype(data.y.dtype), axis=0)
    del boot["ok"]
    return point, boot


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


def _prepare(
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
    first = f"log_{sides[0]}"
    pts = pts.sort_values(["g", "c", "label", first], kind="stable", ignore_index=True)
    pts["b"] = pts.groupby(["g", "c", "label"], sort=True).ngroup()
    # The budget's rank among all its group's budgets names its PRNG stream, whatever is skipped.
    pts["rank"] = pts.groupby("g")["b"].rank(method="dense").astype(np.int64) - 1
    if window is not None:  # keep points within `window` (in log N or log D) of the budget's lowest loss
        best = pts.loc[pts.groupby("b")["y"].idxmin()].set_index("b")[first]
        pts = pts[(pts[first] - pts["b"].map(best)).abs() <= window]
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
    padded = _Padded(x, y, mask, weight, center, log_c, budget_id, shared.group_ids(keys))
    info = {"keys": keys, "skipped": skipped, "n_points": np.bincount(at[0], minlength=G), "sides": sides}
    return padded, table, info | {"binning": binning}


@checks.renamed(n_boot="n_resamples")
def isoflop(
    source: pd.DataFrame | str | os.PathLike,
    *,
    flops: str = "flops",
    N: str | None = "params",
    D: str | None = None,
    loss: str = "loss",
    by: str | Sequence[str] | None = None,
    budget: str | None = None,
    budget_rtol: float | None = None,
    bins_per_decade: float | None = None,
    window: float | None = None,
    weights: str | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    flops_per_token: float = 6.0,
) -> pd.DataFrame:
    """Approach 2 of Hoffmann et al. (2022): isoFLOP parabolas, then N* ∝ C^a and D* ∝ C^b.

    Args:
        source: a DataFrame or a CSV/Parquet/JSON/JSONL file, one row per (budget, model) run.
        flops, loss: the columns holding each run's compute C and its loss.
        N, D: the parameter-count and token-count columns. With ``N`` only (the default),
            each budget's optimum N* is the vertex of a parabola of loss in log N and
            D* = C / (flops_per_token · N*), so b = 1 - a. With ``D`` only (``N=None``, e.g.
            Llama 3's isoFLOP figure), D* is fitted and N* implied. With both, N* and D* are
            each fitted on the observed values, so b is estimated, not set to 1 - a. The
            ``a_source`` and ``b_source`` columns say which (``"fitted"`` or ``"implied"``).
        by: a column or list of columns; one result row per group (default: one group).
        budget, budget_rtol, bins_per_decade: how runs form budgets (:mod:`jaxscale.budgets`;
            at most one): by default runs with the exact same ``flops`` share a budget;
            ``budget_rtol=0.1``: runs within 10% of a budget's smallest compute;
            ``bins_per_decade=10``: log-spaced bins; ``budget="name"``: runs with the same value
            of column ``name``. A formed budget's C is the geometric mean of its runs' compute;
            each entry of ``budgets`` gives its runs' smallest and largest. A budget needs at
            least 3 distinct sizes (after ``window``), else it is skipped and counted.
        window: keep only runs within ``window`` of the budget's lowest-loss run in natural
            log N (log D with ``D`` only): ``np.log(4)`` is a factor of 4 either side, for
            curves that are not parabolic far from their minimum.
        weights: optional column of positive per-run weights for the parabola fits (e.g. to
            down-weight runs far from the minimum); resampling multiplies them by the counts.
        n_resamples: bootstrap resamples (0: no intervals); each resamples the runs within every
            budget and refits every parabola and both power laws.
        level: level of the percentile intervals; seed: PRNG seed. A group's resamples depend
            only on the seed, its key and its runs, not on the other groups in the call.
        flops_per_token: the implied side: N · D = C / flops_per_token (6 for C = 6ND).

    Returns:
        One row per group: the ``by`` columns, ``a``, ``a_lower``, ``a_upper``, ``b``,
        ``b_lower``, ``b_upper``, ``a_source``, ``b_source``, ``n_budgets`` (used by the power
        laws), ``n_budgets_skipped`` (too few sizes, or a non-convex parabola), ``n_points``
        (runs in the budgets fitted), ``nonconvex_fraction`` (resamples in which some budget's
        parabola was non-convex or undetermined; that budget is left out of that resample's
        power laws), ``k_N``, ``k_D`` (N* = k_N C^a, D* = k_D C^b), ``interval_warning``
        (empty, or why the intervals are not to be trusted: see Warns), ``budgets`` (list of
        ``{"compute", "N_opt", "D_opt", "loss", "n_runs", "flops_min", "flops_max"}`` and, with
        resamples, ``"dropped_fraction"`` and ``"edge_fraction"``; ``"name"`` with
        ``budget=``) and ``draws`` (``[n_resamples, 4]``: each resample's a, log k_N, b,
        log k_D; NaN where fewer than 2 budgets remained), which :func:`jaxscale.frontier`
        uses for bands when it extrapolates the table to other budgets. ``table.attrs`` holds
        the options and ``"binning"``. :func:`isoflop_to_dicts` gives the JSON.

    Warns:
        EdgeOfRangeWarning: a budget's fitted optimum or lowest observed loss is at (or beyond)
            its smallest or largest size. IsoflopWarning: budgets skipped or excluded, and
            intervals driven by degenerate resamples (:func:`jaxscale.isoflop_report.interval_doubts`),
            naming the budgets behind them.

    Example:
        >>> import numpy as np, pandas as pd
        >>> import jaxscale as js
        >>> C = np.repeat([1e18, 1e19, 1e20], 7)
        >>> n_opt = 0.1 * C**0.5  # N* ∝ C^0.5 by construction
        >>> N = n_opt * np.tile([1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8], 3)
        >>> df = pd.DataFrame({"flops": C * np.exp(0.01 * np.sin(N)), "params": N,
        ...                    "loss": 2 + 0.05 * np.log(N / n_opt) ** 2})
        >>> table = js.isoflop(df, budget_rtol=0.05, n_resamples=100)
        >>> round(float(table["a"][0]), 2), table.attrs["binning"], int(table["n_budgets"][0])
        (0.5, {'method': 'rtol', 'rtol': 0.05}, 3)
    """
    by_cols = shared.check_options(by, level=level, n_resamples=n_resamples, flops_per_token=flops_per_token)
    if window is not None and not window > 0:
        raise ValueError(f"window is a distance in natural log N and must be > 0 (e.g. np.log(4)); got {window}")
    budgets.check_options(budget=budget, rtol=budget_rtol, per_decade=bins_per_decade)
    df = source if isinstance(source, pd.DataFrame) else read_table(source)
    data, table, info = _prepare(
        df, flops, N, loss, by_cols, window, weights, D=D, budget=budget, budget_rtol=budget_rtol,
        bins_per_decade=bins_per_decade,
    )  # fmt: skip
    sides = info["sides"]
    G, K, P = data.y.shape
    chunk = shared.boot_chunk(n_resamples, G * K * P * P)  # a resample's one-hot draws [G, K, P, P]
    with jax.enable_x64(True):
        point, boot = _kernel(
            jax.tree.map(jnp.asarray, data),
            jax.random.key(seed),
            jnp.log(jnp.asarray(flops_per_token, jnp.float64)),
            n_resamples=n_resamples,
            chunk=chunk,
            sides=sides,
        )
        point, boot = jax.tree.map(np.asarray, (point, boot))
    gk = (table["g"].to_numpy(), table["k"].to_numpy())
    for name in ("ok", "log_n", "log_d", "loss"):
        table[name] = point[name][gk]
    if n_resamples:
        table["dropped_fraction"], table["edge_fraction"] = boot["dropped"][gk], boot["edge"][gk]
    tail = 100 * (1 - level) / 2
    rows = []
    for g, key in enumerate(info["keys"]):
        mine = table[table["g"] == g]
        label = shared.group_label(by_cols, key)
        report.warn_budgets(label, mine, int(info["skipped"][g]), bool(np.isfinite(point["a"][g])), sides)
        draws = np.full((0, 4), np.nan)
        ci = {q: (np.nan, np.nan) for q in ("a", "b")}
        if n_resamples:
            draws = np.stack([boot[q][:, g] for q in ("a", "log_kn", "b", "log_kd")], axis=1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no interval
                ci = {q: tuple(np.nanpercentile(boot[q][:, g], [tail, 100 - tail])) for q in ("a", "b")}
        row = {
            **dict(zip(by_cols, key, strict=True)),
            "a": point["a"][g], "a_lower": ci["a"][0], "a_upper": ci["a"][1],
            "b": point["b"][g], "b_lower": ci["b"][0], "b_upper": ci["b"][1],
            "a_source": "fitted" if "N" in sides else "implied",
            "b_source": "fitted" if "D" in sides else "implied",
            "n_budgets": int(mine["ok"].sum()),
            "n_budgets_skipped": int(info["skipped"][g]) + int((~mine["ok"]).sum()),
            "n_points": int(info["n_points"][g]),
            "nonconvex_fraction": float(boot["any_dropped"][g]) if n_resamples else np.nan,
            "k_N": np.exp(point["log_kn"][g]),
            "k_D": np.exp(point["log_kd"][g]),
        }  # fmt: skip
        row["interval_warning"] = report.interval_doubts(label, row, mine, level) if n_resamples else ""
        row["budgets"] = report.budget_entries(mine[mine["ok"]], flops_per_token)
        row["draws"] = draws
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs = {"by": by_cols, "n_resamples": n_resamples, "level": level, "seed": seed, "window": window}
    out.attrs |= {"binning": info["binning"], "flops_per_token": flops_per_token}
    return out
