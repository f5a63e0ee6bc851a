"""What the command line prints and writes: JSON documents, tables, ``--out`` files, ``--plot`` figures.

Every document is strictly valid JSON (NaN and infinities become null).

Example:
    >>> import numpy as np
    >>> from jaxscale._cli_output import plain
    >>> plain(np.float64(2.5)), plain(float("nan")), plain(np.bool_(True))
    (2.5, None, True)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

OUT_FORMATS = (".json", ".csv")
PLOT_FORMATS = (".png", ".pdf", ".svg")


def plain(v: Any) -> Any:
    """A JSON-safe scalar: numpy scalars as Python ones, NaN and infinities as None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def dumps(doc: Any, **kwargs: Any) -> str:
    return json.dumps(doc, allow_nan=False, **kwargs)


def records(table: pd.DataFrame, index: str | None = None) -> list[dict[str, Any]]:
    """The rows of ``table`` as JSON-safe dicts (its index as column ``index`` when named)."""
    if index is not None:
        table = table.rename_axis(index).reset_index()
    return [{str(k): plain(v) for k, v in row.items()} for row in table.to_dict("records")]


def check_path(path: str | None, formats: tuple[str, ...], option: str) -> Path | None:
    """``path`` as a Path after checking its extension and folder, before any work is done."""
    if path is None:
        return None
    out = Path(path)
    if out.suffix.lower() not in formats:
        raise ValueError(
            f"{option} {path!r}: the format follows the file's extension, which must be "
            f"one of {', '.join(formats)} (e.g. {option} results{formats[0]})"
        )
    if not out.parent.is_dir():
        raise ValueError(f"{option} {path!r}: folder {str(out.parent)!r} does not exist; create it first")
    return out


def check_plotting() -> None:
    """Fail early, with the fix, when matplotlib is missing; draw off-screen (the CLI only writes files)."""
    try:
        import matplotlib
    except ImportError as err:
        raise ValueError("--plot needs matplotlib: install it with pip install 'jaxscale[plots]'") from err
    matplotlib.use("Agg")


def write_out(path: Path | None, doc: Any, table: pd.DataFrame) -> None:
    """``--out``: the JSON document (``.json``) or the table (``.csv``)."""
    if path is None:
        return
    if path.suffix.lower() == ".json":
        path.write_text(dumps(doc, indent=2) + "\n")
    else:
        table.to_csv(path, index=False)


def bootstrap_doc(boot, level: float) -> dict[str, Any]:
    table = boot.ci(level)
    return {
        "n": boot.n,
        "level": level,
        "seed": boot.seed,
        "failed_fraction": boot.failed_fraction,
        "ci": {name: [plain(float(row.lower)), plain(float(row.upper))] for name, row in table.iterrows()},
        "se": {name: plain(float(row.se)) for name, row in table.iterrows()},
        "n_unidentified": boot.n_unidentified,
        # Intervals not to trust as they stand (zero width, excluding their estimate): see BootstrapResult.ci.
        "warnings": {name: row.warning for name, row in table.iterrows() if row.warning},
    }


def fit_doc(result, boot=None, level: float = 0.95) -> dict[str, Any]:
    """The ``--json`` object of one fit (``FitResult.to_dict()``, plus ``bootstrap``)."""
    doc = result.to_dict()
    if boot is not None:
        doc["bootstrap"] = bootstrap_doc(boot, level)
    return doc


def fit_row(result, boot=None, level: float = 0.95) -> pd.DataFrame:
    """One fit as a one-row table with the columns of a ``fit_groups`` row (less the group keys)."""
    from .groups import result_row

    return pd.DataFrame([result_row(result, boot, level)])


def quantities(law) -> tuple[list[str], list[str]]:
    """The law's natural parameter names and derived quantity names."""
    return list(law.natural), list(law.derived_names)


