"""What an isoFLOP analysis (:func:`jaxscale.isoflop`) reports beyond its exponents.

* :func:`warn_budgets`: budgets whose optimum sits at the edge of their sizes, skipped or excluded;
* :func:`interval_doubts`: intervals driven by degenerate resamples, and the budgets behind them;
* :func:`extrapolate`: N*, D* and tokens per parameter at other budgets, with bootstrap bands
  (what :func:`jaxscale.frontier` gives for an isoFLOP table);
* :func:`isoflop_to_dicts`: the JSON form of a table.

Example:
    >>> import numpy as np, pandas as pd
    >>> import jaxscale as js
    >>> C = np.repeat([1e18, 1e19, 1e20], 7)
    >>> n_opt = 0.1 * C**0.5
    >>> N = n_opt * np.tile([1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8], 3)
    >>> table = js.isoflop(pd.DataFrame({"flops": C, "params": N, "loss": 2 + 0.05 * np.log(N / n_opt) ** 2}))
    >>> f = extrapolate(table, [1e24])
    >>> round(float(f["N_opt"][0]) / 1e11, 6), round(float(f["tokens_per_param"][0]), 6), f["status"][0]
    (1.0, 16.666667, 'extrapolated')
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import checks
from .io import python_value
from .results import json_safe

# An exponent of a compute-optimal frontier lies in (0, 1) under C ∝ N·D (a + b = 1); an
# interval outside it, or wider than this, says the runs do not determine the exponent.
DEGENERATE_WIDTH = 0.5
# A budget left out of (non-convex or undetermined in) at least this share of resamples, or
# whose optimum sits at the edge of its sampled sizes in this share, puts the intervals in
# doubt. Above chance for 5 runs: resampling 5 runs draws fewer than 3 distinct ones 9.8% of
# the time (4 runs: 34%).
DOUBTFUL_SHARE = 0.15
FEW_RUNS = 5  # a budget with fewer runs than this is named as a cause too


class IsoflopWarning(UserWarning):
    """Budgets of an isoFLOP analysis were skipped, a group has too few budgets for a power law,
    or an interval is driven by degenerate resamples."""


class EdgeOfRangeWarning(IsoflopWarning):
    """A budget's optimum sits at or beyond the edge of the sizes sampled for it."""


def _side_name(side: str) -> str:
    return "model sizes" if side == "N" else "token counts"


def warn_budgets(label: str, rows: pd.DataFrame, skipped: int, a_ok: bool, options) -> None:
    """One warning per group and kind of problem, naming the budgets (``options``: the call's
    :class:`jaxscale.isoflop.Options`)."""
    sides = options.sides
    ok = rows["ok"].to_numpy()
    for side in sides:
        opt = rows["log_n" if side == "N" else "log_d"].to_numpy()
        lo, hi, best = (rows[f"{c}_{side}"].to_numpy() for c in ("lo", "hi", "best"))
        edge = ok & ((opt <= lo) | (opt >= hi) | (best <= lo) | (best >= hi))
        if not edge.any():
            continue
        detail = "; ".join(
            f"C={c:.3g}: {side}*={np.exp(n):.3g}, lowest loss at {side}={np.exp(m):.3g}, "
            f"sampled {side} {np.exp(u):.3g}–{np.exp(v):.3g}"
            for c, n, m, u, v in zip(rows["compute"][edge], opt[edge], best[edge], lo[edge], hi[edge], strict=True)
        )
        warnings.warn(
            EdgeOfRangeWarning(
                f"isoflop: {label}: the optimum of {int(edge.sum())} budget(s) sits at the edge of the "
                f"{_side_name(side)} sampled for it ({detail}); the parabola extrapolates there: add smaller/larger "
                "runs to those budgets or drop them"
            ),
            stacklevel=4,
        )
    problems = []
    if skipped:
        problems.append(f"{skipped} budget(s) skipped for having fewer than 3 distinct {_side_name(sides[0])}")
    if (~ok).any():
        listed = ", ".join(f"{c:.3g}" for c in rows["compute"][~ok])
        if options.method == "parabola":
            why = "their parabola is not convex (no minimum)"
        else:
            why = "no interior optimum (the interpolant is lowest at an end of the sizes)"
        if options.resample == "noise":
            why += ", or fewer than half their noise replicates have one"
        problems.append(f"budget(s) C={listed} excluded: {why}")
    if not a_ok:
        problems.append("fewer than 2 usable budgets remain, so a and b are NaN")
    if problems:
        warnings.warn(IsoflopWarning(f"isoflop: {label}: " + "; ".join(problems)), stacklevel=4)


