"""The schema of a file :func:`jaxscale.save` writes, and its content hash (see :mod:`jaxscale.saving`).

:func:`checked` refuses a document, with a ``ValueError`` naming the file and the field(s),
unless every field save writes is present, of its type and alone; the shapes agree with the
law; ``params`` equal ``law.to_natural(theta)``; a fit saved as converged has finite
parameters; and (format 2) the content hash matches.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np

from . import checks
from .identify import RESAMPLE_STATUS_NAMES as CODES  # the solver's statuses and "unidentified"
from .laws import Law, get_law
from .objective import LOSSES, REDUCTIONS, SCALES
from .posterior_result import LIKELIHOODS
from .solver import CONVERGED, STATUS_NAMES

FORMAT = "jaxscale"
VERSION = 2  # 2: a content hash ("sha256"); 1 (no hash) still loads, see jaxscale.saving
SUPPORTED = (1, 2)
HASH = "sha256"
# params must equal law.to_natural(theta) to this relative tolerance (save writes them equal).
PARAMS_RTOL = 1e-12
SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def unfloat(v: float | str) -> float:
    return SPECIAL[v] if isinstance(v, str) else float(v)


def unfloat_array(values) -> np.ndarray:
    def walk(v):
        return [walk(x) for x in v] if isinstance(v, list) else unfloat(v)

    return np.asarray(walk(values), dtype=np.float64)


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


# What save writes, field by field, as (test, what was expected).
def _is_float(v) -> bool:
    return v in SPECIAL if isinstance(v, str) else checks.is_real(v)


def _is_count(v) -> bool:
    return checks.is_int(v) and v >= 0


def _list_of(test):
    return lambda v: isinstance(v, list) and all(test(x) for x in v)


_NUMBER = (_is_float, "a number (or 'nan', 'inf', '-inf')")
_COUNT = (_is_count, "an integer >= 0")
_NAMES = (_list_of(lambda x: isinstance(x, str)), "a list of names")
_FIT_FIELDS: dict[str, tuple] = {
    "law": (lambda v: isinstance(v, str), "a law name"),
    "law_params": _NAMES,
    "params": (
        lambda v: isinstance(v, dict) and all(_is_float(x) for x in v.values()),
        "an object of numbers by parameter name",
    ),
    "theta": (_list_of(_is_float), "a list of numbers"),
    "objective": _NUMBER,
    "status": (lambda v: v in CODES.values(), f"one of {sorted(CODES.values())}"),
    "steps": _COUNT,
    "grad_norm": _NUMBER,
    "n_points": _COUNT,
    "n_starts": _COUNT,
    "n_candidates": _COUNT,
    "n_at_optimum": _COUNT,
    "fixed": _NAMES,
    "loss": (lambda v: v in LOSSES, f"one of {list(LOSSES)}"),
    "delta": _NUMBER,
    "inert": _NAMES,
    "unidentified": _NAMES,
    "unidentified_reason": (lambda v: isinstance(v, str), "a string (why the runs do not determine them)"),
    "min_curvature": _NUMBER,
    "condition": _NUMBER,
    "scale": (lambda v: v in SCALES, f"one of {list(SCALES)}"),
    "reduction": (lambda v: v in REDUCTIONS, f"one of {list(REDUCTIONS)}"),
    "overestimate_penalty": (lambda v: _is_float(v) and v > 0, "a number > 0"),
}
_BOOT_FIELDS: dict[str, tuple] = {
    "point": (lambda v: isinstance(v, dict), "an object (the fit to all runs)"),
    "draws": (_list_of(_list_of(_is_float)), "a list of rows of numbers, [n resamples, p parameters]"),
    "objective": (_list_of(_is_float), "a list of numbers, one per resample"),
    "status": (
        _list_of(lambda x: checks.is_int(x) and x in CODES),
        f"a list of status codes {sorted(CODES)}",
    ),
    "seed": _COUNT,
    "cluster_count": (lambda v: v is None or (checks.is_int(v) and v >= 2), "null or an integer >= 2"),
}
_POSTERIOR_FIELDS: dict[str, tuple] = {
    "point": _BOOT_FIELDS["point"],
    "theta": (
        _list_of(_list_of(_list_of(_is_float))),
        "chains of draws of rows of numbers, [chains, draws, p] in the law's fitted coordinates",
    ),
    "sigma": (_list_of(_list_of(_is_float)), "chains of draws of numbers, [chains, draws]"),
    "likelihood": (lambda v: v in LIKELIHOODS, f"one of {list(LIKELIHOODS)}"),
    "nu": (lambda v: _is_float(v) and v > 0, "a number > 0"),
    "delta": (lambda v: _is_float(v) and v > 0, "a number > 0"),
    "seed": _COUNT,
    "prior": (lambda v: isinstance(v, dict), "an object {names, kind, a, b, log_coordinate}"),
    "diagnostics": (lambda v: isinstance(v, dict) and isinstance(v.get("status"), str), "an object with a 'status'"),
}
_PRIOR_FIELDS: dict[str, tuple] = {
    "names": _NAMES,
    "kind": (_list_of(lambda x: x in (0, 1)), "a list of 0 (normal) and 1 (log-normal)"),
    "a": (_list_of(_is_float), "a list of numbers"),
    "b": (_list_of(lambda x: _is_float(x) and x > 0), "a list of numbers > 0"),
    "log_coordinate": (_list_of(lambda x: isinstance(x, bool)), "a list of true/false"),
}
_TABLE_FIELDS: dict[str, tuple] = {
    "columns": (_list_of(lambda c: isinstance(c, dict)), "a list of column objects {name, dtype, values}"),
}
_COLUMN_FIELDS: dict[str, tuple] = {
    "name": (lambda v: isinstance(v, str), "a column name"),
    "dtype": (lambda v: isinstance(v, str), "a pandas dtype name"),
    "values": (lambda v: isinstance(v, list), "a list of values"),
}
_KINDS = {"fit": _FIT_FIELDS, "bootstrap": _BOOT_FIELDS, "posterior": _POSTERIOR_FIELDS, "table": _TABLE_FIELDS}
# Fields version 1 files may lack: recorded since (inert), or since version 2 (identifiability).
_OPTIONAL_IN_V1 = {"inert", "unidentified", "unidentified_reason", "min_curvature", "condition"}
# Written only where they differ from their defaults (jaxscale.saving), in any version.
_OPTIONAL_ALWAYS = {"scale", "reduction", "overestimate_penalty"}


def _shown(v) -> str:
    text = json.dumps(v) if not isinstance(v, float) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields(doc: dict, spec: dict, where: str, optional=frozenset(), allowed=frozenset()) -> list[str]:
    """Problems with ``doc``'s fields against ``spec`` (``where``: prefix naming the object)."""
    problems = [
        f"field {where + name!r} is missing (expected {spec[name][1]})"
        for name in spec
        if name not in doc and name not in optional
    ]
    problems += [
        f"field {where + name!r} is not one save writes" for name in doc if name not in spec and name not in allowed
    ]
    for name, (test, expected) in spec.items():
        if name in doc and not test(doc[name]):
            problems.append(f"field {where + name!r} should be {expected}; got {_shown(doc[name])}")
    return problems


