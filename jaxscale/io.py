"""The pandas edge: read training runs from files or DataFrames into validated :class:`Runs`.

Example:
    >>> import pandas as pd
    >>> from jaxscale.io import read_runs
    >>> df = pd.DataFrame({"params": [1e8, 1e9, 1e10], "tokens": [2e9, 2e10, 2e11], "loss": [3.1, 2.6, 2.2]})
    >>> read_runs(df, N="params", D="tokens").n_points
    3
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .runs import Runs, _check_positive_finite, _rows

_READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".json": pd.read_json, ".jsonl": None}


def _read_table(source: str | os.PathLike) -> pd.DataFrame:
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise ValueError(f"cannot read {str(path)!r}: use a .csv, .parquet, .json or .jsonl file")
    try:
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True)
        return _READERS[suffix](path)
    except Exception as err:  # the reader's own message names the problem; say which file it was
        raise ValueError(f"could not read {str(path)!r} as {suffix[1:]}: {err}") from err


class UnitsWarning(UserWarning):
    """The runs' sizes look like they are in millions or billions rather than raw counts."""


_UNITS_FLOOR = 1e4  # no trained model has fewer than 1e4 parameters or tokens


def _select(df: pd.DataFrame, where) -> pd.DataFrame:
    """Rows picked by a pandas query string or a boolean mask; the original index labels are kept."""
    if isinstance(where, str):
        try:
            picked = df.query(where)
        except Exception as err:  # pandas names the problem; say which expression it was
            raise ValueError(
                f"where={where!r} could not be evaluated: {err}. "
                "Use a pandas query over the columns, e.g. where='tokens > 1e9'"
            ) from err
        if not isinstance(picked, pd.DataFrame):
            raise ValueError(f"where={where!r} does not select rows: use a condition, e.g. where='tokens > 1e9'")
        return picked
    if isinstance(where, pd.Series):
        if not where.index.equals(df.index):
            if where.index.has_duplicates or not df.index.isin(where.index).all():
                raise ValueError(
                    "where= mask's index does not match the runs' index: build it from the same DataFrame, "
                    "e.g. where=df['tokens'] > 1e9"
                )
            where = where.reindex(df.index)
        mask = where.to_numpy()
    else:
        mask = np.asarray(where)
    if mask.dtype != np.bool_:
        raise ValueError(
            f"where= mask must be boolean (got dtype {mask.dtype}): pass e.g. where=df['tokens'] > 1e9 "
            "or a pandas query string"
        )
    if mask.shape != (len(df),):
        raise ValueError(f"where= mask has shape {mask.shape} but there are {len(df)} rows: give one bool per row")
    return df[mask]


def _numeric(df: pd.DataFrame, col: str) -> np.ndarray:
    numeric = pd.to_numeric(df[col], errors="coerce")
    bad = numeric.isna() & df[col].notna()
    if bad.any():
        rows = list(df.index[bad][:5])
        raise ValueError(
            f"column {col!r} has {int(bad.sum())} non-numeric values (rows {rows}, e.g. {df[col][bad].iloc[0]!r}): "
            "convert them to numbers or drop those rows"
        )
    return numeric.to_numpy(dtype="float64", na_value=float("nan"))


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


