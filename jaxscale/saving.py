"""Save results and load them later, without loss: fits, bootstraps, posteriors and group tables.

JSON keeps every float exactly (Python writes the shortest repr that reads back to the same
double) and non-finite values as the strings ``"nan"``, ``"inf"``, ``"-inf"``. A loaded fit
is a :class:`FitResult` again: it predicts and gives frontiers like the original. Laws are
saved by name; a law of your own must be registered (:func:`jaxscale.register`) or passed
as ``load(path, law=...)``.

A loaded file is trusted only after two checks, and refused with a ``ValueError`` that names
the file and the field otherwise:

- **Schema**: every field :func:`save` writes is present, of its type, and nothing else is;
  the shapes agree with the law (``theta`` has one value per fitted parameter, ``params``
  the law's natural names, a bootstrap's ``draws`` are ``[n, p]`` with ``n`` objectives and
  statuses); ``params`` equal ``law.to_natural(theta)`` (relative tolerance
  ``PARAMS_RTOL``); and a fit saved as converged has finite parameters.
- **Content hash** (format version 2): ``sha256`` is the SHA-256 of the document without
  that field, serialised canonically (:func:`content_hash`). An edit the schema cannot see
  (a step count, an objective, a draw) changes the hash, and the file is refused.

Version 1 files (written before the hash, by jaxscale up to 2026-12-04) have no hash; they
still load, after the schema check, since results saved then are worth keeping. What the
schema cannot see in them is not verified: save them again to add a hash.

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

from ._saved_schema import (
    FORMAT,
    HASH,
    PARAMS_RTOL,
    SPECIAL,
    SUPPORTED,
    VERSION,
    checked,
    content_hash,
    unfloat,
    unfloat_array,
)

__all__ = ["FORMAT", "HASH", "PARAMS_RTOL", "SUPPORTED", "VERSION", "content_hash", "load", "save"]
from .laws import Law
from .posterior_result import PosteriorResult
from .priors import Prior
from .results import BootstrapResult, FitResult


def _float(v: float) -> float | str:
    v = float(v)
    return v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))


def _floats(a) -> list:
    return [_floats(x) for x in a] if np.ndim(a) else _float(a)


def _plain(v):
    """Diagnostics as JSON: numbers through :func:`_float`, containers walked, text as it is."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, bool | str) or v is None:
        return v
    if isinstance(v, int | np.integer):
        return int(v)
    return _float(v)


def _unplain(v):
    if isinstance(v, dict):
        return {k: _unplain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_unplain(x) for x in v]
    return unfloat(v) if isinstance(v, str) and v in SPECIAL else v


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
        "loss": res.loss_fn,  # the loss function (the file keeps its key)
        "delta": _float(res.delta),
        "inert": list(res.inert),
        "unidentified": list(res.unidentified),
        "unidentified_reason": res.unidentified_reason,
        "min_curvature": _float(res.min_curvature),
        "condition": _float(res.condition),
        # The objective's other options, written only where they differ from the defaults, so
        # that files of default fits stay as earlier versions wrote them (and load there).
        **{k: v for k, v in _objective_options(res).items() if v != _OBJECTIVE_DEFAULTS[k]},
    }


_OBJECTIVE_DEFAULTS = {"scale": "log", "reduction": "sum", "overestimate_penalty": 1.0}


def _objective_options(res: FitResult) -> dict[str, Any]:
    return {"scale": res.scale, "reduction": res.reduction, "overestimate_penalty": float(res.overestimate_penalty)}


