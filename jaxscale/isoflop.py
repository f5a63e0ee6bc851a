"""``isoflop``: Hoffmann et al.'s Approach 2 — a parabola per isoFLOP budget, then power laws.

For every compute budget C (each distinct value of the ``flops`` column) the loss is fitted by
weighted least squares as a parabola in log N; its vertex is the budget's compute-optimal size
N*(C), and D*(C) = C / (flops_per_token · N*). Least squares across budgets then gives
log N* = log k_N + a log C and log D* = log k_D + b log C (so a + b = 1 under C = 6ND).

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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import _approaches as shared
from . import checks
from .io import python_value, read_runs, read_table
from .results import json_safe


class IsoflopWarning(UserWarning):
    """Budgets of an isoFLOP analysis were skipped, or a group has too few budgets for a power law."""


class EdgeOfRangeWarning(IsoflopWarning):
    """A budget's optimum sits at or beyond the edge of the model sizes sampled for it."""


class _Padded(NamedTuple):
    """Every group's budgets and points, padded to ``[G, K, P]`` (points sorted by N per budget)."""

    x: np.ndarray  # [G,K,P] log N minus the budget's center: keeps the normal equations well conditioned
    y: np.ndarray  # [G,K,P] loss
    mask: np.ndarray  # [G,K,P] 1.0 for a real point, 0.0 for padding
    weight: np.ndarray  # [G,K,P] the point's weight in its parabola (the mask unless weights are given)
    size: np.ndarray  # [G,K,P] rank of the point's N within its budget (equal N share a rank)
    center: np.ndarray  # [G,K] the mean log N of the budget
    log_c: np.ndarray  # [G,K] log of the budget (0 on padding)
    budget_id: np.ndarray  # [G,K] the budget's rank among all its group's budgets: its PRNG stream
    group_id: np.ndarray  # [G] hash of the group's key: its PRNG stream


def _n_sizes(w: jax.Array, size: jax.Array) -> jax.Array:
    """Distinct model sizes with positive weight, per budget (sizes are sorted along the last axis)."""
    present = w > 0
    seen = jax.lax.cummax(jnp.where(present, size, -1), axis=size.ndim - 1)
    before = jnp.concatenate([jnp.full(size.shape[:-1] + (1,), -1), seen[..., :-1]], axis=-1)
    return jnp.sum(present & (size > before), axis=-1)


def _parabola(x: jax.Array, y: jax.Array, w: jax.Array, size: jax.Array):
    """Weighted least-squares ``y ≈ c0 + c1 x + c2 x²`` per budget → (vertex x, vertex y, usable)."""
    s0, s1, s2, s3, s4 = (jnp.sum(w * x**m, axis=-1) for m in range(5))
    t0, t1, t2 = (jnp.sum(w * x**m * y, axis=-1) for m in range(3))
    # Adjugate of the symmetric normal matrix [[s0,s1,s2],[s1,s2,s3],[s2,s3,s4]]: a closed form
    # that vectorises over every budget and resample at once (no batched LAPACK calls).
    m00, m01, m02 = s2 * s4 - s3 * s3, s2 * s3 - s1 * s4, s1 * s3 - s2 * s2
    m11, m12, m22 = s0 * s4 - s2 * s2, s1 * s2 - s0 * s3, s0 * s2 - s1 * s1
    # Fewer than 3 distinct sizes leave the parabola undetermined (singular matrix).
    ok = _n_sizes(w, size) >= 3
    det = jnp.where(ok, s0 * m00 + s1 * m01 + s2 * m02, 1.0)
    c0 = (m00 * t0 + m01 * t1 + m02 * t2) / det
    c1 = (m01 * t0 + m11 * t1 + m12 * t2) / det
    c2 = (m02 * t0 + m12 * t1 + m22 * t2) / det
    ok = ok & (c2 > 0)  # a non-convex parabola has no minimum
    c2 = jnp.where(ok, c2, 1.0)
    return jnp.where(ok, -c1 / (2 * c2), 0.0), jnp.where(ok, c0 - c1 * c1 / (4 * c2), 0.0), ok


