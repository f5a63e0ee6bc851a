"""Figures of fits, isoFLOP profiles, frontiers, bootstraps and posteriors (``pip install 'jaxscale[plots]'``).

Posteriors' traces and pairs plots (:func:`plot_trace`, :func:`plot_pairs`) are defined in
:mod:`jaxscale.plotting_posterior` and importable from here.

Nothing is shown: each function draws into the axes given (or a new figure) and returns them; save
with :func:`save_figure`. Artists carry a ``gid`` (``"runs"``, ``"curve"``, ...) named in each docstring.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._plot_style import AXIS_LABEL, FRONTIER_LABEL, axes_for, grid_style, pyplot, sci, tex
from .fit import as_runs, match_inputs
from .plotting_posterior import plot_pairs as plot_pairs  # re-exported
from .plotting_posterior import plot_trace as plot_trace
from .results import FitResult
from .runs import Runs

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .results import BootstrapResult


def plot_fit(
    result: FitResult,
    runs: Runs | Any,
    *,
    x: str | None = None,
    hold: str | None = None,
    curves: int | Sequence[float] = 6,
    residuals: bool = True,
    axes: Axes | Sequence[Axes] | None = None,
) -> tuple[Axes, ...]:
    """The fitted law against its runs: loss vs ``x`` (log axis), then log residuals.

    For a law of (N, D) the runs are binned by ``hold`` -- compute C = 6ND (default) or the other
    input -- into ``curves`` log-spaced bins (or to the nearest of the values given); each bin gets
    the law's curve at its center, in its runs' colour. A law of one input gets one curve.

    Args:
        result, runs: a :class:`~jaxscale.FitResult` and the :class:`~jaxscale.Runs` it was fitted to.
        x: the input on the horizontal axis (default ``"N"``, or the law's single input).
        residuals: add a panel of ``log(observed) - log(predicted)`` below (``axes`` then holds two).

    Returns:
        ``(loss_axes,)`` or ``(loss_axes, residual_axes)``. gids: ``"runs"`` (one scatter of all
        runs), ``"curve"`` (one line per bin with runs), ``"residuals"``.

    Example:
        >>> import jaxscale as js
        >>> from jaxscale.plotting import plot_fit
        >>> runs = js.datasets.chinchilla()
        >>> ax, ax_res = plot_fit(js.fit(runs, law="chinchilla"), runs, curves=4)
        >>> ax.get_xscale(), len([line for line in ax.lines if line.get_gid() == "curve"])
        ('log', 4)
        >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    from matplotlib.lines import Line2D

    runs = as_runs(runs)
    law = result.law
    match_inputs(runs, law)  # says which inputs are missing, if any
    one = len(law.inputs) == 1 and len(runs.inputs) == 1
    cols = runs.x if one else runs.x[:, [runs.inputs.index(n) for n in law.inputs]]  # [P, k], the law's order
    names = law.inputs
    if len(names) == 1:
        label = runs.inputs[0] if one else names[0]
        if hold is not None or x not in (None, label, names[0]):
            raise ValueError(f"law {law.name!r} has one input ({label!r}): x= names it, hold= needs two inputs")
        xs, held, x, other, ys_other = cols[:, 0], np.ones(runs.n_points), label, None, None
    elif len(names) == 2:
        x = x if x is not None else ("N" if "N" in names else names[0])
        if x not in names:
            raise ValueError(f"x must be one of the law's inputs {list(names)}; got {x!r}")
        other = names[1 - names.index(x)]
        nd = set(names) == {"N", "D"}
        hold = hold if hold is not None else ("compute" if nd else other)
        if hold not in ("compute", other) or (hold == "compute" and not nd):
            options = ["compute", other] if nd else [other]
            raise ValueError(f"hold must be one of {options} (what stays fixed along a curve); got {hold!r}")
        xs, ys_other = cols[:, names.index(x)], cols[:, names.index(other)]
        held = 6.0 * xs * ys_other if hold == "compute" else ys_other
    else:
        raise ValueError(
            f"plot_fit draws laws of one or two inputs; law {law.name!r} has {list(names)}: "
            "plot a slice by fitting with the extra inputs fixed, or use result.predict directly"
        )
    log_h = np.log(held)
    if isinstance(curves, int):
        if curves < 1:
            raise ValueError(f"curves must be >= 1 (a number of bins) or a list of held values; got {curves}")
        edges = np.linspace(log_h.min(), log_h.max(), curves + 1)
        centers = 0.5 * (edges[:-1] + edges[1:])
    else:
        centers = np.log(np.asarray(curves, dtype=np.float64))
    nearest = np.argmin(np.abs(log_h[:, None] - centers[None, :]), axis=1)
    used = np.unique(nearest)  # bins without runs get no curve
    colors = pyplot().get_cmap("viridis")(np.linspace(0.0, 0.85, len(used)) if len(used) > 1 else [0.3])
    color_of = dict(zip(used, colors, strict=True))
    point_colors = np.array([color_of[k] for k in nearest])

    n_panels = 2 if residuals else 1
    kw = {"height_ratios": (3, 1), "sharex": True, "figsize": (6.4, 5.6)} if residuals else {"figsize": (6.4, 4.4)}
    axs = axes_for(axes, n_panels, nrows=n_panels, ncols=1, **kw)
    ax = axs[0]

    def predict(xv: np.ndarray, ov: np.ndarray | None) -> np.ndarray:
        return result.predict(**({names[0]: xv} if other is None else {x: xv, other: ov}))

    ax.scatter(xs, runs.y, c=point_colors, s=16, alpha=0.75, edgecolors="none", gid="runs", zorder=2)
    handles = []  # one entry per bin: its marker (runs) and line (fit)
    for k in used:
        mine = xs[nearest == k]
        grid = np.geomspace(mine.min() / 1.3, mine.max() * 1.3, 200)
        h = float(np.exp(centers[k]))
        ov = h / (6.0 * grid) if hold == "compute" else np.full_like(grid, h)
        ax.plot(grid, predict(grid, ov), color=color_of[k], lw=1.8, gid="curve", zorder=3)
        label = sci(h) if other is not None else "runs and fit"
        handles.append(Line2D([], [], color=color_of[k], lw=1.8, marker="o", ms=4, label=label))
    ax.set_xscale("log")
    ax.set_ylabel("loss")
    ax.set_title(f"{law.name} law fitted to {runs.n_points} runs", fontsize="medium")
    title = f"{AXIS_LABEL.get(other, other)} held at" if hold != "compute" else "$C = 6ND$ (FLOPs)"
    ncols = 2 if len(used) > 4 else 1
    ax.legend(handles=handles, title=title if other else None, fontsize="small", title_fontsize="small", ncols=ncols)
    grid_style(ax)
    if residuals:
        rax = axs[1]
        res = np.log(runs.y) - np.log(predict(xs, ys_other))
        rax.scatter(xs, res, c=point_colors, s=12, alpha=0.75, edgecolors="none", gid="residuals", zorder=2)
        rax.axhline(0.0, color="0.3", lw=1, zorder=1)
        bound = 1.15 * float(np.max(np.abs(res))) or 1.0
        rax.set_ylim(-bound, bound)
        rax.set_xscale("log")
        rax.set_ylabel("log residual")
        grid_style(rax)
    axs[-1].set_xlabel(AXIS_LABEL.get(x, x))
    return tuple(axs)


def _pick_row(table: pd.DataFrame, group: Mapping[str, Any] | None) -> pd.Series:
    """The one row of an isoflop table that ``group`` names (or the only row)."""
    by = list(table.attrs.get("by", []))
    keep = np.ones(len(table), bool)
    for col, value in (group or {}).items():
        if col in table.columns:
            keep &= (table[col] == value).to_numpy()
    if keep.sum() != 1:
        examples = ", ".join(repr(dict(zip(by, k, strict=True))) for k in table[by].itertuples(index=False))
        raise ValueError(
            f"group={group!r} selects {int(keep.sum())} of the table's {len(table)} rows; "
            f"pick exactly one with group={{...}}: {examples[:300]}"
        )
    return table[keep].iloc[0]


def plot_isoflop(
    source: pd.DataFrame | str | os.PathLike,
    table: pd.DataFrame | None = None,
    *,
    group: Mapping[str, Any] | None = None,
    flops: str = "flops",
    N: str = "params",
    loss: str = "loss",
    window: float | None = None,
    weights: str | None = None,
    colorbar: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """IsoFLOP profiles: per budget, loss vs N, the parabola in log N, and its minimum.

    The minima are those :func:`~jaxscale.isoflop` reports; the parabolas are refitted here to the
    same runs (``numpy.polyfit``), and budgets isoflop skipped show their runs but no curve.

    Args:
        source, table: the runs given to :func:`~jaxscale.isoflop` and its result (computed here,
            without bootstrap, when None). flops, N, loss, window, weights: as there (a table's
            own window is used); runs outside the window are drawn hollow.
        group: column values picking one configuration (its runs and its row of the table).

    Returns:
        The axes. gids: ``"runs"``, ``"excluded"`` (outside the window), ``"parabola"`` (one per
        budget, over its sizes), ``"extrapolated"`` (dotted, on to a minimum beyond them), ``"minima"``.

    Example:
        >>> import numpy as np, pandas as pd
        >>> from jaxscale.plotting import plot_isoflop
        >>> C = np.repeat([1e18, 1e19, 1e20], 7)
        >>> N = 0.1 * C**0.5 * np.tile([1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8], 3)
        >>> df = pd.DataFrame({"flops": C, "params": N, "loss": 2 + 0.05 * np.log(N / (0.1 * C**0.5)) ** 2})
        >>> ax = plot_isoflop(df)
        >>> len([line for line in ax.lines if line.get_gid() == "parabola"])
        3
        >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    import pandas as pd
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D

    from .io import read_table
    from .isoflop import isoflop

    plt = pyplot()
    df = source if isinstance(source, pd.DataFrame) else read_table(source)
    for col, value in (group or {}).items():
        if col not in df.columns:
            raise ValueError(f"group column {col!r} is not in the runs; columns: {list(df.columns)}")
        df = df[df[col] == value]
    if df.empty:
        raise ValueError(f"no runs match group={group!r}")
    if table is not None and window not in (None, table.attrs.get("window")):
        raise ValueError(f"window={window} differs from the table's ({table.attrs.get('window')}): omit it")
    if table is None:
        table = isoflop(df, flops=flops, N=N, loss=loss, window=window, weights=weights, n_resamples=0)
    window = table.attrs.get("window", window)
    row = _pick_row(table, group)
    c, n, y = (df[col].to_numpy(np.float64) for col in (flops, N, loss))
    w = df[weights].to_numpy(np.float64) if weights else np.ones(len(df))
    cmap, norm = plt.get_cmap("viridis"), LogNorm(vmin=c.min(), vmax=c.max())
    (ax,) = axes_for(ax, 1, figsize=(6.8, 4.6))
    inside = np.ones(len(df), bool)
    minima = []
    for cb in np.unique(c):
        at = np.flatnonzero(c == cb)
        log_n = np.log(n[at])
        if window is not None:
            inside[at] = np.abs(log_n - log_n[np.argmin(y[at])]) <= window
        use = inside[at]
        opt = [b for b in row["budgets"] if np.isclose(b["compute"], cb, rtol=1e-9, atol=0.0)]
        if not opt or len(np.unique(log_n[use])) < 3:
            continue  # isoflop skipped this budget: runs only
        center, color = log_n[use].mean(), cmap(norm(cb))
        parabola = np.poly1d(np.polyfit(log_n[use] - center, y[at][use], 2, w=np.sqrt(w[at][use])))
        lo, hi, vertex = log_n[use].min(), log_n[use].max(), np.log(opt[0]["N_opt"])
        grid = np.linspace(lo, hi, 120)
        ax.plot(np.exp(grid), parabola(grid - center), color=color, lw=1.5, gid="parabola")
        if not lo <= vertex <= hi:  # a dotted extension leads to a minimum beyond the sizes sampled
            grid = np.linspace(vertex, np.clip(vertex, lo, hi), 60)
            ax.plot(np.exp(grid), parabola(grid - center), color=color, lw=1, ls=":", gid="extrapolated")
        minima.append((opt[0]["N_opt"], opt[0]["loss"], cb))
    colors = cmap(norm(c))
    ax.scatter(n[inside], y[inside], c=colors[inside], s=18, alpha=0.85, edgecolors="none", gid="runs", zorder=2)
    if not inside.all():
        ax.scatter(n[~inside], y[~inside], facecolors="none", edgecolors=colors[~inside], s=18, gid="excluded")
    if minima:
        m = np.array(minima)
        ax.plot(m[:, 0], m[:, 1], ls="--", color="0.35", lw=1, zorder=3, gid="optimum path")
        star = {"marker": "*", "s": 110, "edgecolors": "black", "lw": 0.7, "zorder": 4}
        ax.scatter(m[:, 0], m[:, 1], c=cmap(norm(m[:, 2])), gid="minima", **star)
    ax.set_xscale("log")
    ax.set_xlabel(AXIS_LABEL["N"])
    ax.set_ylabel("loss")
    by = list(table.attrs.get("by", []))
    name = " · ".join([str(row[col]) for col in by if col in row.index] or [str(v) for v in (group or {}).values()])
    a = f"$N^* \\propto C^{{{row['a']:.3f}}}$"
    if np.isfinite(row.get("a_lower", np.nan)):
        a += f" [{row['a_lower']:.3f}, {row['a_upper']:.3f}]"
    ax.set_title(f"{name}: {a}" if name else f"isoFLOP profiles: {a}", fontsize="medium")
    handles = [
        Line2D([], [], marker="o", ls="none", color="0.45", label="runs"),
        Line2D([], [], color="0.45", lw=1.5, label="parabola in $\\log N$"),
        Line2D([], [], marker="*", ms=10, ls="--", lw=1, color="0.35", mfc="white", mec="black", label="minimum"),
    ]
    if any(line.get_gid() == "extrapolated" for line in ax.lines):
        handles.insert(2, Line2D([], [], color="0.45", lw=1, ls=":", label="extrapolated to its minimum"))
    if not inside.all():
        handles.insert(1, Line2D([], [], marker="o", ls="none", mfc="none", mec="0.45", label="outside window"))
    ax.legend(handles=handles, fontsize="small", loc="best")
    if colorbar:
        ax.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="compute budget $C$ (FLOPs)")
    grid_style(ax)
    return ax


def plot_frontier(
    frontier: pd.DataFrame, *, quantities: Sequence[str] = ("N_opt", "D_opt"), ax: Axes | None = None
) -> Axes:
    """Compute-optimal ``quantities`` of a :func:`~jaxscale.frontier` table vs compute (log-log).

    A bootstrap's or a posterior's table has ``_lower`` / ``_upper`` columns: drawn as a shaded band. Returns the
    axes; gids: the quantity (its line), ``"<quantity>_band"``, ``"at_edge"`` (optimum at the end
    of the N range searched).

    Example:
        >>> import numpy as np, jaxscale as js
        >>> from jaxscale.plotting import plot_frontier
        >>> hoffmann = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
        >>> ax = plot_frontier(js.frontier(hoffmann, np.logspace(20, 25, 11), law="chinchilla"))
        >>> ax.get_xscale(), ax.get_yscale(), [line.get_gid() for line in ax.lines]
        ('log', 'log', ['N_opt', 'D_opt'])
        >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    quantities = (quantities,) if isinstance(quantities, str) else tuple(quantities)
    missing = [q for q in ("compute", *quantities) if q not in frontier.columns]
    if missing:
        raise ValueError(f"the frontier table has no column(s) {missing}; its columns: {list(frontier.columns)}")
    (ax,) = axes_for(ax, 1, figsize=(6.0, 4.4))
    compute = frontier["compute"].to_numpy(np.float64)
    band = False
    for i, q in enumerate(quantities):
        color = f"C{i}"
        ax.plot(compute, frontier[q], color=color, lw=2, label=FRONTIER_LABEL.get(q, q), gid=q, zorder=3)
        if f"{q}_lower" in frontier.columns and f"{q}_upper" in frontier.columns:
            lo, hi = frontier[f"{q}_lower"].to_numpy(np.float64), frontier[f"{q}_upper"].to_numpy(np.float64)
            ax.fill_between(compute, lo, hi, color=color, alpha=0.2, lw=0, gid=f"{q}_band", zorder=2)
            band = True
        if "at_edge" in frontier.columns and frontier["at_edge"].any():
            edge = frontier["at_edge"].to_numpy(bool)
            ax.plot(compute[edge], frontier[q][edge], "x", color="C3", gid="at_edge", zorder=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(AXIS_LABEL["compute"])
    one = FRONTIER_LABEL.get(quantities[0], quantities[0]) if len(quantities) == 1 else "value"
    ax.set_ylabel("parameters, tokens" if set(quantities) == {"N_opt", "D_opt"} else one)
    shaded = " (shaded: interval over the draws)" if band else ""
    ax.set_title("compute-optimal allocation" + shaded, fontsize="medium")
    ax.legend(fontsize="small")
    grid_style(ax)
    return ax


def plot_bootstrap(
    boot: BootstrapResult,
    params: str | Sequence[str] = ("alpha", "beta"),
    *,
    level: float = 0.95,
    bins: int | None = None,
    axes: Axes | Sequence[Axes] | None = None,
) -> tuple[Axes, ...]:
    """Histograms of the converged bootstrap draws of each of ``params`` (natural, e.g. ``"alpha"``,
    or derived, ``"a"``), with ``boot.ci(level)`` marked; ``bins`` defaults to ~2 sqrt(draws).

    Returns one Axes per parameter; gids: ``"draws"`` (bars), ``"estimate"`` (fit to all runs),
    ``"lower"`` and ``"upper"`` (the interval's ends: vertical lines).

    Example:
        >>> import jaxscale as js
        >>> from jaxscale.plotting import plot_bootstrap
        >>> boot = js.bootstrap(js.datasets.chinchilla(), law="chinchilla", n_resamples=16, seed=0)
        >>> [ax.get_xlabel() for ax in plot_bootstrap(boot, ("alpha", "a"))]
        ['$\\\\alpha$', '$a$']
        >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    from matplotlib.ticker import MaxNLocator

    params = (params,) if isinstance(params, str) else tuple(params)
    draws = {**boot.samples, **boot.derived_samples()}
    missing = [p for p in params if p not in draws]
    if missing:
        raise ValueError(f"no draws of {missing}; available: {list(draws)}")
    table = boot.ci(level)
    axs = axes_for(axes, len(params), nrows=1, ncols=len(params), figsize=(3.2 * len(params) + 0.4, 3.2))
    pct = f"{100 * level:g}%"
    for ax, name in zip(axs, params, strict=True):
        values = np.asarray(draws[name], dtype=np.float64)[boot.ok]
        values = values[np.isfinite(values)]
        n_bins = bins if bins is not None else int(np.clip(2 * np.sqrt(values.size), 5, 40))
        ax.hist(values, bins=n_bins, color="C0", alpha=0.7, edgecolor="white", lw=0.5, gid="draws")
        est, lo, hi = (float(table.loc[name, k]) for k in ("estimate", "lower", "upper"))
        ax.axvline(est, color="black", lw=1.8, gid="estimate", label=f"estimate {est:.4g}")
        ax.axvline(lo, color="C3", lw=1.3, ls="--", gid="lower", label=f"{pct}: [{lo:.4g}, {hi:.4g}]")
        ax.axvline(hi, color="C3", lw=1.3, ls="--", gid="upper")
        ax.set_xlabel(tex(name))
        ax.legend(fontsize="x-small", loc="upper left")
        ax.margins(y=0.35)  # room for the legend above the bars
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        grid_style(ax)
    axs[0].set_ylabel("resamples")
    axs[0].figure.suptitle(
        f"{boot.law.name} bootstrap: {int(boot.ok.sum())} of {boot.n_resamples} resamples converged", fontsize="medium"
    )
    return tuple(axs)


def save_figure(target: Figure | Axes | Sequence[Axes], path: str | os.PathLike, *, dpi: int = 150) -> Path:
    """Write the figure of ``target`` (a Figure, Axes or the axes a plot returned) to ``path`` (format
    from the suffix: ``.png``, ``.pdf``, ``.svg``); returns the path.

    Example:
        >>> import tempfile, pathlib
        >>> import matplotlib.pyplot as plt
        >>> from jaxscale.plotting import save_figure
        >>> fig, ax = plt.subplots()
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_figure(ax, pathlib.Path(tmp) / "fig.png").read_bytes()[:4]
        b'\\x89PNG'
        >>> plt.close(fig)
    """
    from matplotlib.figure import Figure

    fig = np.ravel(target)[0] if isinstance(target, np.ndarray) else target
    fig = fig[0] if isinstance(fig, (tuple, list)) else fig
    while not isinstance(fig, Figure):
        fig = fig.figure  # Axes -> (Sub)Figure -> Figure
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
