"""Argument checks for the public functions: one rule per argument name, one message style.

Every public entry point (``fit``, ``bootstrap``, ``fit_groups``, ``validate``, ``frontier``,
``BootstrapResult.ci``, ``save``/``load``) checks its arguments here, before any kernel runs,
and a bad one raises a ``TypeError`` (wrong type) or ``ValueError`` (out of range) that names
the argument and the values it takes. Counts are Python or numpy integers; ``True`` is not a
count, and neither is ``2.0``: a float where a count belongs is refused, not truncated.

Example:
    >>> from jaxscale import checks
    >>> checks.arguments(n_refine=8, lanes=512, gtol=1e-10)
    >>> checks.arguments(n_refine=0)
    Traceback (most recent call last):
    ...
    ValueError: n_refine must be an integer >= 1; got 0
"""

from __future__ import annotations

import functools
import numbers
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .laws import get_law
from .specs import too_few_runs

ONE_RESAMPLE = "a bootstrap of 1 resample has no interval"


def _shown(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def is_int(value: Any) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def is_real(value: Any) -> bool:
    """A Python or numpy real number (integers included), or a 0-d real array; not a bool."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, numbers.Real):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and np.ndim(value) == 0 and np.issubdtype(dtype, np.number) and dtype.kind != "c"


def check_int(name: str, value: Any, minimum: int, *, note: str = "") -> int:
    """``value`` as an int, or a TypeError / ValueError naming ``name`` and the allowed values."""
    expected = f"{name} must be an integer >= {minimum}{f' ({note})' if note else ''}"
    if not is_int(value):
        raise TypeError(f"{expected}; got {_shown(value)}")
    if value < minimum:
        raise ValueError(f"{expected}; got {value}")
    return int(value)


def check_optional_int(name: str, value: Any, minimum: int) -> int | None:
    return None if value is None else check_int(name, value, minimum)


def check_positive(name: str, value: Any) -> float:
    """A finite real number > 0 (a tolerance, a threshold)."""
    expected = f"{name} must be a finite number > 0"
    if not is_real(value):
        raise TypeError(f"{expected}; got {_shown(value)}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{expected}; got {value}")
    return float(value)


def check_level(value: Any, name: str = "level") -> float:
    """A confidence level strictly between 0 and 1."""
    expected = f"{name} must be a number between 0 and 1 (exclusive), e.g. 0.95"
    if not is_real(value):
        raise TypeError(f"{expected}; got {_shown(value)}")
    if not 0 < value < 1:
        raise ValueError(f"{expected}; got {value}")
    return float(value)


def check_bool(name: str, value: Any, *, optional: bool = False) -> bool | None:
    """``True`` or ``False`` (or None where ``optional``); 0/1 and strings are refused."""
    if optional and value is None:
        return None
    if not isinstance(value, bool | np.bool_):
        allowed = "True, False or None" if optional else "True or False"
        raise TypeError(f"{name} must be {allowed}; got {_shown(value)}")
    return bool(value)


def check_resamples(value: Any, *, none_allowed: bool = True) -> int:
    """``n_resamples``: 0 (no bootstrap, where ``none_allowed``) or at least 2 resamples."""
    lowest = "0 (no bootstrap) or an integer >= 2" if none_allowed else "an integer >= 2"
    expected = f"n_resamples must be {lowest} (resamples; {ONE_RESAMPLE})"
    if not is_int(value):
        raise TypeError(f"{expected}; got {_shown(value)}")
    if value < 0 or value == 1 or (value == 0 and not none_allowed):
        raise ValueError(f"{expected}; got {value}")
    return int(value)


def renamed(**old_to_new: str) -> Callable[[Callable], Callable]:
    """Accept a public function's old keyword names, with a FutureWarning naming the new one.

    jaxscale 0.1 gave each concept one name (``n_resamples``, ``loss_fn``); scripts written
    with the old names keep working until the aliases are removed.
    """

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def with_old_names(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{fn.__name__}() got both {old}= and {new}=; pass {new}= only")
                warnings.warn(
                    f"{fn.__name__}({old}=...) is now {fn.__name__}({new}=...); the old name will be removed",
                    FutureWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return with_old_names

    return wrap


def check_budgets(name: str, values: Any, *, required: bool = True) -> np.ndarray:
    """Compute budgets: a number or a list of them, each finite and > 0 (1-D float64)."""
    expected = f"{name} must be {'one or more' if required else 'a list of'} finite FLOP budgets > 0"
    if isinstance(values, str | bytes) or np.ndim(values) > 1:
        raise TypeError(f"{expected} (e.g. [1e21, 1e22]); got {_shown(values)}")
    items = list(values) if np.ndim(values) else [values]
    bad_type = [v for v in items if not is_real(v)]
    if bad_type:
        raise TypeError(f"{expected} (e.g. [1e21, 1e22]); got {_shown(bad_type[0])}")
    arr = np.asarray(items, dtype=np.float64)
    if required and arr.size == 0:
        raise ValueError(f"{expected}; got none")
    bad = np.flatnonzero(~(np.isfinite(arr) & (arr > 0)))
    if bad.size:
        shown = ", ".join(f"{float(arr[i])!r} at position {i}" for i in bad[:3])
        raise ValueError(f"{expected}; got {shown}")
    return arr


def check_fixed(law, fixed: Any) -> dict[str, float]:
    """``fixed={name: value}``: names of the law's natural parameters, each value a finite real
    number, and > 0 for a parameter fitted as its log."""
    if fixed is None:
        return {}
    if not isinstance(fixed, Mapping):
        raise TypeError(f"fixed must be a dict of parameter values, e.g. {{'E': 1.69}}; got {_shown(fixed)}")
    out = {}
    for name, value in fixed.items():
        i = law.natural_index(name)
        expected = f"fixed[{name!r}] must be a finite real number"
        if law.log_scale[i]:
            expected += f" > 0 ({name} is fitted as its log)"
        if not is_real(value):
            raise TypeError(f"{expected}; got {_shown(value)}")
        if not np.isfinite(value) or (law.log_scale[i] and not value > 0):
            raise ValueError(f"{expected}; got {value}")
        out[name] = float(value)
    return out


def check_natural(law, params: Any, name: str = "params") -> dict[str, float]:
    """A dict of every natural parameter of ``law`` (e.g. a published fit), finite reals."""
    missing = [p for p in law.natural if p not in params]
    extra = [p for p in params if p not in law.natural]
    if missing or extra:
        raise ValueError(
            f"{name} must give law {law.name!r}'s parameters {list(law.natural)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {extra}" if extra else "")
        )
    for p in law.natural:
        if not is_real(params[p]) or not np.isfinite(params[p]):
            raise ValueError(f"{name}[{p!r}] must be a finite real number; got {_shown(params[p])}")
    return {p: float(params[p]) for p in law.natural}


def check_inputs(name: str, law, values: Any, names) -> dict[str, np.ndarray]:
    """Values of the law's inputs (``at={"N": [...], "D": [...]}``): each finite and > 0."""
    if not isinstance(values, Mapping):
        raise TypeError(
            f"{name} must be a dict of input values, e.g. {{'N': [7e10], 'D': [1.4e12]}}; got {_shown(values)}"
        )
    missing = [n for n in names if n not in values]
    unknown = [n for n in values if n not in law.inputs]
    if missing or unknown:
        raise ValueError(
            f"{name} must give values of law {law.name!r}'s inputs {list(names)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown}" if unknown else "")
        )
    out = {}
    for n in names:
        try:
            arr = np.atleast_1d(np.asarray(values[n], dtype=np.float64))
        except (TypeError, ValueError):
            raise TypeError(f"{name}[{n!r}] must be numbers > 0; got {_shown(values[n])}") from None
        if arr.ndim != 1 or not np.all(np.isfinite(arr) & (arr > 0)):
            raise ValueError(f"{name}[{n!r}] must be finite numbers > 0 (one per point); got {values[n]!r}")
        out[n] = arr
    if len({a.size for a in out.values()}) > 1:
        raise ValueError(
            f"{name} must give the same number of values for every input; got "
            + ", ".join(f"{n}: {a.size}" for n, a in out.items())
        )
    return out


