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
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .queries import select_rows
from .runs import RowNames, Runs, check_positive_finite

_TEXT = (".csv", ".tsv", ".txt")  # delimited text: the separator is sniffed from the header line
_READERS = {".parquet": pd.read_parquet, ".json": pd.read_json, ".jsonl": None, **dict.fromkeys(_TEXT)}


def _sniff(path: Path, suffix: str) -> tuple[str, str]:
    """``(sep, decimal)`` for a delimited text file, from its header and first lines.

    A header with commas is read as CSV. One without, but with ``;``, tabs or ``|``, is read with
    that separator (``;`` files written in locales with a decimal comma get ``decimal=","`` when
    their data show one, e.g. ``3,14``). A ``.txt`` file separated only by spaces is read as such.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        head = [f.readline() for _ in range(6)]
    header = head[0]
    if "," in header or (suffix == ".tsv" and "\t" in header):
        return ("\t" if suffix == ".tsv" else ","), "."
    for sep in (";", "\t", "|"):
        if sep in header:
            comma = sep == ";" and any(re.search(r"\d,\d", line) for line in head[1:])
            return sep, "," if comma else "."
    if suffix == ".txt" and len(header.split()) > 1:
        return r"\s+", "."
    return ("\t" if suffix == ".tsv" else ","), "."


def read_table(source: str | os.PathLike) -> pd.DataFrame:
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise ValueError(f"cannot read {str(path)!r}: use a .csv, .tsv, .txt, .parquet, .json or .jsonl file")
    if path.is_dir():
        raise ValueError(f"cannot read {str(path)!r}: it is a folder, not a file")
    try:
        if suffix in _TEXT:
            sep, decimal = _sniff(path, suffix)
            df = pd.read_csv(path, sep=sep, decimal=decimal)
        elif suffix == ".jsonl":
            df = pd.read_json(path, lines=True)
        else:
            df = _READERS[suffix](path)
    except Exception as err:  # the reader's own message names the problem; say which file it was
        raise ValueError(f"could not read {str(path)!r} as {suffix[1:]}: {err}") from err
    df.attrs[_SOURCE] = str(path)  # so that read_runs names its rows by line, when given this table
    return df


_SOURCE = "jaxscale_source"


def _row_names(source, labels: np.ndarray) -> RowNames:
    """Messages name a file's runs by line (header = line 1), a DataFrame's by index label.

    A DataFrame that :func:`read_table` read (isoflop() and envelope() read files so) counts as its file.
    """
    if isinstance(source, pd.DataFrame):
        if source.attrs.get(_SOURCE) is None:
            return RowNames(labels, note=" (rows are named by the DataFrame's index labels)")
        source = source.attrs[_SOURCE]
    path = Path(source)
    suffix, name = path.suffix.lower(), path.name
    if suffix in _TEXT:
        return RowNames(labels + 2, "lines", f" of {name}")
    if suffix == ".jsonl":
        return RowNames(labels + 1, "lines", f" of {name}")
    return RowNames(labels + 1, "records", f" of {name}, counting from 1")


def _separator_hint(columns) -> str:
    """A hint when the table's only column names look like a whole header line."""
    for sep, name in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if any(sep in str(c) for c in columns):
            return (
                f". The column names contain {name}: the data look like they use {name} between values, not "
                "commas; save the file with commas, or read it with pd.read_csv(path, sep=...) and pass the DataFrame."
            )
    return ""


class UnitsWarning(UserWarning):
    """The runs' sizes look like they are in millions or billions rather than raw counts."""


class LossScaleWarning(UserWarning):
    """The loss column looks like log-losses, a perplexity or a percentage rather than a loss in nats."""


