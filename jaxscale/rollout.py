"""Rollout cross-validation: fit on the first k rungs of a ladder, predict the next, for every k.

A ladder's rungs are the distinct values of one input (model sizes ``N``, or budgets ``C =
6ND``); OLMo-core's ``ScalingLawRollout`` does the same. Each step reports how well a law fitted
on the smaller rungs predicts the next larger one: the mean signed and absolute relative error
of its runs' predicted losses, with bootstrap bands over refits of the training rungs
(``n_resamples``). A step whose training rungs hold too few runs for the law's free parameters
is reported (``status``), not fitted.

Example:
    >>> import jaxscale as js
    >>> table = rollout(js.datasets.chinchilla(), rung="N", min_rungs=30)
    >>> int(table["n_train"].iloc[0]) > 5, table["status"].iloc[-1]
    (True, 'converged')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import pandas as pd

from . import budgets, specs
from .bootstrap import bootstrap
from .fit import as_runs, fit, match_inputs
from .laws import Law, get_law
from .runs import Runs


def _rung_values(runs: Runs, rung: str, flops_per_token: float) -> np.ndarray:
    if rung in runs.inputs:
        return runs.x[:, runs.inputs.index(rung)]
    if rung == "C" and {"N", "D"} <= set(runs.inputs):
        return flops_per_token * runs.x[:, runs.inputs.index("N")] * runs.x[:, runs.inputs.index("D")]
    raise ValueError(f"rung must be one of the runs' inputs {list(runs.inputs)} or 'C' (6ND); got {rung!r}")


def _subset(runs: Runs, mask: np.ndarray) -> Runs:
    groups = None if runs.groups is None else runs.groups[mask]
    return runs._replace(x=runs.x[mask], y=runs.y[mask], rows=runs.rows[mask], groups=groups)


def _errors(law: Law, theta: np.ndarray, log_x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Relative errors ``[n, P]`` of predictions by each parameter row ``theta [n, p]``."""
    with jax.enable_x64(True):
        predicted = np.asarray(jax.vmap(lambda t: law.predict(t, log_x))(theta))
    return predicted / y[None] - 1.0