def run_weights(weights: Any, n_points: int, cfg) -> np.ndarray:
    """Per-run weights (default 1): finite, >= 0, not all zero, and enough weighted runs to
    determine the free parameters — the rule of :func:`jaxscale.specs.too_few_runs`."""
    if weights is None:
        return np.ones(n_points)
    expected = f"weights must be {n_points} finite, non-negative numbers (one per run)"
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{expected}; got {_shown(weights)}") from None
    if w.shape != (n_points,):
        raise ValueError(f"{expected}; got shape {w.shape}")
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        raise ValueError(f"{expected}; run {bad[0]} has weight {float(w[bad[0]])!r}")
    used = int(np.count_nonzero(w))
    if used == 0:
        raise ValueError("weights are all zero: no run is left to fit (a weight of 0 leaves a run out)")
    reason = too_few_runs(used, cfg)
    if reason:
        raise ValueError(f"weights leave {used} of the {n_points} runs (those with non-zero weight): {reason}")
    return w


def check_callable(name: str, value: Any) -> None:
    """A function, or None."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a function or None; got {_shown(value)}")


def frontier_arguments(result: Any, *, law, compute, flops, level, n_range, **inputs: Any) -> None:
    """:func:`jaxscale.frontier`'s arguments."""
    if isinstance(result, Mapping):
        if law is None:
            raise ValueError("frontier(params_dict, ...) needs law=..., e.g. law='chinchilla'")
        check_natural(get_law(law), result, "result")
    check_budgets("compute", compute)
    check_callable("flops", flops)
    check_level(level)
    expected = "n_range must be two finite numbers 0 < low < high (the range of N searched), e.g. (1e4, 1e16)"
    if not (isinstance(n_range, tuple | list) and len(n_range) == 2 and all(is_real(v) for v in n_range)):
        raise TypeError(f"{expected}; got {_shown(n_range)}")
    if not (np.all(np.isfinite(n_range)) and 0 < n_range[0] < n_range[1]):
        raise ValueError(f"{expected}; got {tuple(n_range)}")
    for name, value in inputs.items():
        if not is_real(value) or not (np.isfinite(value) and value > 0):
            raise ValueError(f"the input {name}={value!r} must be a finite number > 0 (held fixed along the frontier)")


