"""jaxscale: fit neural scaling laws fast, on JAX.

The public names are imported on first use (PEP 562), so that ``import jaxscale`` and the
command line's ``--help`` and argument errors do not wait for JAX to load.

Example:
    >>> import jaxscale as js
    >>> res = js.fit(js.datasets.chinchilla(), law="chinchilla")
    >>> res.converged
    True
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# Each public name and the module that defines it.
_HOMES = {
    "BootstrapResult": "results",
    "CheckpointWarning": "checkpoints",
    "EdgeOfRangeWarning": "isoflop",
    "EnvelopeResult": "envelope",
    "EnvelopeWarning": "envelope",
    "FitResult": "results",
    "IsoflopWarning": "isoflop",
    "Law": "laws",
    "LossScaleWarning": "io",
    "Runs": "runs",
    "UnitsWarning": "io",
    "bootstrap": "bootstrap",
    "broken_power_law": "zoo",
    "compute_multiplier": "multiplier",
    "envelope": "envelope",
    "fit": "fit",
    "fit_groups": "groups",
    "frontier": "frontier",
    "get_law": "laws",
    "isoflop": "isoflop",
    "isoflop_points": "checkpoints",
    "isoflop_to_dicts": "isoflop",
    "load": "saving",
    "make_law": "zoo",
    "PosteriorResult": "posterior_result",
    "posterior": "posterior",
    "prediction_interval": "prediction",
    "read_runs": "io",
    "register": "laws",
    "rollout": "rollout",
    "save": "saving",
    "use_cpu_cores": "cpu",
    "validate": "validate",
}
_SUBPACKAGES = ("datasets", "functional", "priors")

__all__ = sorted([*_HOMES, *_SUBPACKAGES])
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _HOMES:
        value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """This package, whose functions ``fit``, ``bootstrap``, ... share their modules' names.

    Importing a submodule sets it as an attribute of its package, which would hide the function
    of the same name (``js.fit`` would become the module ``jaxscale.fit``); the function is kept.
    The modules stay importable by name (``import jaxscale.fit``, ``sys.modules``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if _HOMES.get(name) == name and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