def _fit(data: _Padded, w: jax.Array, log_fpt: jax.Array, use: jax.Array | bool = True) -> dict[str, jax.Array]:
    """Every parabola, then both power laws, for one set of point weights ``w [G,K,P]``."""
    xv, yv, ok = _parabola(data.x, data.y, w, data.size)
    ok = ok & use
    log_n = jnp.where(ok, data.center + xv, 0.0)
    log_d = jnp.where(ok, data.log_c - log_fpt - log_n, 0.0)
    a, log_kn = shared.power_law(data.log_c, log_n, ok)
    b, log_kd = shared.power_law(data.log_c, log_d, ok)
    return {"log_n": log_n, "loss": yv, "ok": ok, "a": a, "b": b, "log_kn": log_kn, "log_kd": log_kd}


def _resample_weights(key: jax.Array, i: jax.Array, data: _Padded) -> jax.Array:
    """Multinomial counts ``[G,K,P]`` for resample ``i``: each budget's points drawn with replacement.

    Every draw has its own key (resample → group hash → budget rank → slot), so a group's
    resamples do not depend on the padding or on which other groups share the call.
    """
    slots = jnp.arange(data.x.shape[-1])
    n = jnp.sum(data.mask, axis=-1).astype(jnp.int32)

    def budget(key_g, budget_id, n_b):
        key_b = jax.random.fold_in(key_g, budget_id)
        bits = jax.vmap(lambda j: jax.random.bits(jax.random.fold_in(key_b, j), (), jnp.uint32))(slots)
        draws = shared.uniform_below(bits, n_b)
        hits = (draws[:, None] == slots[None, :]) & (slots[:, None] < n_b)
        return jnp.sum(hits, axis=0).astype(data.x.dtype)

    def group(group_id, budget_ids, ns):
        key_g = jax.random.fold_in(jax.random.fold_in(key, i), group_id)
        return jax.vmap(partial(budget, key_g))(budget_ids, ns)

    return jax.vmap(group)(data.group_id, data.budget_id, n)


@partial(jax.jit, static_argnames=("n_resamples", "chunk"))
def _kernel(data: _Padded, key: jax.Array, level: jax.Array, log_fpt: jax.Array, *, n_resamples: int, chunk: int):
    point = _fit(data, data.weight, log_fpt)
    if not n_resamples:
        return point, {}

    # The bootstrap refits the budgets the point estimate used; a resample drops a budget whose
    # parabola it leaves non-convex or undetermined (and we count how often that happens).
    def fit_one(i):  # only what the intervals need: keeps the [n_resamples, G, K] outputs small
        out = _fit(data, _resample_weights(key, i, data) * data.weight, log_fpt, point["ok"])
        return {k: out[k] for k in ("a", "b", "ok")}

    boot = shared.chunked_resamples(fit_one, n_resamples, chunk)
    tails = jnp.stack([(1 - level) / 2, (1 + level) / 2]) * 100
    return point, {
        "a": jnp.nanpercentile(boot["a"], tails, axis=0),  # [2, G]
        "b": jnp.nanpercentile(boot["b"], tails, axis=0),
        "dropped": jnp.mean(jnp.any(point["ok"] & ~boot["ok"], axis=-1).astype(level.dtype), axis=0),
    }


