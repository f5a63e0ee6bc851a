"""The compute multiplier between two fitted variants: how much compute one saves to reach
the other's loss.

At each budget C, the baseline's compute-optimal loss L_base*(C) is the target; the variant
reaches it at the budget C_var with L_var*(C_var) = L_base*(C) (found on a fine log grid of
budgets, L* falling with C). The multiplier is ``C / C_var``: above 1 the variant is more
compute-efficient (marin-community/marin #8096's "effective speedup"). With bootstrap results,
resample ``i`` of one is paired with resample ``i`` of the other (independent fits) and the
bands are percentiles over the pairs where both converged.

A variant whose law is the baseline's with N and D scaled by s and t, L_var(N, D) =
L_base(sN, tD), has L_var*(C) = L_base*(stC) under C = 6ND: a multiplier of exactly st at every
budget (the test's known case).

Example:
    >>> import jaxscale as js
    >>> base = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    >>> better = {**base, "A": 406.4 * 2.0**-0.34, "B": 410.7 * 1.5**-0.28}  # s = 2, t = 1.5
    >>> table = compute_multiplier(base, better, [1e21, 1e23], law="chinchilla")
    >>> [round(float(m), 6) for m in table["multiplier"]]
    [3.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import checks
from .frontier import optimal_losses

GRID_SPAN = 12.0  # decades searched either side of each budget for the variant's equal loss
GRID_PER_DECADE = 400  # log-grid points per decade (bands interpolate on it: ~1e-7 relative; the point is polished)


def _invert(losses: np.ndarray, log_grid: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per row ``[n, G]`` of frontier losses on ``log_grid``, the log budget where the loss
    equals each target ``[n, K]``: +inf where the row's losses stay above it (the variant never
    gets there: a multiplier of 0), -inf where they are below it already at the grid's
    smallest budget (a multiplier beyond the grid), NaN where the row has no frontier."""
    out = np.full(targets.shape, np.nan)
    for i, row in enumerate(losses):
        ok = np.isfinite(row)
        if ok.sum() < 2:
            continue
        x, y = log_grid[ok][::-1], row[ok][::-1]  # increasing loss for np.interp
        if np.any(np.diff(y) <= 0):  # not monotone: keep its monotone (running-max) part
            keep = np.concatenate([[True], np.diff(np.maximum.accumulate(y)) > 0])
            x, y = x[keep], y[keep]
        t = targets[i]
        inside = (t >= y[0]) & (t <= y[-1])
        out[i, inside] = np.interp(t[inside], y, x)
        out[i, t < y[0]], out[i, t > y[-1]] = np.inf, -np.inf
    return out


def _polish(variant, log_var: np.ndarray, targets: np.ndarray, law, inputs, steps: int = 3) -> np.ndarray:
    """The point estimate's budgets refined by secant steps on the exact frontier loss (the grid's
    interpolation leaves ~1e-7 relative error; the bands keep it)."""
    ok = np.isfinite(log_var)
    x = log_var[ok]
    if not x.size:
        return log_var
    h = 1e-4
    for _ in range(steps):
        _, at, _ = optimal_losses(variant, np.exp(np.concatenate([x, x + h])), law=law, **inputs)
        f, f_h = at[0, : x.size] - targets[ok], at[0, x.size :] - targets[ok]
        slope = (f_h - f) / h
        x = np.where(np.isfinite(slope) & (slope != 0), x - f / np.where(slope != 0, slope, 1.0), x)
    out = log_var.copy()
    out[ok] = x
    return out


def compute_multiplier(
    baseline,
    variant,
    compute: Sequence[float],
    *,
    law=None,
    level: float = 0.95,
    **inputs: float,
) -> pd.DataFrame:
    """The variant's compute multiplier over the baseline at each budget (DataFrame).

    Args:
        baseline, variant: each a :class:`~jaxscale.FitResult`, a
            :class:`~jaxscale.BootstrapResult` (bands) or a dict of natural parameters (with
            ``law=...``; e.g. two rows of a :func:`~jaxscale.fit_groups` table).
        compute: the baseline's budgets C (FLOPs).
        level: of the percentile bands (bootstrap results on both sides).
        inputs: the law's other inputs held fixed, as :func:`~jaxscale.frontier` takes them.

    Returns:
        One row per budget: ``compute``, ``loss`` (the baseline's compute-optimal loss there),
        ``variant_compute`` (where the variant reaches it), ``multiplier`` (compute /
        variant_compute) with ``multiplier_lower``/``_upper`` where both sides carry resamples
        (a pair whose variant never reaches the loss counts as 0: ``unreached_fraction``), and
        ``status``: ``"ok"``; ``"unreachable"`` where the variant's loss never gets that low
        within 12 decades of budgets (e.g. its irreducible loss E is above the target:
        multiplier 0); ``"beyond_grid"`` where it is lower already 12 decades below (multiplier inf).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95); got {level}")
    compute = checks.check_budgets("compute", compute)
    log_c = np.log(compute)
    span = GRID_SPAN * np.log(10)
    log_grid = np.linspace(log_c.min() - span, log_c.max() + span, int(GRID_PER_DECADE * (2 * GRID_SPAN + 1)) + 1)
    _, base_point, base_draws = optimal_losses(baseline, compute, law=law, **inputs)
    _, var_point, var_draws = optimal_losses(variant, np.exp(log_grid), law=law, **inputs)
    log_var = _polish(variant, _invert(var_point, log_grid, base_point)[0], base_point[0], law, inputs)
    with np.errstate(over="ignore"):
        table = pd.DataFrame(
            {
                "compute": compute,
                "loss": base_point[0],
                "variant_compute": np.exp(log_var),
                "multiplier": np.exp(log_c - log_var),
            }
        )
    if base_draws is not None and var_draws is not None:
        n = min(len(base_draws), len(var_draws))
        if n == 0:
            raise ValueError("no bootstrap resample converged on one side: no band can be computed")
        with np.errstate(over="ignore"):
            pairs = np.exp(log_c[None] - _invert(var_draws[:n], log_grid, base_draws[:n]))
        tail = 100 * (1 - level) / 2
        with np.errstate(invalid="ignore"):
            lo, hi = np.nanpercentile(pairs, [tail, 100 - tail], axis=0)
        table["multiplier_lower"], table["multiplier_upper"] = lo, hi
        # Pairs where the variant never reaches the baseline's loss count as a multiplier of 0.
        table["unreached_fraction"] = np.mean(pairs == 0, axis=0)
    table["status"] = np.select([np.isfinite(log_var), log_var == np.inf], ["ok", "unreachable"], "beyond_grid")
    return table
