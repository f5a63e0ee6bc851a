"""Picking rows by a pandas query string or a boolean mask, with errors that say what to change.

``where=`` everywhere (``read_runs``, ``isoflop``, ``isoflop_points``, the CLI's ``--where``
and ``--train``) goes through :func:`select_rows`: a bad query is named with the columns and a
plain-words reason (a single ``=``, ``&&``, a misspelled column, an open bracket).

Example:
    >>> import pandas as pd
    >>> select_rows(pd.DataFrame({"N": [1e8, 1e9]}), "N > 5e8").index.tolist()
    [1]
    >>> try:
    ...     select_rows(pd.DataFrame({"N": [1e8]}), "N = 1e8")
    ... except ValueError as err:
    ...     print(str(err)[:81])
    where='N = 1e8' could not be evaluated: a single '=' assigns rather than compares
"""

from __future__ import annotations

import re
import tokenize

import numpy as np
import pandas as pd


def select_rows(df: pd.DataFrame, where) -> pd.DataFrame:
    """Rows picked by a pandas query string or a boolean mask; the original index labels are kept."""
    if isinstance(where, str):
        try:
            picked = df.query(where)
        except Exception as err:  # pandas' own words rarely say what to change: say it plainly
            raise ValueError(
                f"where={where!r} could not be evaluated: {_query_problem(where, err)}. "
                f"The columns are {list(df.columns)}; use a pandas query over them, e.g. where='tokens > 1e9'"
                + _backtick_hint(df.columns)
            ) from err
        if not isinstance(picked, pd.DataFrame):
            raise ValueError(
                f"where={where!r} does not select rows: use a condition over the columns {list(df.columns)}, "
                "e.g. where='tokens > 1e9'"
            )
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


_ASSIGN = re.compile(r"(?<![=!<>])=(?!=)")  # a single '=', not part of ==, !=, <= or >=
_QUOTED = re.compile(r"('[^']*'|\"[^\"]*\"|`[^`]*`)")  # quoted strings and `column names`


def _query_problem(where: str, err: Exception) -> str:
    """What went wrong with a query string, in plain words (pandas' own message as the last resort)."""
    parts = _QUOTED.split(where)  # odd positions are quoted: an '=' there is data
    fixed = "".join(part if i % 2 else _ASSIGN.sub("==", part) for i, part in enumerate(parts))
    if fixed != where:
        return f"a single '=' assigns rather than compares; to compare, write where={fixed!r}"
    bare = "".join(parts[::2])
    if "&&" in bare or "||" in bare:
        return "'&&' and '||' are not Python: join conditions with 'and' and 'or'"
    undefined = re.search(r"name '([^']+)' is not defined", str(err))
    if undefined:
        return f"it names {undefined.group(1)!r}, which is not a column (check its spelling)"
    if isinstance(err, SyntaxError):
        return f"it is not a valid expression ({err.msg})"
    if isinstance(err, tokenize.TokenError):
        return f"it is not a complete expression ({err.args[0]}): is a bracket or quote left open?"
    if isinstance(err, KeyError):
        return "it does not give True or False for each row: write a condition"
    return f"pandas says: {err}"


def _backtick_hint(columns) -> str:
    odd = [c for c in columns if not str(c).isidentifier()]
    return f" (a name such as {str(odd[0])!r} goes in backticks: `{odd[0]}` > 1)" if odd else ""