_UNITS_FLOOR = 1e4  # no trained model has fewer than 1e4 parameters or tokens
# Language-model losses in nats are ~1.7-4 at the scales people fit (Chinchilla 1.8-3.9; the
# fixtures' evaluation losses 1.2-11). Every loss below LOG_LOSS_CEILING fits the logs of such
# losses (ln 1.7 = 0.53, ln 4 = 1.39) far better than the losses. Above LOSS_CEILING a loss in nats
# would be worse than a uniform guess over e^25 ~ 7e10 tokens: a perplexity or a percentage.
LOG_LOSS_CEILING = 1.5
LOSS_CEILING = 25.0

# Keywords that name a law input besides those of the registered laws: the columns that
# isoflop() and envelope() read through read_runs.
_HELPER_INPUTS = ("flops", "tokens", "w")
_COMMON_INPUTS = ("N", "D", "x")  # the built-in laws' inputs (chinchilla, power): known without the registry
_OPTIONS = ("loss", "C", "flops_per_token", "where", "group", "min_points", "check_duplicates", "allow_zero", "inputs")


def _numeric(df: pd.DataFrame, col: str, names: RowNames) -> np.ndarray:
    numeric = pd.to_numeric(df[col], errors="coerce")
    bad = (numeric.isna() & df[col].notna()).to_numpy()
    if bad.any():
        raise ValueError(
            f"column {col!r} has {int(bad.sum())} non-numeric values ({names(bad)}, e.g. {df[col][bad].iloc[0]!r}): "
            f"convert them to numbers or drop those rows{names.note}"
        )
    return numeric.to_numpy(dtype="float64", na_value=float("nan"))


def python_value(v):
    return v.item() if isinstance(v, np.generic) else v