def interval_doubts(label: str, row: dict[str, Any], rows: pd.DataFrame, level: float) -> str:
    """Why the group's intervals are not to be trusted ("" when nothing is wrong), warned too.

    In doubt: an interval of a fitted exponent that leaves (0, 1) or is wider than
    :data:`DEGENERATE_WIDTH`, or a budget that resamples often drop (non-convex or
    undetermined) or push to the edge of its sizes (:data:`DOUBTFUL_SHARE`). The message names
    those budgets, and those with few runs (:data:`FEW_RUNS`).
    """
    bad = []
    for q in ("a", "b"):
        if row[f"{q}_source"] != "fitted":
            continue  # an implied exponent's interval mirrors the fitted one's
        lo, hi = row[f"{q}_lower"], row[f"{q}_upper"]
        if np.isfinite(lo) and np.isfinite(hi) and (lo <= 0 or hi >= 1 or hi - lo > DEGENERATE_WIDTH):
            where = "leaves (0, 1)" if lo <= 0 or hi >= 1 else f"is wider than {DEGENERATE_WIDTH}"
            bad.append(f"the {level:.0%} interval for {q}, [{lo:.3g}, {hi:.3g}], {where}")
    used = rows[rows["ok"]]
    causes, degenerate = [], False
    for _, b in used.sort_values("dropped_fraction", ascending=False).iterrows():
        reasons = []
        if b["dropped_fraction"] >= DOUBTFUL_SHARE:
            reasons.append(f"non-convex or undetermined in {b['dropped_fraction']:.0%} of resamples")
        if b["edge_fraction"] >= DOUBTFUL_SHARE:
            reasons.append(f"optimum at the edge of its sizes in {b['edge_fraction']:.0%}")
        degenerate |= bool(reasons)
        if b["n_runs"] < FEW_RUNS:
            reasons.append(f"only {int(b['n_runs'])} runs")
        if reasons:
            causes.append(f"C={b['compute']:.3g} ({int(b['n_runs'])} runs: " + ", ".join(reasons) + ")")
    if not bad and not degenerate:
        return ""
    if not bad:
        bad.append(f"the {level:.0%} intervals rest on degenerate resamples")
    if causes:
        cause = "budget(s) " + "; ".join(causes)
        fix = "Drop those budgets, add runs to them, or narrow them with window=..."
    else:
        cause = f"no single budget stands out ({len(used)} budgets used)"
        fix = "More budgets or more runs per budget narrow it"
    message = f"{'; '.join(bad)}: {cause}. {fix}"
    warnings.warn(IsoflopWarning(f"isoflop: {label}: {message}"), stacklevel=4)
    return message


def budget_entries(rows: pd.DataFrame, flops_per_token: float) -> list[dict[str, Any]]:
    """The ``budgets`` column's entries for one group's used budgets."""
    out = []
    for _, b in rows.iterrows():
        entry = {
            "compute": float(b["compute"]),
            "N_opt": float(np.exp(b["log_n"])),
            "D_opt": float(np.exp(b["log_d"])),
            "loss": float(b["loss"]),
            "n_runs": int(b["n_runs"]),
            "flops_min": float(b["flops_min"]),
            "flops_max": float(b["flops_max"]),
        }
        for extra in ("dropped_fraction", "edge_fraction"):
            if extra in b:
                entry[extra] = float(b[extra])
        if "name" in b:
            entry["name"] = python_value(b["name"])
        out.append(entry)
    return out


def is_isoflop_table(result: Any) -> bool:
    return isinstance(result, pd.DataFrame) and {"a", "k_N", "b", "k_D", "draws", "budgets"} <= set(result.columns)


