"""Shared pieces of :mod:`jaxscale.plotting`: matplotlib on demand, axes, labels and style.

Example:
    >>> from jaxscale._plot_style import sci, tex
    >>> print(sci(3.2e19), sci(9.97e5), tex("alpha"), tex("E"), tex("tokens_per_param"))
    $3.2\\times10^{19}$ $10^{6}$ $\\alpha$ $E$ tokens_per_param
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

AXIS_LABEL = {"N": "parameters $N$", "D": "tokens $D$", "C": "compute $C$ (FLOPs)", "compute": "compute $C$ (FLOPs)"}
FRONTIER_LABEL = {
    "N_opt": "$N_{\\mathrm{opt}}$ (parameters)",
    "D_opt": "$D_{\\mathrm{opt}}$ (tokens)",
    "tokens_per_param": "tokens per parameter",
    "loss": "loss at the optimum",
}
GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "eta", "kappa", "lambda", "mu", "rho", "sigma", "tau"}


def pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("jaxscale.plotting needs matplotlib: pip install 'jaxscale[plots]'") from err
    return plt


def axes_for(given: Any, n: int, **subplots) -> list[Axes]:
    """``given`` (one Axes or ``n`` of them) as a list, or ``n`` new axes side by side / stacked."""
    if given is None:
        _, created = pyplot().subplots(squeeze=False, layout="constrained", **subplots)
        return list(created.ravel())
    axes = [given] if hasattr(given, "plot") else list(np.ravel(given) if isinstance(given, np.ndarray) else given)
    if len(axes) != n:
        raise ValueError(f"expected {n} axes to draw into; got {len(axes)}")
    return axes


def sci(v: float) -> str:
    """``3.2e19`` -> ``$3.2\\times10^{19}$`` (``$10^{19}$`` when the mantissa rounds to 1)."""
    exp = int(np.floor(np.log10(v)))
    mant = round(v / 10.0**exp, 1)
    if mant >= 10:
        mant, exp = 1.0, exp + 1
    return f"$10^{{{exp}}}$" if mant == 1 else f"${mant:g}\\times10^{{{exp}}}$"


def tex(name: str) -> str:
    """A parameter name as a math label: ``alpha`` -> ``$\\alpha$``, ``E`` -> ``$E$``."""
    return f"$\\{name}$" if name in GREEK else f"${name}$" if len(name) == 1 else name


def grid_style(ax: Axes) -> None:
    ax.grid(True, which="major", color="0.88", lw=0.6)
    ax.set_axisbelow(True)
