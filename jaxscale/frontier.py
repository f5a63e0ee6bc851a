"""Compute-optimal allocation under C = 6ND (closed form for the Chinchilla law).

Minimising ``E + A/N^α + B/D^β`` subject to ``6ND = C`` gives (Hoffmann et al. 2022, eq. 4)
``N_opt = G (C/6)^a``, ``D_opt = G⁻¹ (C/6)^b`` with ``G = (αA/(βB))^(1/(α+β))``,
``a = β/(α+β)``, ``b = α/(α+β)``. Works elementwise on arrays (bootstrap draws × budgets).

Example:
    >>> from jaxscale.frontier import chinchilla_allocation
    >>> n, d = chinchilla_allocation({"A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}, 5.76e23)
    >>> f"{n:.2e} {d:.2e}"
    '3.22e+10 2.98e+12'
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def chinchilla_allocation(params: Mapping, compute) -> tuple[np.ndarray, np.ndarray]:
    """``(N_opt, D_opt)`` at ``compute`` FLOPs for Chinchilla parameters (scalars or arrays)."""
    alpha, beta = np.asarray(params["alpha"]), np.asarray(params["beta"])
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    # In logs: G = exp((log(αA) − log(βB)) / (α+β)); avoids overflow for large A, B.
    log_g = (np.log(alpha * np.asarray(params["A"])) - np.log(beta * np.asarray(params["B"]))) / (alpha + beta)
    log_c6 = np.log(np.asarray(compute, dtype=np.float64) / 6.0)
    return np.exp(log_g + a * log_c6), np.exp(-log_g + b * log_c6)