def row_keys(df: pd.DataFrame, by: Sequence[str]) -> np.ndarray:
    """Each row's values in columns ``by``, as a tuple of Python values (an object array).

    Column by column (``tolist`` gives Python scalars), not row by row: a million runs in a
    fraction of a second rather than seconds.

    Example:
        >>> row_keys(pd.DataFrame({"d": ["a", "b"], "s": np.array([1, 2])}), ["d", "s"]).tolist()
        [('a', 1), ('b', 2)]
    """
    columns = [[python_value(v) for v in df[c]] if df[c].dtype == object else df[c].tolist() for c in by]
    return np.fromiter(zip(*columns, strict=True), dtype=object, count=len(df))


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
    allow_zero: bool = False,
    inputs: Mapping[str, str] | None = None,
    **columns: str,
) -> Runs:
    """Read runs from a DataFrame or a CSV/TSV/TXT/Parquet/JSON/JSONL file and validate them.

    Keyword arguments name the column behind each law input, e.g. ``N="params", D="tokens"``
    (default: columns ``N`` and ``D``); ``loss`` names the loss column. A keyword must name an
    input of a registered law (``N``, ``D``, ``U``, ``M``, ``x``, ...): any other is refused, so
    that a typo does not become an input. Inputs of a law that is not registered go in
    ``inputs={"name": "column"}``. Raises ``ValueError`` naming the column and rows for missing
    columns, non-numeric, missing, non-finite or non-positive values, and for rows duplicated in
    every mapped column. Rows are named by the file's line numbers (the header is line 1; blank
    lines, which pandas skips, shift them) or, for a DataFrame, by its index labels.

    A text file's separator is sniffed from its header: commas, else ``;`` (with decimal commas
    when the data show them), tabs or ``|``.

    Options:
        C: a compute column (FLOPs) to use instead of tokens: ``D = C / (flops_per_token * N)``.
        where: a pandas query string or boolean mask picking the rows to use (labels are kept).
        group: column(s) whose values key each run's group, kept as ``Runs.groups``.
        min_points: the fewest runs a group (or, without ``group``, the whole set) may have.
        check_duplicates: raise on rows repeated in every mapped column (on by default; callers
            that group by other columns and check repeats themselves turn it off).
        allow_zero: the ``loss`` column may hold zeros (an accuracy or an error rate: fit it on
            the natural scale, ``scale="natural"``); no loss-scale warning then.

    Warns :class:`UnitsWarning` when every ``N`` or every ``D`` is below 1e4 (millions or billions?),
    and :class:`LossScaleWarning` when every loss is below 1.5 (log-losses?) or one is above 25
    (a perplexity or a percentage?).
    """
    if not isinstance(source, pd.DataFrame | str | os.PathLike):
        raise TypeError(_source_message(source))
    df = source if isinstance(source, pd.DataFrame) else read_table(source)
    columns = _check_keywords(columns, inputs)
    if C is not None:
        columns = columns or {"N": "N"}
        if "D" in columns:
            raise ValueError(
                f"got both D={columns['D']!r} and C={C!r}: give one of D (tokens) or C (compute, from which "
                "D = C / (flops_per_token * N) is derived)"
            )
        if "N" not in columns:
            raise ValueError(f"C={C!r} needs the parameter count to derive D: name it with read_runs(..., N='col')")
        fpt = float(flops_per_token)
        if not (np.isfinite(fpt) and fpt > 0):
            raise ValueError(f"flops_per_token must be a finite number > 0 (got {flops_per_token!r}), e.g. 6.0")
    else:
        columns = columns or {"N": "N", "D": "D"}
    wanted = {**columns, **({"C": C} if C is not None else {}), "loss": loss}
    same = [k for k in wanted if k != "loss" and wanted[k] == loss]
    if same:
        raise ValueError(
            f"input {same[0]} and the loss both read column {loss!r}: a law fitted to it would predict the loss "
            f"from itself. Name the input's own column, e.g. read_runs(..., {same[0]}='params')"
        )
    by = [] if group is None else [group] if isinstance(group, str) else list(group)
    missing = [col for col in wanted.values() if col not in df.columns]
    if missing:
        raise ValueError(
            f"missing column(s) {missing}; available columns: {list(df.columns)}. "
            f"Name yours with read_runs(..., {', '.join(f'{k}=...' for k in wanted)})" + _separator_hint(df.columns)
        )
    missing = [col for col in by if col not in df.columns]
    if missing:
        raise ValueError(
            f"missing group column(s) {missing}; available columns: {list(df.columns)}. "
            "Name yours with read_runs(..., group='col' or ['col', ...])" + _separator_hint(df.columns)
        )
    if min_points is not None and (isinstance(min_points, bool) or not isinstance(min_points, int | np.integer)):
        raise ValueError(f"min_points must be an integer (got {min_points!r}), e.g. min_points=6")
    if where is not None:
        df = select_rows(df, where)
        if len(df) == 0:
            raise ValueError(f"where={where!r} selected no rows: loosen the condition")
    labels = df.index.to_numpy()
    names = _row_names(source, labels)
    values = {name: _numeric(df, col, names) for name, col in wanted.items()}
    mapped = dict(columns)
    if C is not None:
        for col, v in ((columns["N"], values["N"]), (C, values["C"])):
            check_positive_finite(v, col, names)
        values["D"] = values["C"] / (fpt * values["N"])
        mapped["D"] = f"{C}/({fpt:g}*{columns['N']})"
    for name in (*mapped, "loss"):
        hint = f" (if {loss!r} holds log-losses, give the losses themselves: exp of it)" if name == "loss" else ""
        zero_ok = allow_zero and name == "loss"
        check_positive_finite(values[name], loss if name == "loss" else mapped[name], names, hint, allow_zero=zero_ok)
    runs = Runs.from_arrays(
        {k: values[k] for k in mapped},
        values["loss"],
        rows=labels,
        columns=mapped,
        loss_column=loss,
        allow_zero=allow_zero,
    )
    # envelope() and isoflop() group by columns they do not pass here and check repeats
    # themselves with their own messages, so they turn this generic check off.
    if check_duplicates:
        _check_duplicates(df, [*wanted.values(), *by], names, from_file=names.noun != "rows")
    _check_units(runs)
    if not allow_zero:  # an accuracy or error rate, not a loss: its scale is its own
        _check_loss_scale(runs.y, loss)
    if by:
        _check_group_labels(df, by, names)
        runs = runs._replace(groups=row_keys(df, by), group_columns=tuple(by))
    if min_points is not None:
        _check_min_points(runs, int(min_points))
    return runs


