"""jaxscale: fit neural scaling laws fast, on JAX.

Example:
    >>> import jaxscale as js
    >>> res = js.fit(js.datasets.chinchilla(), law="chinchilla")
    >>> res.converged
    True
"""

from . import datasets, functional
from .bootstrap import bootstrap
from .envelope import EnvelopeResult, EnvelopeWarning, envelope
from .fit import fit
from .frontier import frontier
from .groups import fit_groups
from .io import LossScaleWarning, UnitsWarning, read_runs
from .isoflop import EdgeOfRangeWarning, IsoflopWarning, isoflop, isoflop_to_dicts
from .laws import Law, get_law, register
from .results import BootstrapResult, FitResult
from .runs import Runs
from .saving import load, save
from .validate import validate
from .zoo import broken_power_law, make_law

__all__ = [
    "BootstrapResult",
    "EdgeOfRangeWarning",
    "EnvelopeResult",
    "EnvelopeWarning",
    "FitResult",
    "IsoflopWarning",
    "Law",
    "LossScaleWarning",
    "Runs",
    "UnitsWarning",
    "bootstrap",
    "broken_power_law",
    "datasets",
    "envelope",
    "fit",
    "fit_groups",
    "functional",
    "frontier",
    "get_law",
    "isoflop",
    "isoflop_to_dicts",
    "load",
    "make_law",
    "read_runs",
    "register",
    "save",
    "validate",
]
__version__ = "0.1.0"