def _prepare(
    df: pd.DataFrame, flops: str, N: str, loss: str, by: list[str], window: float | None, weights: str | None = None
):
    """Validate, group, window and pad the points; returns (padded arrays, per-budget table, group info)."""
    missing = [c for c in (flops, N, loss, *by, *([weights] if weights else [])) if c not in df.columns]
    if missing:
        raise ValueError(
            f"missing column(s) {missing}; available columns: {list(df.columns)}. "
            "Name yours with isoflop(..., flops=..., N=..., loss=..., by=..., weights=...)"
        )
    extra = {"w": weights} if weights else {}
    runs = read_runs(
        df, loss=loss, N=N, flops=flops, check_duplicates=False, **extra
    )  # names the column and rows of bad values
    gid, keys = shared.group_keys(df, by)
    pts = pd.DataFrame({"g": gid, "c": runs.x[:, 1], "log_n": np.log(runs.x[:, 0]), "y": runs.y})
    pts["w"] = runs.x[:, 2] if weights else 1.0
    pts = pts.sort_values(["g", "c", "log_n"], kind="stable", ignore_index=True)
    pts["b"] = pts.groupby(["g", "c"], sort=True).ngroup()
    # The budget's rank among all its group's budgets names its PRNG stream, whatever is skipped.
    pts["rank"] = pts.groupby("g")["c"].rank(method="dense").astype(np.int64) - 1
    if window is not None:  # keep points within `window` (in log N) of the budget's lowest loss
        best = pts.loc[pts.groupby("b")["y"].idxmin()].set_index("b")["log_n"]
        pts = pts[(pts["log_n"] - pts["b"].map(best)).abs() <= window]
    few = pts.groupby("b")["log_n"].transform("nunique") < 3  # a parabola needs 3 distinct sizes
    skipped = pts[few].groupby("g")["b"].nunique().reindex(range(len(keys)), fill_value=0).to_numpy()
    pts = pts[~few].reset_index(drop=True)
    if pts.empty:
        raise ValueError(
            f"no budget has at least 3 distinct model sizes{' within the window' if window else ''}: "
            f"a parabola needs 3; check that column {flops!r} holds the exact same value for runs of one budget"
        )
    pts["k"] = pts.groupby("g")["c"].rank(method="dense").astype(np.int64) - 1
    pts["slot"] = pts.groupby("b").cumcount()
    pts["size"] = pts.groupby("b")["log_n"].rank(method="dense").astype(np.int64) - 1
    grouped = pts.groupby("b", sort=True)
    budgets = grouped.agg(
        g=("g", "first"), k=("k", "first"), rank=("rank", "first"), compute=("c", "first"), center=("log_n", "mean")
    )
    budgets["lo"], budgets["hi"] = grouped["log_n"].min(), grouped["log_n"].max()
    budgets["best"] = pts.loc[grouped["y"].idxmin()].set_index("b")["log_n"]  # lowest observed loss
    G, K, P = len(keys), int(pts["k"].max()) + 1, int(pts["slot"].max()) + 1
    at = (pts["g"].to_numpy(), pts["k"].to_numpy(), pts["slot"].to_numpy())
    bat = (budgets["g"].to_numpy(), budgets["k"].to_numpy())
    x, y, mask, size = np.zeros((G, K, P)), np.zeros((G, K, P)), np.zeros((G, K, P)), np.full((G, K, P), P)
    center, log_c, budget_id = np.zeros((G, K)), np.zeros((G, K)), np.zeros((G, K), np.int64)
    center[bat], log_c[bat], budget_id[bat] = budgets["center"], np.log(budgets["compute"]), budgets["rank"]
    x[at] = pts["log_n"].to_numpy() - center[at[:2]]
    y[at], mask[at], size[at] = pts["y"], 1.0, pts["size"]
    weight = np.zeros((G, K, P))
    weight[at] = pts["w"]
    group_id = shared.group_ids(keys)
    padded = _Padded(x, y, mask, weight, size, center, log_c, budget_id, group_id)
    return padded, budgets, {"keys": keys, "skipped": skipped, "n_points": np.bincount(at[0], minlength=G)}