def read_weights(source: pd.DataFrame | str | os.PathLike, column: str, *, where=None) -> np.ndarray:
    """Per-run weights from ``column`` of ``source``, in the order :func:`read_runs` gives the
    runs of the same ``source`` and ``where``: finite and >= 0, or a ``ValueError`` naming the
    rows (a weight of 0 leaves a run out).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"N": [1e8, 1e9], "D": [1e9, 1e10], "loss": [3.0, 2.5], "w": [1.0, 0.5]})
        >>> read_weights(df, "w").tolist()
        [1.0, 0.5]
    """
    df = source if isinstance(source, pd.DataFrame) else read_table(source)
    if column not in df.columns:
        raise ValueError(
            f"missing weights column {column!r}; available columns: {list(df.columns)}. Name the column "
            "that holds one non-negative weight per run" + _separator_hint(df.columns)
        )
    if where is not None:
        df = select_rows(df, where)
    names = _row_names(source, df.index.to_numpy())
    w = _numeric(df, column, names)
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        raise ValueError(
            f"column {column!r} has {int(bad.sum())} weights that are missing, infinite or negative "
            f"({names(bad)}, e.g. {float(w[bad][0])!r}): a weight must be a number >= 0 "
            f"(0 leaves a run out){names.note}"
        )
    return w


def _source_message(source) -> str:
    what = type(source).__module__ + "." + type(source).__qualname__
    if isinstance(source, np.ndarray):
        what = f"a numpy array of shape {source.shape}"
    elif isinstance(source, Runs):
        what = "a Runs (it is already read: pass it to fit, bootstrap or validate directly)"
    return (
        f"runs must be a path to a .csv/.tsv/.txt/.parquet/.json/.jsonl file (str or pathlib.Path), a pandas "
        f"DataFrame, or (for fit, bootstrap, validate) a jaxscale Runs; got {what}. Give arrays their "
        "meaning: js.Runs.from_arrays({'N': n, 'D': d}, loss) or pd.DataFrame(arr, columns=['N', 'D', 'loss'])"
    )


def _check_keywords(columns: dict[str, str], inputs: Mapping[str, str] | None) -> dict[str, str]:
    """The input -> column mapping, refusing keywords that name no law input (typos).

    The registry (which imports JAX) is consulted only for a name that is not a common input, so
    that reading runs and its errors need no JAX.
    """
    unknown = [k for k in columns if k not in _COMMON_INPUTS and k not in _HELPER_INPUTS]
    if unknown:
        from .laws import registered_laws

        known = dict.fromkeys(n for law in registered_laws() for n in law.inputs)
        unknown = [k for k in unknown if k not in known]
    if unknown:
        raise TypeError(
            f"read_runs got unknown keyword(s) {unknown}. Law inputs: {', '.join(known)} "
            f"(e.g. N='params', D='tokens'); options: {', '.join(_OPTIONS)}. A law of your own that is not "
            "registered names its inputs with inputs={'name': 'column'}"
        )
    bad = {k: v for k, v in {**columns, **(inputs or {})}.items() if not isinstance(v, str)}
    if bad:
        k, v = next(iter(bad.items()))
        raise TypeError(f"{k}= names a column and must be a string; got {v!r}")
    return {**columns, **dict(inputs or {})}