def read_runs(
    source: pd.DataFrame | str | os.PathLike,
    *,
    loss: str = "loss",
    C: str | None = None,
    flops_per_token: float = 6.0,
    where=None,
    group: str | Sequence[str] | None = None,
    min_points: int | None = None,
    check_duplicates: bool = True,
    **inputs: str,
) -> Runs:
    """Read runs from a DataFrame or a CSV/Parquet/JSON/JSONL file and validate them.

    Keyword arguments name the column behind each law input, e.g. ``N="params", D="tokens"``
    (default: columns ``N`` and ``D``); ``loss`` names the loss column. Raises ``ValueError``
    naming the column and rows for missing columns, non-numeric, missing, non-finite or
    non-positive values, and for rows duplicated in every mapped column.

    Options:
        C: a compute column (FLOPs) to use instead of tokens: ``D = C / (flops_per_token * N)``.
        where: a pandas query string or boolean mask picking the rows to use (labels are kept).
        group: column(s) whose values key each run's group, kept as ``Runs.groups``.
        min_points: the fewest runs a group (or, without ``group``, the whole set) may have.
        check_duplicates: raise on rows repeated in every mapped column (on by default; callers
            that group by other columns and check repeats themselves turn it off).

    Warns :class:`UnitsWarning` when every ``N`` or every ``D`` is below 1e4 (millions or billions?).
    """
    df = source if isinstance(source, pd.DataFrame) else _read_table(source)
    if C is not None:
        inputs = inputs or {"N": "N"}
        if "D" in inputs:
            raise ValueError(
                f"got both D={inputs['D']!r} and C={C!r}: give one of D (tokens) or C (compute, from which "
                "D = C / (flops_per_token * N) is derived)"
            )
        if "N" not in inputs:
            raise ValueError(f"C={C!r} needs the parameter count to derive D: name it with read_runs(..., N='col')")
        fpt = float(flops_per_token)
        if not (np.isfinite(fpt) and fpt > 0):
            raise ValueError(f"flops_per_token must be a finite number > 0 (got {flops_per_token!r}), e.g. 6.0")
    else:
        inputs = inputs or {"N": "N", "D": "D"}
    wanted = {**inputs, **({"C": C} if C is not None else {}), "loss": loss}
    by = [] if group is None else [group] if isinstance(group, str) else list(group)
    missing = [col for col in wanted.values() if col not in df.columns]
    if missing:
        raise ValueError(
            f"missing column(s) {missing}; available columns: {list(df.columns)}. "
            f"Name yours with read_runs(..., {', '.join(f'{k}=...' for k in wanted)})"
        )
    missing = [col for col in by if col not in df.columns]
    if missing:
        raise ValueError(
            f"missing group column(s) {missing}; available columns: {list(df.columns)}. "
            "Name yours with read_runs(..., group='col' or ['col', ...])"
        )
    if min_points is not None and (isinstance(min_points, bool) or not isinstance(min_points, int | np.integer)):
        raise ValueError(f"min_points must be an integer (got {min_points!r}), e.g. min_points=6")
    if where is not None:
        df = _select(df, where)
        if len(df) == 0:
            raise ValueError(f"where={where!r} selected no rows: loosen the condition")
    labels = df.index.to_numpy()
    values = {name: _numeric(df, col) for name, col in wanted.items()}
    columns = dict(inputs)
    if C is not None:
        for col, v in ((inputs["N"], values["N"]), (C, values["C"])):
            _check_positive_finite(v, col, labels)
        values["D"] = values["C"] / (fpt * values["N"])
        columns["D"] = f"{C}/({fpt:g}*{inputs['N']})"
    runs = Runs.from_arrays(
        {k: values[k] for k in columns},
        values["loss"],
        rows=labels,
        columns=columns,
        loss_column=loss,
    )
    # envelope() and isoflop() group by columns they do not pass here and check repeats
    # themselves with their own messages, so they turn this generic check off.
    if check_duplicates:
        _check_duplicates(df, [*wanted.values(), *by], labels)
    _check_units(runs)
    if by:
        _check_group_labels(df, by, labels)
        keys = np.empty(len(df), dtype=object)
        keys[:] = [tuple(_py(v) for v in row) for row in df[by].itertuples(index=False, name=None)]
        runs = runs._replace(groups=keys, group_columns=tuple(by))
    if min_points is not None:
        _check_min_points(runs, int(min_points))
    return runs


def _check_duplicates(df: pd.DataFrame, cols: list[str], labels: np.ndarray) -> None:
    cols = list(dict.fromkeys(cols))
    dup = df.duplicated(subset=cols, keep=False).to_numpy()
    if dup.any():
        raise ValueError(
            f"{int(dup.sum())} runs repeat another run in every column {cols} ({_rows(labels, dup)}): "
            f"drop the copies with df.drop_duplicates(subset={cols}) "
            "(runs that differ only in loss, e.g. seeds, are fine)"
        )


def _check_units(runs: Runs) -> None:
    for name, what in (("N", "parameters"), ("D", "tokens")):
        if name not in runs.inputs or runs.n_points == 0:
            continue
        j = runs.inputs.index(name)
        if np.all(runs.x[:, j] < _UNITS_FLOOR):
            col = runs.columns[j]
            warnings.warn(
                f"every value of column {col!r} (input {name}) is below {_UNITS_FLOOR:g}: are the {what} given in "
                f"millions or billions? Convert to raw counts, e.g. df[{col!r}] * 1e9, or the fitted law is off",
                UnitsWarning,
                stacklevel=3,
            )


def _check_group_labels(df: pd.DataFrame, by: list[str], labels: np.ndarray) -> None:
    for col in by:
        bad = df[col].isna().to_numpy()
        if bad.any():
            raise ValueError(
                f"group column {col!r} has {int(bad.sum())} missing values ({_rows(labels, bad)}): "
                "fill them in or drop those rows"
            )


def _check_min_points(runs: Runs, k: int) -> None:
    if runs.groups is None:
        if runs.n_points < k:
            raise ValueError(f"{runs.n_points} runs; law needs at least {k}: add runs or loosen where=")
        return
    counts: dict = {}
    for key in runs.groups:
        counts[key] = counts.get(key, 0) + 1
    few = [f"group {key!r} has {n} runs" for key, n in counts.items() if n < k]
    if few:
        raise ValueError(
            f"{'; '.join(few)}; law needs at least {k}: add runs to those groups or leave them out with where="
        )
