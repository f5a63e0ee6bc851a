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
from pathlib import Path

import pandas as pd

from .runs import Runs

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


def read_runs(
    source: pd.DataFrame | str | os.PathLike,
    *,
    loss: str = "loss",
    **inputs: str,
) -> Runs:
    """Read runs from a DataFrame or a CSV/Parquet/JSON/JSONL file and validate them.

    Keyword arguments name the column behind each law input, e.g. ``N="params", D="tokens"``
    (default: columns ``N`` and ``D``); ``loss`` names the loss column. Raises ``ValueError``
    naming the column and rows for missing columns, non-numeric, missing, non-finite or
    non-positive values.
    """
    df = source if isinstance(source, pd.DataFrame) else _read_table(source)
    inputs = inputs or {"N": "N", "D": "D"}
    wanted = {**inputs, "loss": loss}
    missing = [col for col in wanted.values() if col not in df.columns]
    if missing:
        raise ValueError(
            f"missing column(s) {missing}; available columns: {list(df.columns)}. "
            f"Name yours with read_runs(..., {', '.join(f'{k}=...' for k in wanted)})"
        )
    values = {}
    for name, col in wanted.items():
        numeric = pd.to_numeric(df[col], errors="coerce")
        bad = numeric.isna() & df[col].notna()
        if bad.any():
            rows = list(df.index[bad][:5])
            raise ValueError(
                f"column {col!r} has {int(bad.sum())} non-numeric values (rows {rows}, e.g. {df[col][bad].iloc[0]!r}): "
                "convert them to numbers or drop those rows"
            )
        values[name] = numeric.to_numpy(dtype="float64", na_value=float("nan"))
    return Runs.from_arrays(
        {k: values[k] for k in inputs},
        values["loss"],
        rows=df.index.to_numpy(),
        columns=inputs,
        loss_column=loss,
    )