def _fit_problems(doc: dict, law: Law, where: str) -> list[str]:
    """What the law says about a fit document that passed :func:`_fields`."""
    p, problems = law.n_params, []
    if sorted(doc["params"]) != sorted(law.natural):
        got = sorted(doc["params"])
        problems.append(
            f"field {where + 'params'!r} should name the parameters of law {law.name!r}, {list(law.natural)}; got {got}"
        )
    if len(doc["theta"]) != p:
        got = len(doc["theta"])
        problems.append(f"field {where + 'theta'!r} should hold {p} numbers ({list(law.params)}); got {got}")
    for name in ("fixed", "inert"):
        unknown = [n for n in doc.get(name, ()) if n not in law.natural]
        if unknown:
            problems.append(f"field {where + name!r} should name parameters of {list(law.natural)}; got {unknown}")
    if problems:
        return problems
    params = np.array([unfloat(doc["params"][n]) for n in law.natural])
    natural = law.to_natural(unfloat_array(doc["theta"]))
    same = np.isclose(params, natural, rtol=PARAMS_RTOL, atol=0.0, equal_nan=True)
    if not same.all():
        rows = zip(law.natural, params, natural, same, strict=True)
        shown = "; ".join(f"{n} is {float(a)!r} there, {float(b)!r} from theta" for n, a, b, ok in rows if not ok)
        problems.append(
            f"field {where + 'params'!r} should equal law.to_natural(theta) (relative tolerance {PARAMS_RTOL:g}); "
            f"they differ at {shown}"
        )
    if doc["status"] == STATUS_NAMES[CONVERGED] and not np.all(np.isfinite(params)):
        bad = [n for n, v in zip(law.natural, params, strict=True) if not np.isfinite(v)]
        problems.append(
            f"field {where + 'params'!r} has non-finite {bad} in a fit saved as converged "
            "(a fit with non-finite parameters has status 'nonfinite')"
        )
    return problems


def _boot_problems(doc: dict, law: Law) -> list[str]:
    n, p = len(doc["draws"]), len(law.natural)
    problems = [] if n >= 1 else ["field 'draws' should hold at least 1 resample; got none"]
    widths = sorted({len(row) for row in doc["draws"]})
    if widths and widths != [p]:
        problems.append(
            f"field 'draws' should be [n, {p}] (one column per parameter {list(law.natural)}); got rows of {widths}"
        )
    for name in ("objective", "status"):
        if len(doc[name]) != n:
            problems.append(
                f"field {name!r} should hold {n} values (one per resample, as 'draws'); got {len(doc[name])}"
            )
    return problems