def _warn_budgets(label: str, rows: pd.DataFrame, skipped: int, a_ok: bool) -> None:
    """One warning per group and kind of problem, naming the budgets."""
    ok = rows["ok"].to_numpy()
    log_n = rows["log_n"].to_numpy()
    lo, hi, best = (rows[c].to_numpy() for c in ("lo", "hi", "best"))
    edge = ok & ((log_n <= lo) | (log_n >= hi) | (best <= lo) | (best >= hi))
    if edge.any():
        detail = "; ".join(
            f"C={c:.3g}: N*={np.exp(n):.3g}, lowest loss at N={np.exp(m):.3g}, "
            f"sampled N {np.exp(u):.3g}–{np.exp(v):.3g}"
            for c, n, m, u, v in zip(rows["compute"][edge], log_n[edge], best[edge], lo[edge], hi[edge], strict=True)
        )
        warnings.warn(
            EdgeOfRangeWarning(
                f"isoflop: {label}: the optimum of {int(edge.sum())} budget(s) sits at the edge of the model "
                f"sizes sampled for it ({detail}); the parabola extrapolates there: add smaller/larger models "
                "to those budgets or drop them"
            ),
            stacklevel=3,
        )
    problems = []
    if skipped:
        problems.append(f"{skipped} budget(s) skipped for having fewer than 3 distinct model sizes")
    if (~ok).any():
        listed = ", ".join(f"{c:.3g}" for c in rows["compute"][~ok])
        problems.append(f"budget(s) C={listed} excluded: their parabola is not convex (no minimum in log N)")
    if not a_ok:
        problems.append("fewer than 2 usable budgets remain, so a and b are NaN")
    if problems:
        warnings.warn(IsoflopWarning(f"isoflop: {label}: " + "; ".join(problems)), stacklevel=3)


