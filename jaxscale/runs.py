"""``Runs``: validated training-run measurements as plain arrays (no pandas here).

Example:
    >>> import numpy as np
    >>> from jaxscale.runs import Runs
    >>> runs = Runs.from_arrays({"N": [1e8, 1e9, 1e10], "D": [2e9, 2e10, 2e11]}, [3.1, 2.6, 2.2])
    >>> runs.n_points, runs.inputs
    (3, ('N', 'D'))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np


class Runs(NamedTuple):
    """Training runs: inputs ``x [P, k]`` (one column per law input), losses ``y [P]``.

    ``rows`` keeps the caller's row labels so that errors and reports can name them; ``groups``
    (optional) holds each run's group key as a tuple.
    """

    x: np.ndarray
    y: np.ndarray
    inputs: tuple[str, ...]
    rows: np.ndarray
    columns: tuple[str, ...]  # the source column behind each input, for messages
    groups: np.ndarray | None = None  # optional group key (a tuple) per run, from read_runs(..., group=...)
    group_columns: tuple[str, ...] = ()  # the columns behind each group key

    @property
    def n_points(self) -> int:
        return int(self.y.shape[0])

    @staticmethod
    def from_arrays(
        inputs: Mapping[str, Sequence[float]],
        loss: Sequence[float],
        *,
        rows: Sequence | None = None,
        columns: Mapping[str, str] | None = None,
        loss_column: str = "loss",
        allow_zero: bool = False,
    ) -> Runs:
        """Build and validate runs from arrays; raises ``ValueError`` naming the bad rows.
        ``allow_zero``: the fitted values may be 0 (accuracies; fit them with ``scale="natural"``)."""
        names = tuple(inputs)
        cols = tuple((columns or {}).get(n, n) for n in names)
        y = _as_float(loss, loss_column)
        x = np.stack([_as_float(inputs[n], c) for n, c in zip(names, cols, strict=True)], axis=-1) if names else None
        if x is None or x.shape[0] != y.shape[0]:
            raise ValueError(f"every input needs one value per run ({y.shape[0]} losses)")
        labels = np.arange(y.shape[0]) if rows is None else np.asarray(rows)
        for j, c in enumerate(cols):
            check_positive_finite(x[:, j], c, labels)
        check_positive_finite(y, loss_column, labels, allow_zero=allow_zero)
        return Runs(x, y, names, labels, cols)

    def log_inputs(self) -> np.ndarray:
        return np.log(self.x)

    def log_loss(self) -> np.ndarray:
        """``log y`` (``-inf`` for the zeros that ``allow_zero`` lets through)."""
        with np.errstate(divide="ignore"):
            return np.log(self.y)


def _as_float(values, column: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"column {column!r} has non-numeric values: convert it to numbers first") from None


class RowNames(NamedTuple):
    """How error messages name runs: ``labels`` (one per run) after ``noun``, then ``where``.

    Runs read from a file are named by the file's line numbers (``lines 4, 7 of runs.csv``,
    the header being line 1); runs from a DataFrame by its index labels (``rows 2, 5``, with
    ``note`` saying so at the end of the message).
    """

    labels: np.ndarray
    noun: str = "rows"
    where: str = ""
    note: str = ""

    def __call__(self, bad: np.ndarray) -> str:
        shown = ", ".join(str(v) for v in self.labels[bad][:5])
        more = f" and {int(bad.sum()) - 5} more" if bad.sum() > 5 else ""
        return f"{self.noun} {shown}{more}{self.where}"


def _names(labels: np.ndarray | RowNames) -> RowNames:
    return labels if isinstance(labels, RowNames) else RowNames(np.asarray(labels))


def describe_rows(labels: np.ndarray | RowNames, bad: np.ndarray) -> str:
    return _names(labels)(bad)


def check_positive_finite(
    values: np.ndarray, column: str, labels: np.ndarray | RowNames, hint: str = "", *, allow_zero: bool = False
) -> None:
    """Raise naming the rows of missing, non-finite or non-positive ``values`` (``hint`` ends the
    second); ``allow_zero``: zeros pass (a fitted accuracy or error rate, on the natural scale)."""
    names = _names(labels)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(
            f"column {column!r} has {int(bad.sum())} missing or non-finite values ({names(bad)}): "
            f"drop those runs or fill them in{names.note}"
        )
    if allow_zero:
        bad = values < 0
        if bad.any():
            raise ValueError(f"column {column!r} has {int(bad.sum())} negative values ({names(bad)}){names.note}")
        return
    bad = values <= 0
    if bad.any():
        raise ValueError(
            f"column {column!r} has {int(bad.sum())} non-positive values ({names(bad)}): "
            f"scaling laws are fitted in log space and need values > 0{hint}{names.note}"
        )