def group_docs(table: pd.DataFrame, by: list[str], law, *, bootstrap: int, level: float, seed: int) -> list[dict]:
    """One ``--json`` object per row of a ``fit_groups`` table, shaped like :func:`fit_doc`, plus ``group``."""
    natural, derived = quantities(law)
    docs = []
    for g, row in enumerate(table.to_dict("records")):
        doc = {
            "law": row["law"],
            "n_points": int(row["n_points"]),
            "objective": plain(row["objective"]),
            "converged": bool(row["converged"]),
            "status": row["status"],
            "params": {k: plain(row[k]) for k in natural},
            "derived": {k: plain(row[k]) for k in derived},
            "diagnostics": {k: plain(row[k]) for k in ("steps", "grad_norm", "n_at_optimum")},
            "unidentified": [n for n in str(row.get("unidentified", "")).split(",") if n],
            "unidentified_reason": row.get("unidentified_reason", ""),
        }
        if bootstrap:
            doc["bootstrap"] = {
                "n": int(row["boot_n"]),
                "level": level,
                "seed": seed + g,  # fit_groups resamples the g-th group as bootstrap(group, seed=seed + g)
                "failed_fraction": plain(row["boot_failed_fraction"]),
                "ci": {k: [plain(row[f"{k}_lower"]), plain(row[f"{k}_upper"])] for k in natural + derived},
            }
        doc["group"] = {c: plain(row[c]) for c in by}
        docs.append(doc)
    return docs


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def groups_text(table: pd.DataFrame, by: list[str], law, *, bootstrap: int, level: float) -> str:
    """A readable report of a ``fit_groups`` table: the fits, then (with a bootstrap) their intervals."""
    natural, derived = quantities(law)
    n_ok = int(table["converged"].sum())
    lines = [f"{law.name} law fitted to {len(table)} groups by {by}: {n_ok} converged"]
    cols = [*by, "n_points", *natural, *derived, "objective", "status"]
    if "unidentified" in table and (table["unidentified"] != "").any():
        cols.append("unidentified")  # the parameters each group's runs do not determine
    lines.append(table[cols].to_string(index=False, float_format=_fmt))
    if bootstrap:
        ci = table[by].copy()
        for k in natural + derived:
            ci[k] = [
                f"[{_fmt(lo)}, {_fmt(hi)}]" for lo, hi in zip(table[f"{k}_lower"], table[f"{k}_upper"], strict=True)
            ]
        ci["failed"] = [f"{f:.1%}" for f in table["boot_failed_fraction"]]
        if "boot_warning" in table and (table["boot_warning"] != "").any():
            ci["warning"] = table["boot_warning"]  # zero-width intervals, or ones excluding their estimate
        lines.append(f"\n{level:.0%} percentile intervals from {bootstrap} resamples per group (failed: excluded)")
        lines.append(ci.to_string(index=False))
    return "\n".join(lines)


def save_fit_plot(path: Path, result, runs, boot=None, level: float = 0.95) -> None:
    """``fit --plot``: the law against its runs (with residuals), and the bootstrap histograms below."""
    import matplotlib.pyplot as plt

    from .plotting import plot_bootstrap, plot_fit, save_figure

    if boot is None:
        axes = plot_fit(result, runs)
    else:
        names = list(result.law.natural)
        ncols = min(len(names), 3)
        nrows = -(-len(names) // ncols)
        fig = plt.figure(layout="constrained", figsize=(3.3 * ncols + 0.4, 5.6 + 2.9 * nrows))
        top, bottom = fig.subfigures(2, 1, height_ratios=(5.6, 2.9 * nrows))
        axes = top.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        plot_fit(result, runs, axes=axes)
        grid = bottom.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in grid[len(names) :]:
            ax.remove()
        plot_bootstrap(boot, names, level=level, axes=list(grid[: len(names)]))
    save_figure(axes, path)
    plt.close("all")


def save_frontier_plot(path: Path, table: pd.DataFrame) -> None:
    import matplotlib.pyplot as plt

    from .plotting import plot_frontier, save_figure

    save_figure(plot_frontier(table), path)
    plt.close("all")