def _fit_from(doc: dict[str, Any], law: Law) -> FitResult:
    return FitResult(
        law=law,
        params={k: unfloat(doc["params"][k]) for k in law.natural},
        theta=unfloat_array(doc["theta"]),
        objective=unfloat(doc["objective"]),
        status=doc["status"],
        steps=int(doc["steps"]),
        grad_norm=unfloat(doc["grad_norm"]),
        n_points=int(doc["n_points"]),
        n_starts=int(doc["n_starts"]),
        n_candidates=int(doc["n_candidates"]),
        n_at_optimum=int(doc["n_at_optimum"]),
        fixed=tuple(doc["fixed"]),
        loss_fn=doc["loss"],
        delta=unfloat(doc["delta"]),
        # Absent from version 1 files (inert: from those saved before it was recorded).
        inert=tuple(doc.get("inert", ())),
        unidentified=tuple(doc.get("unidentified", ())),
        unidentified_reason=doc.get("unidentified_reason", ""),
        min_curvature=unfloat(doc.get("min_curvature", "nan")),
        condition=unfloat(doc.get("condition", "nan")),
        **{k: doc.get(k, default) for k, default in _OBJECTIVE_DEFAULTS.items()},
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
            values = [unfloat(v) for v in values]
        data[col["name"]] = pd.Series(values, dtype=col["dtype"] if col["dtype"] != "str" else None)
    return pd.DataFrame(data)


def save(result, path: str | os.PathLike) -> Path:
    """Write a :class:`FitResult`, :class:`BootstrapResult`, :class:`PosteriorResult` or group table
    (DataFrame) to ``path``.

    ``.json`` holds any of them (a posterior with every draw, its prior and its diagnostics); a
    table may also go to ``.csv`` or ``.parquet`` (Parquet needs pyarrow). Returns the path written.
    """
    path = _path(path)
    suffix = path.suffix.lower()
    if isinstance(result, FitResult | BootstrapResult | PosteriorResult):
        if suffix != ".json":
            raise ValueError(f"save a {type(result).__name__} as .json, not {suffix or 'no extension'!r}")
        if isinstance(result, FitResult):
            doc = {"kind": "fit", **_fit_doc(result)}
        elif isinstance(result, PosteriorResult):
            doc = _posterior_doc(result)
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
            # NaN as "nan", so that an empty string (e.g. vanished) reads back as itself.
            result.to_csv(path, index=False, na_rep="nan")
            return path
        if suffix == ".parquet":
            result.to_parquet(path, index=False)
            return path
        if suffix != ".json":
            raise ValueError(f"save a table as .json, .csv or .parquet, not {suffix or 'no extension'!r}")
        doc = {"kind": "table", **_table_doc(result)}
    else:
        raise TypeError(
            f"save takes a FitResult, BootstrapResult, PosteriorResult or DataFrame; got {type(result).__name__}"
        )
    # Hashed as it will read back (tuples as lists, numpy floats as floats).
    doc = json.loads(json.dumps({"format": FORMAT, "version": VERSION, **doc}))
    doc[HASH] = content_hash(doc)
    path.write_text(json.dumps(doc, indent=1))
    return path


def _posterior_doc(post: PosteriorResult) -> dict[str, Any]:
    prior = post.prior
    return {
        "kind": "posterior",
        "point": _fit_doc(post.point),
        "theta": _floats(post.theta),
        "sigma": _floats(post.sigma),
        "likelihood": post.likelihood,
        "nu": _float(post.nu),
        "delta": _float(post.delta),
        "seed": int(post.seed),
        "prior": {
            "names": list(prior.names),
            "kind": [int(k) for k in prior.kind],
            "a": _floats(prior.a),
            "b": _floats(prior.b),
            "log_coordinate": [bool(x) for x in prior.log_coordinate],
        },
        "diagnostics": _plain(post.diagnostics),
    }


def _posterior_from(doc: dict[str, Any], law: Law) -> PosteriorResult:
    prior = doc["prior"]
    return PosteriorResult(
        law=law,
        point=_fit_from(doc["point"], law),
        theta=unfloat_array(doc["theta"]),  # [chains, draws, p]: the schema checked the shapes
        sigma=unfloat_array(doc["sigma"]),
        likelihood=doc["likelihood"],
        prior=Prior(
            kind=np.asarray(prior["kind"], dtype=np.int64),
            a=unfloat_array(prior["a"]),
            b=unfloat_array(prior["b"]),
            log_coordinate=np.asarray(prior["log_coordinate"], dtype=bool),
            names=tuple(prior["names"]),
        ),
        seed=int(doc["seed"]),
        diagnostics=_unplain(doc["diagnostics"]),
        nu=unfloat(doc["nu"]),
        delta=unfloat(doc["delta"]),
    )


def _path(path) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a file name (str or pathlib.Path); got {type(path).__name__}")
    return Path(path)


def _no_constant(constant: str):
    raise ValueError(f"{constant} is not JSON (jaxscale.save writes non-finite numbers as 'nan', 'inf', '-inf')")


def load(path: str | os.PathLike, *, law: Law | str | None = None):
    """Read what :func:`save` wrote: a FitResult, BootstrapResult, PosteriorResult or DataFrame.

    A JSON file is checked first (schema, then content hash; see the module docstring) and
    refused with a ``ValueError`` naming the file and the field if it is not as saved.
    """
    path = _path(path)
    if law is not None and not isinstance(law, str | Law):
        raise TypeError(f"law must be a law name or a Law (or None: the saved name); got {type(law).__name__}")
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
    name = repr(str(path))
    try:
        doc = json.loads(path.read_text(), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{name} is not a JSON file written by jaxscale.save: {err}") from None
    kind, found = checked(doc, name, law)
    if kind == "fit":
        return _fit_from(doc, found)
    if kind == "posterior":
        return _posterior_from(doc, found)
    if kind == "bootstrap":
        point = _fit_from(doc["point"], found)
        return BootstrapResult(
            law=found,
            point=point,
            draws=unfloat_array(doc["draws"]).reshape(len(doc["draws"]), len(found.natural)),
            objective=unfloat_array(doc["objective"]),
            status=np.asarray(doc["status"], dtype=np.int32),
            seed=int(doc["seed"]),
            cluster_count=doc["cluster_count"],
        )
    try:
        return _table_from(doc)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: field 'columns' holds values its dtypes cannot hold: {err}") from None