def extrapolate(table: pd.DataFrame, compute: Sequence[float], *, level: float = 0.95) -> pd.DataFrame:
    """N* = k_N C^a, D* = k_D C^b and D*/N* at each budget in ``compute`` for every row of an
    :func:`jaxscale.isoflop` table, with percentile bands at ``level`` over the resamples
    (``<quantity>_lower``/``_upper``; NaN without resamples). ``status`` is ``"ok"`` within
    the budgets fitted, ``"extrapolated"`` beyond them (``extrapolation``: the budget over the
    nearest fitted one, >1 above the largest, <1 below the smallest), ``"no_fit"`` where the
    group has no exponent. With both sides fitted, N*·D* need not equal C / flops_per_token."""
    if not is_isoflop_table(table):
        raise TypeError("expected a table returned by jaxscale.isoflop (columns a, k_N, b, k_D, draws, budgets)")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95); got {level}")
    compute = checks.check_budgets("compute", compute)
    by = table.attrs.get("by", list(table.columns[: table.columns.get_loc("a")]))
    tail = 100 * (1 - level) / 2
    log_c = np.log(compute)
    parts = []
    for _, row in table.iterrows():
        fitted = [b["compute"] for b in row["budgets"]]
        lo, hi = (min(fitted), max(fitted)) if fitted else (np.nan, np.nan)
        part = pd.DataFrame({c: [row[c]] * len(compute) for c in by})
        part["compute"] = compute
        n_opt = row["k_N"] * compute ** row["a"]
        d_opt = row["k_D"] * compute ** row["b"]
        values = {"N_opt": n_opt, "D_opt": d_opt, "tokens_per_param": d_opt / n_opt}
        draws = np.asarray(row["draws"], dtype=np.float64).reshape(-1, 4)
        draws = draws[np.all(np.isfinite(draws), axis=1)]
        for name, v in values.items():
            part[name] = v
        for name in values:
            part[f"{name}_lower"], part[f"{name}_upper"] = np.nan, np.nan
        if len(draws):
            bn = np.exp(draws[:, 1:2] + draws[:, 0:1] * log_c)
            bd = np.exp(draws[:, 3:4] + draws[:, 2:3] * log_c)
            for name, v in {"N_opt": bn, "D_opt": bd, "tokens_per_param": bd / bn}.items():
                part[f"{name}_lower"], part[f"{name}_upper"] = np.percentile(v, [tail, 100 - tail], axis=0)
        part["extrapolation"] = np.where(compute > hi, compute / hi, np.where(compute < lo, compute / lo, 1.0))
        inside = (compute >= lo) & (compute <= hi)
        part["status"] = np.where(np.isfinite(row["a"]), np.where(inside, "ok", "extrapolated"), "no_fit")
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out.attrs = {"level": level, "by": by}
    return out


def isoflop_to_dicts(table: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe dicts, one per row of an :func:`jaxscale.isoflop` table (NaN becomes ``None``).

    Each is ``{"a", "b", "ci": {"a": [lo, hi], "b": [lo, hi]}, "a_source", "b_source",
    "budgets": [...], "group": {...}, "n_budgets", "n_budgets_skipped", "n_points", "k_N",
    "k_D", "interval_warning", "binning", "bootstrap": {"n_resamples", "level", "seed",
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
                "a_source": row.get("a_source", "fitted"),
                "b_source": row.get("b_source", "implied"),
                "budgets": [{k: json_safe(v) for k, v in b.items()} for b in row["budgets"]],
                "group": {c: python_value(row[c]) for c in by},
                "n_budgets": int(row["n_budgets"]),
                "n_budgets_skipped": int(row["n_budgets_skipped"]),
                "n_points": int(row["n_points"]),
                "k_N": json_safe(row["k_N"]),
                "k_D": json_safe(row["k_D"]),
                "interval_warning": row.get("interval_warning", ""),
                "binning": table.attrs.get("binning", {"method": "exact"}),
                "bootstrap": {
                    "n_resamples": table.attrs.get("n_resamples"),
                    "level": table.attrs.get("level"),
                    "seed": table.attrs.get("seed"),
                    "nonconvex_fraction": json_safe(row["nonconvex_fraction"]),
                },
            }
        )
    return out
