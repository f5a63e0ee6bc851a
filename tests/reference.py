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


def akima_optimum(log_x, loss, per_gap=25):
    """Porian et al.'s per-budget optimum with scipy: Akima interpolation of log loss over sorted
    ``log_x``, evaluated on ``(k - 1) * per_gap`` evenly spaced points between the smallest and
    largest; returns (log x of the lowest grid point, interior?)."""
    from scipy.interpolate import Akima1DInterpolator

    order = np.argsort(log_x)
    x, y = np.asarray(log_x)[order], np.log(np.asarray(loss)[order])
    grid = np.linspace(x[0], x[-1], (len(x) - 1) * per_gap)
    best = int(np.argmin(Akima1DInterpolator(x, y)(grid)))
    return grid[best], 0 < best < len(grid) - 1


def seed_noise_exponent(budgets, sigma, n=1000, seed=0, min_std_spacing=0.33):
    """The seed-noise procedure, as a numpy/scipy loop: ``budgets`` is a list of
    ``(compute, log_x, loss)``; returns (a, [2.5%, 97.5%] of the paired-replicate slopes, budgets used).

    Per budget: ``n`` replicates of loss + sigma * N(0, 1), each one's Akima optimum, edge optima
    dropped (the budget needs half interior), observation the median optimum, spread the std of
    the interior log optima floored at ``min_std_spacing`` mean log spacings and times n /
    interior; then least squares of the log observations on log compute weighted by 1 / spread**2,
    and the same for the i-th interior replicate of every budget."""
    rng = np.random.default_rng(seed)
    rows = []
    for compute, log_x, loss in budgets:
        point, inside = akima_optimum(log_x, loss)
        reps = []
        for _ in range(n):
            x, ok = akima_optimum(log_x, loss + sigma * rng.standard_normal(len(loss)))
            if ok:
                reps.append(x)
        if not inside or len(reps) < n / 2:
            continue
        reps = np.array(reps)
        spacing = (np.max(log_x) - np.min(log_x)) / (len(log_x) - 1)
        spread = max(np.std(reps), min_std_spacing * spacing) * n / len(reps)
        rows.append((np.log(compute), np.log(np.median(np.exp(reps))), spread, reps))
    log_c = np.array([r[0] for r in rows])
    w = np.array([1 / r[2] ** 2 for r in rows])
    a = np.polyfit(log_c, [r[1] for r in rows], 1, w=np.sqrt(w))[0]
    paired = min(len(r[3]) for r in rows)
    slopes = [np.polyfit(log_c, [r[3][i] for r in rows], 1, w=np.sqrt(w))[0] for i in range(paired)]
    return a, np.percentile(slopes, [2.5, 97.5]), len(rows)
