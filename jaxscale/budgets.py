"""Which runs share an isoFLOP budget: the budget policy of Approach 2 (:func:`jaxscale.isoflop`).

Runs of one isoFLOP curve rarely log exactly the same compute: a trainer rounds steps to its
batch size, and counts embedding or attention FLOPs its own way. A budget is therefore one of

* ``"exact"`` (the default): runs with the exact same ``flops`` value;
* ``rtol``: runs whose compute lies within a relative tolerance of the smallest compute of its
  budget (sorted compute, a new budget opened where a run exceeds the budget's first by more
  than ``rtol``: a budget never spans more than a factor ``1 + rtol``, however densely the
  budgets are sampled);
* ``per_decade``: log-spaced bins, ``per_decade`` of them per factor of 10, centered on
  ``10**(j / per_decade)``;
* ``column``: runs with the same value of a column that names the budget (e.g. the budget in a
  run name; Marin's names are a third of 6ND, so the name is a label, not the compute).

Except for ``"exact"``, a budget's compute C is the geometric mean of its runs' compute, and
its runs' smallest and largest compute are reported with it.

Example:
    >>> import numpy as np
    >>> c = np.array([1.00e18, 1.02e18, 0.99e18, 3.0e18, 3.1e18])
    >>> b = assign(c, rtol=0.1)
    >>> b.label.tolist(), np.round(b.compute / 1e18, 3).tolist()
    ([0, 0, 0, 1, 1], [1.003, 1.003, 1.003, 3.05, 3.05])
    >>> assign(c, per_decade=5).label.tolist()
    [0, 0, 0, 1, 1]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd


class Budgets(NamedTuple):
    """Each run's budget: a label (0.. in order of compute within the call) and the budget's compute."""

    label: np.ndarray  # [P] int: runs with one label share a budget
    compute: np.ndarray  # [P] the budget's compute C, per run
    binning: dict[str, Any]  # how budgets were formed: {"method": ..., and its option}


def check_options(
    *, budget: str | None, rtol: float | None, per_decade: float | None, columns: pd.Index | None = None
) -> None:
    """At most one way to form budgets, with a sane value."""
    given = (("budget", budget), ("budget_rtol", rtol), ("bins_per_decade", per_decade))
    chosen = [name for name, value in given if value is not None]
    if len(chosen) > 1:
        raise ValueError(f"choose one way to form budgets: got {' and '.join(chosen)}")
    if rtol is not None and not (np.isfinite(rtol) and 0 < rtol < 1):
        raise ValueError(
            f"budget_rtol is a relative tolerance between 0 and 1 (0.1: runs within 10% of a budget's "
            f"smallest compute share it); got {rtol}"
        )
    if per_decade is not None and not (np.isfinite(per_decade) and per_decade > 0):
        raise ValueError(f"bins_per_decade must be > 0 (e.g. 10: bins a factor 10**0.1 = 1.26 wide); got {per_decade}")
    if budget is not None and columns is not None and budget not in columns:
        raise ValueError(f"budget column {budget!r} not found; available columns: {list(columns)}")


def assign(
    compute: np.ndarray,
    *,
    names: np.ndarray | None = None,
    rtol: float | None = None,
    per_decade: float | None = None,
) -> Budgets:
    """Each run's budget from its compute ``[P]`` (and, for the ``column`` method, ``names [P]``).

    Budgets are formed over all the runs given: call it once per group of an analysis.
    """
    compute = np.asarray(compute, dtype=np.float64)
    log_c = np.log(compute)
    if names is not None:
        label = pd.factorize(pd.Series(names), sort=True)[0]
        binning: dict[str, Any] = {"method": "column"}
    elif rtol is not None:
        label = _anchored(log_c, np.log1p(rtol))
        binning = {"method": "rtol", "rtol": float(rtol)}
    elif per_decade is not None:
        index = np.round(np.log10(compute) * per_decade).astype(np.int64)
        label = pd.factorize(index, sort=True)[0]
        binning = {"method": "per_decade", "per_decade": float(per_decade)}
    else:
        label = pd.factorize(compute, sort=True)[0]
        return Budgets(label, compute, {"method": "exact"})
    # The budget's compute: the geometric mean of its runs'.
    mean_log = np.bincount(label, weights=log_c) / np.bincount(label)
    return Budgets(label, np.exp(mean_log)[label], binning)


def _anchored(log_c: np.ndarray, width: float) -> np.ndarray:
    """Labels of anchored bins on sorted ``log_c``: a bin holds every value within ``width`` of its first."""
    order = np.argsort(log_c, kind="stable")
    label = np.empty(len(log_c), np.int64)
    current, start = -1, -np.inf
    for i in order:
        if log_c[i] > start + width + 1e-12:  # inclusive: 1.1 is within 10% of 1.0 despite rounding
            current, start = current + 1, log_c[i]
        label[i] = current
    return label