def repeated_rows(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """``[rows]`` whether a row's values in every column of ``cols`` are those of another row:
    ``df.duplicated(subset=cols, keep=False)``, its equality (NaN equal to NaN, -0.0 to 0.0).

    Numeric columns are hashed together as arrays and only rows whose hash repeats are compared
    by pandas (a repeat always repeats its hash): a million runs in a fraction of the time
    of pandas' factorizing every column of every row.

    Example:
        >>> df = pd.DataFrame({"N": [1.0, 2.0, 1.0, -0.0, 0.0], "g": ["a", "a", "a", "b", "b"]})
        >>> repeated_rows(df, ["N", "g"]).tolist()
        [True, False, True, True, True]
    """
    mixed = np.zeros(len(df), dtype=np.uint64)
    for col in cols:
        v = df[col].to_numpy()
        if v.dtype.kind == "f":
            v = v.astype(np.float64) + 0.0  # -0.0 becomes 0.0
            bits = np.where(np.isnan(v), np.float64(np.nan), v).view(np.uint64)
        elif v.dtype.kind in "iub":
            bits = v.astype(np.int64).view(np.uint64)
        else:  # pandas' own codes: its equality for objects, strings, categories
            bits = pd.factorize(df[col])[0].astype(np.int64).view(np.uint64)
        mixed = (mixed ^ bits) * np.uint64(0x9E3779B97F4A7C15)  # wraps modulo 2**64, silently for arrays
        mixed ^= mixed >> np.uint64(29)
    maybe = pd.Series(mixed).duplicated(keep=False).to_numpy().copy()
    if maybe.any():
        maybe[maybe] = df.loc[maybe, cols].duplicated(keep=False).to_numpy()
    return maybe


def _check_duplicates(df: pd.DataFrame, cols: list[str], names: RowNames, *, from_file: bool) -> None:
    """Raise on rows repeated in every column of ``cols``, counting the surplus copies.

    The message counts the rows that repeat an earlier one (the copies to delete), then every
    row of the repeated sets, and names the first of those.
    """
    cols = list(dict.fromkeys(cols))
    every = repeated_rows(df, cols)
    if not every.any():
        return
    copies = int(df.duplicated(subset=cols, keep="first").sum())
    n, sets, noun = int(every.sum()), int(every.sum()) - copies, names.noun
    one = noun[:-1] if noun.endswith("s") else noun
    repeat = f"{copies} {one} repeats an earlier {one}" if copies == 1 else f"{copies} {noun} repeat earlier {noun}"
    fix = "delete the repeated lines" if from_file else f"drop the copies with df.drop_duplicates(subset={cols})"
    raise ValueError(
        f"{repeat} in every column {cols} ({n} {noun} in {sets} {'set' if sets == 1 else 'sets'}: {names(every)}): "
        f"{fix}, or keep them with read_runs(..., check_duplicates=False) if the repeats are meant (runs that "
        f"differ only in loss, e.g. seeds, are fine){names.note}"
    )


def _check_loss_scale(y: np.ndarray, loss: str) -> None:
    if y.size == 0:
        return
    if np.all(y < LOG_LOSS_CEILING):
        warnings.warn(
            f"every value of column {loss!r} is below {LOG_LOSS_CEILING:g} (largest {y.max():.4g}): is it already "
            "the log of the loss? jaxscale takes losses (in nats, usually 1.7-4 for language models) and fits their "
            "logs itself; give exp of the column. If these are the losses you mean to fit (a very low loss, an "
            "error rate), ignore this warning",
            LossScaleWarning,
            stacklevel=3,
        )
    elif np.any(y > LOSS_CEILING):
        warnings.warn(
            f"column {loss!r} has {int(np.sum(y > LOSS_CEILING))} values above {LOSS_CEILING:g} (largest "
            f"{y.max():.4g}): a loss in nats that high is worse than a uniform guess over e^25 (7e10) tokens. Is it a "
            "perplexity (give its log) or a percentage (divide by 100)? If these are the values you mean to fit, "
            "ignore this warning",
            LossScaleWarning,
            stacklevel=3,
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
                f"millions or billions? Convert to raw counts, e.g. {col!r} * 1e9, or the fitted law is off",
                UnitsWarning,
                stacklevel=3,
            )


def _check_group_labels(df: pd.DataFrame, by: list[str], names: RowNames) -> None:
    for col in by:
        bad = df[col].isna().to_numpy()
        if bad.any():
            raise ValueError(
                f"group column {col!r} has {int(bad.sum())} missing values ({names(bad)}): "
                f"fill them in or drop those rows{names.note}"
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