def _rule(minimum: int) -> Callable[[str, Any], Any]:
    return lambda name, value: check_int(name, value, minimum)


# The rule of each argument, by name: the same name means the same rule in every function
# (fit_groups' progress, a callback rather than bootstrap's on/off, is checked by check_callable).
RULES: dict[str, Callable[[str, Any], Any]] = {
    "n_refine": _rule(1),
    "lanes": lambda name, v: check_optional_int(name, v, 1),  # None: the backend's (backends.sizes)
    "max_steps": _rule(1),
    "chunk_size": lambda name, v: check_optional_int(name, v, 1),
    "seed": _rule(0),
    "offset": _rule(0),
    "devices": lambda name, v: check_optional_int(name, v, 1),
    "gtol": check_positive,
    "delta": check_positive,
    "level": lambda name, v: check_level(v, name),
    "retry": check_bool,
    "staged": check_bool,
    "progress": lambda name, v: check_bool(name, v, optional=True),
    "n_resamples": lambda name, v: check_resamples(v),
    "compute": lambda name, v: check_budgets(name, v, required=False),
}


def arguments(law=None, /, **values: Any) -> None:
    """Check each keyword argument by the rule of its name (:data:`RULES`); ``fixed`` needs ``law``."""
    for name, value in values.items():
        if name == "fixed":
            check_fixed(law, value)
        else:
            RULES[name](name, value)
