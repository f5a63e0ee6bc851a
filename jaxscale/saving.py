"""Save results and load them later, without loss: fits, bootstraps and group tables.

JSON keeps every float exactly (Python writes the shortest repr that reads back to the same
double) and non-finite values as the strings ``"nan"``, ``"inf"``, ``"-inf"``. A loaded fit
is a :class:`FitResult` again: it predicts and gives frontiers like the original. Laws are
saved by name; a law of your own must be registered (:func:`jaxscale.register`) or passed
as ``load(path, law=...)``.

Example:
    >>> import tempfile, pathlib
    >>> import jaxscale as js
    >>> res = js.fit(js.datasets.chinchilla())
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "fit.json"
    >>> _ = js.save(res, path)
    >>> js.load(path).params == res.params
    True
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .bootstrap import BootstrapResult
from .fit import FitResult
from .laws import Law, get_law

FORMAT = "jaxscale"
VERSION = 1
_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _float(v: float) -> float | str:
    v = float(v)
    return v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))


def _unfloat(v: float | str) -> float:
    return _SPECIAL[v] if isinstance(v, str) else float(v)


def _floats(a) -> list:
    return [_floats(x) for x in a] if np.ndim(a) else _float(a)


def _array(values) -> np.ndarray:
    def walk(v):
        return [walk(x) for x in v] if isinstance(v, list) else _unfloat(v)

    return np.asarray(walk(values), dtype=np.float64)


def _fit_doc(res: FitResult) -> dict[str, Any]:
    return {
        "law": res.law.name,
        "law_params": list(res.law.params),
        "params": {k: _float(v) for k, v in res.params.items()},
        "theta": _floats(res.theta),
        "objective": _float(res.objective),
        "status": res.status,
        "steps": int(res.steps),
        "grad_norm": _float(res.grad_norm),
        "n_points": int(res.n_points),
        "n_starts": int(res.n_starts),
        "n_candidates": int(res.n_candidates),
        "n_at_optimum": int(res.n_at_optimum),
        "fixed": list(res.fixed),
        "loss": res.loss,
        "delta": _float(res.delta),
        "inert": list(res.inert),
    }


def _resolve_law(doc: dict[str, Any], law: Law | str | None) -> Law:
    try:
        found = get_law(law if law is not None else doc["law"])
    except ValueError as err:
        raise ValueError(
            f"the saved result uses law {doc['law']!r}, which is not registered here: "
            "register it first with jaxscale.register(law), or pass load(path, law=law)"
        ) from err
    if list(found.params) != doc["law_params"]:
        raise ValueError(
            f"law {found.name!r} fits parameters {list(found.params)} but the saved result has "
            f"{doc['law_params']}: pass the law it was fitted with, load(path, law=...)"
        )
    return found


def _fit_from(doc: dict[str, Any], law: Law | str | None) -> FitResult:
    return FitResult(
        law=_resolve_law(doc, law),
        params={k: _unfloat(v) for k, v in doc["params"].items()},
        theta=_array(doc["theta"]),
        objective=_unfloat(doc["objective"]),
        status=doc["status"],
        steps=int(doc["steps"]),
        grad_norm=_unfloat(doc["grad_norm"]),
        n_points=int(doc["n_points"]),
        n_starts=int(doc["n_starts"]),
        n_candidates=int(doc["n_candidates"]),
        n_at_optimum=int(doc["n_at_optimum"]),
        fixed=tuple(doc["fixed"]),
        loss=doc["loss"],
        delta=_unfloat(doc["delta"]),
        inert=tuple(doc.get("inert", ())),  # absent from files saved before it was recorded
    )


def _table_doc(table) -> dict[str, Any]:
    columns = []
    for name in table.columns:
        col = table[name]
        kind = col.dtype.kind
        if kind == "f":
            values = [_float(v) for v in col]
        elif kind in "iub":
            values = [v.item() for v in col.to_numpy()]
        else:
            values = [v.item() if isinstance(v, np.generic) else v for v in col]
        columns.append({"name": str(name), "dtype": str(col.dtype), "values": values})
    return {"columns": columns}


def _table_from(doc: dict[str, Any]):
    import pandas as pd

    data = {}
    for col in doc["columns"]:
        values = col["values"]
        if col["dtype"].startswith("float"):
            values = [_unfloat(v) for v in values]
        data[col["name"]] = pd.Series(values, dtype=col["dtype"] if col["dtype"] != "str" else None)
    return pd.DataFrame(data)


def save(result, path: str | os.PathLike) -> Path:
    """Write a :class:`FitResult`, :class:`BootstrapResult` or group table (DataFrame) to ``path``.

    ``.json`` holds any of them; a table may also go to ``.csv`` or ``.parquet`` (Parquet
    needs pyarrow). Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if isinstance(result, FitResult | BootstrapResult):
        if suffix != ".json":
            raise ValueError(f"save a {type(result).__name__} as .json, not {suffix or 'no extension'!r}")
        if isinstance(result, FitResult):
            doc = {"kind": "fit", **_fit_doc(result)}
        else:
            doc = {
                "kind": "bootstrap",
                "point": _fit_doc(result.point),
                "draws": _floats(result.draws),
                "objective": _floats(result.objective),
                "status": [int(s) for s in result.status],
                "seed": int(result.seed),
                "cluster_count": result.cluster_count,
            }
    elif hasattr(result, "to_csv") and hasattr(result, "columns"):
        if suffix == ".csv":
            # NaN as "nan", so that an empty string (e.g. at_bound) reads back as itself.
            result.to_csv(path, index=False, na_rep="nan")
            return path
        if suffix == ".parquet":
            result.to_parquet(path, index=False)
            return path
        if suffix != ".json":
            raise ValueError(f"save a table as .json, .csv or .parquet, not {suffix or 'no extension'!r}")
        doc = {"kind": "table", **_table_doc(result)}
    else:
        raise TypeError(f"save takes a FitResult, BootstrapResult or DataFrame; got {type(result).__name__}")
    path.write_text(json.dumps({"format": FORMAT, "version": VERSION, **doc}, indent=1))
    return path


def load(path: str | os.PathLike, *, law: Law | str | None = None):
    """Read what :func:`save` wrote: a FitResult, a BootstrapResult or a DataFrame."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        import pandas as pd

        if suffix == ".csv":
            # pandas 3 parses floats exactly by default and deprecates the option.
            exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
            return pd.read_csv(path, keep_default_na=False, na_values=["nan"], **exact)
        return pd.read_parquet(path)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not a JSON file written by jaxscale.save: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} was not written by jaxscale.save (no 'format': 'jaxscale' field)")
    if doc.get("version", 0) > VERSION:
        raise ValueError(f"{str(path)!r} was written by a newer jaxscale (format {doc['version']}): upgrade jaxscale")
    kind = doc.get("kind")
    if kind == "fit":
        return _fit_from(doc, law)
    if kind == "bootstrap":
        point = _fit_from(doc["point"], law)
        return BootstrapResult(
            law=point.law,
            point=point,
            draws=_array(doc["draws"]).reshape(-1, len(point.law.natural)),
            objective=_array(doc["objective"]),
            status=np.asarray(doc["status"], dtype=np.int32),
            seed=int(doc["seed"]),
            cluster_count=doc["cluster_count"],
        )
    if kind == "table":
        return _table_from(doc)
    raise ValueError(f"{str(path)!r} holds an unknown kind of result {kind!r}")
