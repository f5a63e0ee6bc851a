"""jaxscale's batched BFGS vs scipy L-BFGS-B (analytic numpy gradient) from the same starts,
on synthetic Chinchilla-like data with known truth and multiplicative noise."""

import numpy as np
import pytest

import jaxscale as js
from jaxscale.laws import CHINCHILLA
from tests.reference import chinchilla_objective, scipy_best

TRUTHS = [
    {"E": 1.8, "A": 450.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37},
    {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
    {"E": 2.2, "A": 120.0, "B": 900.0, "alpha": 0.25, "beta": 0.32},
]


def synthetic(truth, seed, n=200, noise=0.01):
    rng = np.random.default_rng(seed)
    n_params = 10 ** rng.uniform(7.5, 10.5, n)
    tokens = n_params * 10 ** rng.uniform(-0.5, 2.5, n)
    clean = truth["E"] + truth["A"] / n_params ** truth["alpha"] + truth["B"] / tokens ** truth["beta"]
    loss = clean * np.exp(noise * rng.standard_normal(n))
    return js.Runs.from_arrays({"N": n_params, "D": tokens}, loss)


def screened_starts(runs, k=12):
    """The k grid points with the lowest initial objective (the same screening jaxscale does)."""
    grid = CHINCHILLA.grid_points()
    log_n, log_d = np.log(runs.x).T
    values = np.array([chinchilla_objective(g, log_n, log_d, np.log(runs.y))[0] for g in grid])
    return grid[np.argsort(values, kind="stable")[:k]]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("truth", TRUTHS, ids=["epoch", "hoffmann", "shallow"])
def test_same_optimum_as_scipy_and_truth_recovered(truth, seed):
    runs = synthetic(truth, seed)
    starts = screened_starts(runs)
    ours = js.fit(runs, law="chinchilla", starts=starts)
    log_n, log_d = np.log(runs.x).T
    ref = scipy_best(starts, log_n, log_d, np.log(runs.y))
    assert ours.converged, str(ours)
    # Same optimum: within 1e-9 absolute or 1e-6 relative (the tolerance).
    assert abs(ours.objective - ref.fun) <= max(1e-9, 1e-6 * abs(ref.fun))
    # Never worse than scipy by more than round-off.
    assert ours.objective <= ref.fun + 1e-12
    # The optimum can be no worse than the truth itself (a feasible point).
    truth_value, _ = chinchilla_objective(CHINCHILLA.from_natural(truth), log_n, log_d, np.log(runs.y))
    assert ours.objective <= truth_value
    # Truth recovered within noise: 1% log-noise on 200 points pins the exponents to a few
    # hundredths and E to a few percent (the Chinchilla bootstrap SE of alpha is 0.015 at 240 points).
    assert ours.params["alpha"] == pytest.approx(truth["alpha"], abs=0.06)
    assert ours.params["beta"] == pytest.approx(truth["beta"], abs=0.06)
    assert ours.params["E"] == pytest.approx(truth["E"], rel=0.05)


def test_epoch_data_same_optimum_as_scipy_from_same_starts():
    runs = js.datasets.chinchilla()
    starts = screened_starts(runs, k=16)
    ours = js.fit(runs, law="chinchilla", starts=starts)
    log_n, log_d = np.log(runs.x).T
    ref = scipy_best(starts, log_n, log_d, np.log(runs.y))
    assert abs(ours.objective - ref.fun) <= max(1e-9, 1e-6 * abs(ref.fun))
    np.testing.assert_allclose(ours.theta, ref.x, atol=1e-4)


def test_squared_loss_matches_scipy_least_squares():
    from scipy.optimize import least_squares

    runs = synthetic(TRUTHS[0], seed=5)
    ours = js.fit(runs, law="chinchilla", loss_fn="squared")
    log_n, log_d = np.log(runs.x).T

    def resid(theta):
        e, a, b, alpha, beta = theta
        pred = np.logaddexp(np.logaddexp(e, a - alpha * log_n), b - beta * log_d)
        return pred - np.log(runs.y)

    ref = least_squares(resid, ours.theta + 0.05, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    # least_squares minimises 0.5 * sum r^2, the same as loss_fn="squared".
    assert ours.objective == pytest.approx(ref.cost, rel=1e-9)
    np.testing.assert_allclose(ours.theta, ref.x, atol=1e-5)
