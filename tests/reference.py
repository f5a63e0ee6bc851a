"""An independent reference: the Chinchilla objective and its analytic gradient in numpy, solved
with scipy's L-BFGS-B (nothing here imports jaxscale's objective or solver)."""

import numpy as np
from scipy.optimize import minimize


def chinchilla_objective(theta, log_n, log_d, log_y, delta=1e-3, weights=None):
    """Summed Huber loss of log residuals for theta = (log E, log A, log B, alpha, beta), with gradient."""
    e, a, b, alpha, beta = theta
    terms = np.stack([np.full_like(log_n, e), a - alpha * log_n, b - beta * log_d])
    top = terms.max(axis=0)
    soft = np.exp(terms - top)
    total = soft.sum(axis=0)
    pred = top + np.log(total)
    soft /= total
    r = pred - log_y
    w = np.ones_like(r) if weights is None else weights
    quad = np.abs(r) <= delta
    value = np.sum(w * np.where(quad, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta)))
    psi = w * np.clip(r, -delta, delta)
    grad = np.array(
        [
            np.sum(psi * soft[0]),
            np.sum(psi * soft[1]),
            np.sum(psi * soft[2]),
            -np.sum(psi * soft[1] * log_n),
            -np.sum(psi * soft[2] * log_d),
        ]
    )
    return value, grad


def scipy_best(starts, log_n, log_d, log_y, delta=1e-3, weights=None, tight=True):
    """Best L-BFGS-B optimum over the starts.

    ``tight=True``: tolerances tight enough to be a reference. ``tight=False``: scipy's
    defaults, as a user (and Epoch AI's code) would run it — the fair speed baseline.
    """
    options = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000, "maxfun": 10000} if tight else {}
    best = None
    for x0 in starts:
        res = minimize(
            chinchilla_objective,
            x0,
            args=(log_n, log_d, log_y, delta, weights),
            jac=True,
            method="L-BFGS-B",
            options=options,
        )
        if best is None or res.fun < best.fun:
            best = res
    return best