@checks.renamed(n_boot="n_resamples")
def isoflop(
    source: pd.DataFrame | str | os.PathLike,
    *,
    flops: str = "flops",
    N: str = "params",
    loss: str = "loss",
    by: str | Sequence[str] | None = None,
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
        flops, N, loss: the columns holding the budget C, the parameter count and the loss.
            Runs with the exact same ``flops`` value form one budget; a budget needs at least
            3 distinct model sizes (after ``window``), else it is skipped and counted.
        by: a column or list of columns; one result row per group (default: one group).
        window: keep only runs within ``window`` of the budget's lowest-loss run in natural
            log N (``np.log(4)``: a factor of 4 either side), for curves that are not
            parabolic far from their minimum.
        weights: optional column of positive per-run weights for the parabola fits (e.g. to
            down-weight runs far from the minimum); resampling multiplies them by the counts.
        n_resamples: bootstrap resamples (0: no intervals); each resamples the runs within every
            budget and refits every parabola and both power laws.
        level: level of the percentile intervals; seed: PRNG seed. A group's resamples depend
            only on the seed, its key and its runs, not on the other groups in the call.
        flops_per_token: D* = C / (flops_per_token · N*) (6 for C = 6ND).

    Returns:
        One row per group: the ``by`` columns, ``a``, ``a_lower``, ``a_upper``, ``b``,
        ``b_lower``, ``b_upper``, ``n_budgets`` (used by the power laws), ``n_budgets_skipped``
        (too few sizes, or a non-convex parabola), ``n_points`` (runs in the budgets fitted),
        ``nonconvex_fraction`` (resamples in which a budget's parabola was non-convex or
        undetermined; that budget is left out of that resample's power laws), ``k_N``, ``k_D``
        (N* = k_N C^a, D* = k_D C^b) and ``budgets`` (list of ``{"compute", "N_opt", "D_opt",
        "loss"}``, loss being the parabola's minimum). :func:`isoflop_to_dicts` gives the JSON.

    Warns:
        EdgeOfRangeWarning: a budget's fitted optimum or lowest observed loss is at (or beyond)
            its smallest or largest model. IsoflopWarning: budgets skipped or excluded.
    """
    by_cols = shared.check_options(by, level=level, n_resamples=n_resamples, flops_per_token=flops_per_token)
    if window is not None and not window > 0:
        raise ValueError(f"window is a distance in natural log N and must be > 0 (e.g. np.log(4)); got {window}")
    df = source if isinstance(source, pd.DataFrame) else read_table(source)
    data, budgets, info = _prepare(df, flops, N, loss, by_cols, window, weights)
    G, K, P = data.x.shape
    chunk = shared.boot_chunk(n_resamples, G * K * P * P)  # a resample's one-hot draws [G, K, P, P]
    with jax.enable_x64(True):
        point, boot = _kernel(
            jax.tree.map(jnp.asarray, data),
            jax.random.key(seed),
            jnp.asarray(level, jnp.float64),
            jnp.log(jnp.asarray(flops_per_token, jnp.float64)),
            n_resamples=n_resamples,
            chunk=chunk,
        )
        point, boot = jax.tree.map(np.asarray, (point, boot))
    gk = (budgets["g"].to_numpy(), budgets["k"].to_numpy())
    budgets["ok"], budgets["log_n"], budgets["loss"] = point["ok"][gk], point["log_n"][gk], point["loss"][gk]
    nan = np.full((2, G), np.nan)
    a_ci, b_ci = boot.get("a", nan), boot.get("b", nan)
    rows = []
    for g, key in enumerate(info["keys"]):
        mine = budgets[budgets["g"] == g]
        _warn_budgets(shared.group_label(by_cols, key), mine, int(info["skipped"][g]), bool(np.isfinite(point["a"][g])))
        used = mine[mine["ok"]]
        n_opt = np.exp(used["log_n"].to_numpy())
        rows.append(
            {
                **dict(zip(by_cols, key, strict=True)),
                "a": point["a"][g],
                "a_lower": a_ci[0, g],
                "a_upper": a_ci[1, g],
                "b": point["b"][g],
                "b_lower": b_ci[0, g],
                "b_upper": b_ci[1, g],
                "n_budgets": len(used),
                "n_budgets_skipped": int(info["skipped"][g]) + int((~mine["ok"]).sum()),
                "n_points": int(info["n_points"][g]),
                "nonconvex_fraction": float(boot["dropped"][g]) if n_resamples else np.nan,
                "k_N": np.exp(point["log_kn"][g]),
                "k_D": np.exp(point["log_kd"][g]),
                "budgets": [
                    {
                        "compute": float(c),
                        "N_opt": float(n),
                        "D_opt": float(c / (flops_per_token * n)),
                        "loss": float(v),
                    }
                    for c, n, v in zip(used["compute"], n_opt, used["loss"], strict=True)
                ],
            }
        )
    table = pd.DataFrame(rows)
    table.attrs = {"by": by_cols, "n_resamples": n_resamples, "level": level, "seed": seed, "window": window}
    return table


def isoflop_to_dicts(table: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe dicts, one per row of an :func:`isoflop` table (NaN becomes ``None``).

    Each is ``{"a", "b", "ci": {"a": [lo, hi], "b": [lo, hi]}, "budgets": [...], "group": {...},
    "n_budgets", "n_budgets_skipped", "n_points", "bootstrap": {"n_resamples", "level", "seed",
    "nonconvex_fraction"}}``.
    """
    by = table.attrs.get("by", list(table.columns[: table.columns.get_loc("a")]))  # keys come first
    out = []
    for _, row in table.iterrows():
        out.append(
            {
                "a": json_safe(row["a"]),
                "b": json_safe(row["b"]),
                "ci": {q: [json_safe(row[f"{q}_lower"]), json_safe(row[f"{q}_upper"])] for q in ("a", "b")},
                "budgets": [{k: json_safe(v) for k, v in b.items()} for b in row["budgets"]],
                "group": {c: python_value(row[c]) for c in by},
                "n_budgets": int(row["n_budgets"]),
                "n_budgets_skipped": int(row["n_budgets_skipped"]),
                "n_points": int(row["n_points"]),
                "k_N": json_safe(row["k_N"]),
                "k_D": json_safe(row["k_D"]),
                "bootstrap": {
                    "n_resamples": table.attrs.get("n_resamples"),
                    "level": table.attrs.get("level"),
                    "seed": table.attrs.get("seed"),
                    "nonconvex_fraction": json_safe(row["nonconvex_fraction"]),
                },
            }
        )
    return out