def _posterior_problems(doc: dict, law: Law) -> list[str]:
    theta, sigma = doc["theta"], doc["sigma"]
    chains, draws = len(theta), len(theta[0]) if theta else 0
    problems = [] if chains >= 1 and draws >= 1 else ["field 'theta' should hold at least 1 chain of 1 draw"]
    if sorted({len(c) for c in theta}) not in ([draws], []):
        problems.append("field 'theta' should hold chains of one length (draws)")
    widths = sorted({len(row) for c in theta for row in c})
    if widths and widths != [law.n_params]:
        problems.append(
            f"field 'theta' should be [chains, draws, {law.n_params}] ({list(law.params)}); got rows of {widths}"
        )
    if len(sigma) != chains or any(len(c) != draws for c in sigma):
        problems.append(f"field 'sigma' should be [chains, draws] as 'theta', [{chains}, {draws}]")
    prior = doc["prior"]
    found = _fields(prior, _PRIOR_FIELDS, "prior.")
    if not found and len({len(prior[k]) for k in _PRIOR_FIELDS}) != 1:
        found.append("field 'prior' should hold lists of one length (one entry per sampled coordinate)")
    return problems + found


def _table_problems(doc: dict) -> list[str]:
    import pandas as pd

    problems, names, lengths = [], [], set()
    for i, col in enumerate(doc["columns"]):
        where = f"columns[{i}]."
        found = _fields(col, _COLUMN_FIELDS, where)
        problems += found
        if found:
            continue
        names.append(col["name"])
        lengths.add(len(col["values"]))
        try:
            kind = pd.api.types.pandas_dtype(col["dtype"]).kind
        except (TypeError, ValueError):
            problems.append(f"field {where + 'dtype'!r} should be a pandas dtype name; got {col['dtype']!r}")
            continue
        tests = {"f": (_is_float, "numbers"), "i": (checks.is_int, "integers"), "u": (_is_count, "integers >= 0")}
        tests["b"] = (lambda x: isinstance(x, bool), "true/false")
        test, expected = tests.get(kind, (lambda x: True, ""))
        if not all(test(v) for v in col["values"]):
            problems.append(f"field {where + 'values'!r} should be {expected} (dtype {col['dtype']})")
    if len(set(names)) != len(names):
        problems.append(f"field 'columns' has repeated names {sorted({n for n in names if names.count(n) > 1})}")
    if len(lengths) > 1:
        problems.append(f"field 'columns' should hold values of one length; got lengths {sorted(lengths)}")
    return problems


def content_hash(doc: dict[str, Any]) -> str:
    """SHA-256 (hex) of ``doc`` without its hash field: keys sorted, no spaces, ASCII."""
    body = {k: v for k, v in doc.items() if k != HASH}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def checked(doc: Any, name: str, law: Law | str | None) -> tuple[str, Law | None]:
    """The document's kind and law, once its schema and hash hold; else a ValueError naming the field."""

    def refuse(problems: list[str], what: str):
        raise ValueError(
            f"{name} is not a valid jaxscale {what} file: " + "; ".join(problems) + ". It is not as "
            "jaxscale.save wrote it (edited or damaged): save the result again"
        )

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{name} was not written by jaxscale.save (no 'format': 'jaxscale' field)")
    version = doc.get("version")
    if not checks.is_int(version):
        got = "it is missing" if "version" not in doc else f"got {_shown(version)}"
        raise ValueError(f"{name}: field 'version' should be an integer format version {list(SUPPORTED)}; {got}")
    if version > VERSION:
        raise ValueError(f"{name} was written by a newer jaxscale (format {version}): upgrade jaxscale")
    if version not in SUPPORTED:
        raise ValueError(f"{name}: field 'version' should be one of {list(SUPPORTED)}; got {version}")
    kind = doc.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"{name}: field 'kind' should be one of {list(_KINDS)}; got {_shown(kind)}")
    head = {"format", "version", "kind"} | ({HASH} if version >= 2 else set())
    optional = (_OPTIONAL_IN_V1 if version == 1 else frozenset()) | _OPTIONAL_ALWAYS
    problems = []
    if HASH in head and not (isinstance(doc.get(HASH), str) and len(doc[HASH]) == 64):
        got = "it is missing" if HASH not in doc else f"got {_shown(doc[HASH])}"
        problems.append(f"field {HASH!r} should be the SHA-256 (64 hex digits) that save writes; {got}")
    problems += _fields(doc, _KINDS[kind], "", optional, allowed=head)
    if kind in ("bootstrap", "posterior") and isinstance(doc.get("point"), dict):
        problems += _fields(doc["point"], _FIT_FIELDS, "point.", optional)
    if problems:
        refuse(problems, kind)
    found = None
    if kind == "table":
        problems = _table_problems(doc)
    else:
        fit_doc = doc if kind == "fit" else doc["point"]
        found = _resolve_law(fit_doc, law)
        problems = _fit_problems(fit_doc, found, "" if kind == "fit" else "point.")
        if kind == "bootstrap":
            problems += _boot_problems(doc, found)
        if kind == "posterior":
            problems += _posterior_problems(doc, found)
    if problems:
        refuse(problems, kind)
    if version >= 2 and doc[HASH] != content_hash(doc):
        raise ValueError(
            f"{name}: its content does not match its field {HASH!r} (the SHA-256 that save wrote): the file "
            "was changed after it was saved. Save the result again rather than editing the file"
        )
    return kind, found