def rollout(
    runs: Runs | Any,
    law: str | Law = "chinchilla",
    *,
    rung: str = "N",
    rung_rtol: float | None = None,
    rungs_per_decade: float | None = None,
    min_rungs: int = 2,
    n_resamples: int = 0,
    level: float = 0.95,
    seed: int = 0,
    flops_per_token: float = 6.0,
    fixed: dict[str, float] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Fit on rungs ``1..k`` and predict rung ``k+1``, for every ``k >= min_rungs``.

    Args:
        runs: a :class:`~jaxscale.Runs` or what :func:`jaxscale.fit` accepts.
        law: a law name or :class:`~jaxscale.Law`.
        rung: the input whose distinct values are the rungs (``"N"``, ``"D"``, ...) or ``"C"``
            (``flops_per_token · N · D``).
        rung_rtol, rungs_per_decade: values within a relative tolerance of a rung's smallest, or
            in log-spaced bins, share a rung (:mod:`jaxscale.budgets`' binning; for sizes read
            off a figure, e.g. the Epoch points); a rung's value is their geometric mean.
        min_rungs: the fewest rungs a fit uses.
        n_resamples: bootstrap refits of each step's training runs (0: no bands); level, seed:
            of the percentile bands and the resamples.
        fixed, **options: passed to :func:`jaxscale.fit` / :func:`jaxscale.bootstrap`
            (``loss_fn``, ``scale``, ``starts``, ...).

    Returns:
        One row per step: ``step`` (k), ``rung`` (the predicted rung's value), ``n_train``,
        ``n_test``, ``mean_rel_error`` (predicted / observed - 1, signed: > 0 over-predicts),
        ``mean_abs_rel_error``, ``max_abs_rel_error``, ``status`` (the fit's, or
        ``"too_few_runs"``), and with resamples ``<error>_lower`` / ``_upper`` for the two
        means and ``n_converged``.
    """
    law = get_law(law)
    runs = as_runs(runs)
    if not (isinstance(min_rungs, int) and min_rungs >= 1):
        raise ValueError(f"min_rungs must be an integer >= 1; got {min_rungs!r}")
    budgets.check_options(budget=None, rtol=rung_rtol, per_decade=rungs_per_decade)
    raw = _rung_values(runs, rung, flops_per_token)
    values = budgets.assign(raw, rtol=rung_rtol, per_decade=rungs_per_decade).compute
    levels = np.unique(values)
    if len(levels) <= min_rungs:
        raise ValueError(
            f"{len(levels)} distinct values of {rung!r}: a rollout over min_rungs={min_rungs} needs at least "
            f"{min_rungs + 1}; lower min_rungs or use another rung"
        )
    n_free = len(specs.free_indices(law, fixed))
    log_x = match_inputs(runs, law)
    tail = 100 * (1 - level) / 2
    rows = []
    for k in range(min_rungs, len(levels)):
        train, test = values < levels[k], values == levels[k]
        row: dict[str, Any] = {
            "step": k,
            "rung": float(levels[k]),
            "n_train": int(train.sum()),
            "n_test": int(test.sum()),
        }
        if train.sum() <= n_free:
            rows.append(row | {"status": "too_few_runs"})
            continue
        sub = _subset(runs, train)
        if n_resamples:
            boot = bootstrap(sub, law, n_resamples=n_resamples, seed=seed, fixed=fixed, progress=False, **options)
            res = boot.point
        else:
            res = fit(sub, law, fixed=fixed, **options)
        rel = _errors(law, res.theta[None], log_x[test], runs.y[test])[0]
        row |= {
            "mean_rel_error": float(np.mean(rel)),
            "mean_abs_rel_error": float(np.mean(np.abs(rel))),
            "max_abs_rel_error": float(np.max(np.abs(rel))),
            "status": res.status,
        }
        if n_resamples:
            draws = np.asarray(law.to_fitted(boot.draws[boot.ok]))
            rel_draws = _errors(law, draws, log_x[test], runs.y[test])
            for name, per_draw in (
                ("mean_rel_error", rel_draws.mean(1)),
                ("mean_abs_rel_error", np.abs(rel_draws).mean(1)),
            ):
                lo, hi = np.percentile(per_draw, [tail, 100 - tail]) if len(per_draw) else (np.nan, np.nan)
                row |= {f"{name}_lower": float(lo), f"{name}_upper": float(hi)}
            row["n_converged"] = int(boot.ok.sum())
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs = {"law": law.name, "rung": rung, "n_resamples": n_resamples, "level": level}
    return table


def plot_rollout(table: pd.DataFrame, *, ax=None, absolute: bool = False):
    """The rollout's prediction error per rung (log x), with its bootstrap band where the table
    has one. Returns the axes; gids: ``"error"``, ``"error_band"``, ``"zero"``.

    Example:
        >>> import jaxscale as js
        >>> ax = plot_rollout(rollout(js.datasets.chinchilla(), min_rungs=30))
        >>> [line.get_gid() for line in ax.lines]
        ['zero', 'error']
        >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    from ._plot_style import axes_for, grid_style

    name = "mean_abs_rel_error" if absolute else "mean_rel_error"
    if name not in table.columns:
        raise ValueError(f"the rollout table has no column {name!r}; its columns: {list(table.columns)}")
    (ax,) = axes_for(ax, 1, figsize=(6.0, 4.0))
    shown = table[table[name].notna()]
    x = shown["rung"].to_numpy(np.float64)
    ax.axhline(0.0, color="0.5", lw=0.8, gid="zero")
    ax.plot(x, 100 * shown[name], "o-", color="C0", lw=1.8, gid="error", label="held-out rung")
    if f"{name}_lower" in shown.columns:
        lo, hi = 100 * shown[f"{name}_lower"], 100 * shown[f"{name}_upper"]
        ax.fill_between(x, lo, hi, color="C0", alpha=0.2, lw=0, gid="error_band")
    ax.set_xscale("log")
    ax.set_xlabel(f"predicted rung ({table.attrs.get('rung', 'rung')})")
    ax.set_ylabel(("mean |relative error|" if absolute else "mean relative error") + " (%)")
    ax.set_title(f"rollout: fit on smaller rungs, predict the next ({table.attrs.get('law', '')})")
    grid_style(ax)
    return ax


__all__: Sequence[str] = ("rollout", "plot_rollout")
