"""The exact-Hessian Newton solver (jaxscale.newton): against scipy, against the BFGS, and its statuses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize as scipy_minimize

import jaxscale as js
from jaxscale import newton, solver


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_rosenbrock_from_many_starts_matches_scipy():
    """Indefinite Hessians on the way (the banana's outer side): in 2-D every start reaches (1, 1),
    as scipy's BFGS does; in 4-D each end point is a minimum (the function has two)."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        starts = rng.uniform(-2, 2, size=(16, 2))
        res = jax.vmap(lambda x0: newton.minimize(rosenbrock, x0, max_steps=500))(jnp.asarray(starts))
        assert np.all(np.asarray(res.status) == solver.CONVERGED)
        for x0, x in zip(starts, np.asarray(res.x), strict=True):
            ref = scipy_minimize(
                lambda z: float(rosenbrock(jnp.asarray(z))), x0, method="BFGS", options={"gtol": 1e-10}
            )
            np.testing.assert_allclose(x, ref.x, rtol=0, atol=5e-5)  # scipy stops up to ~1e-5 short
            np.testing.assert_allclose(x, np.ones(2), rtol=0, atol=1e-9)
        res4 = jax.vmap(lambda x0: newton.minimize(rosenbrock, x0, max_steps=500))(
            jnp.asarray(rng.uniform(-2, 2, (16, 4)))
        )
        assert np.all(np.asarray(res4.status) == solver.CONVERGED)
        for x in np.asarray(res4.x):
            assert np.linalg.eigvalsh(np.asarray(jax.hessian(rosenbrock)(jnp.asarray(x)))).min() > 0
            assert (
                np.abs(np.asarray(jax.grad(rosenbrock)(jnp.asarray(x)))).max() <= 1e-5
            )  # gtol, or sqrt(gtol) once flat
        value = np.asarray(res4.value)  # the global minimum 0 at (1, 1, 1, 1) or the local one, 3.7014286
        assert np.all((value < 1e-20) | (np.abs(value - 3.7014286) < 1e-6)) and (value < 1e-20).any()


def test_nonfinite_start_and_budget_statuses():
    with jax.enable_x64(True):
        bad = newton.minimize(lambda x: jnp.sum(jnp.log(x)), jnp.array([-1.0, 2.0]))
        short = newton.minimize(rosenbrock, jnp.array([-1.5, 2.0]), max_steps=3)
    assert int(bad.status) == solver.NONFINITE
    assert int(short.status) == solver.MAX_STEPS and int(short.steps) == 3


def test_epoch_fit_with_newton_reaches_the_bfgs_optimum():
    """The same optimum as the default BFGS on the bundled Epoch points, from the same 64 screened starts."""
    runs = js.datasets.chinchilla()
    ref = js.fit(runs)
    res = js.fit(runs, solver="newton")
    assert res.converged and res.status == "converged"
    assert res.objective == pytest.approx(ref.objective, rel=1e-9)
    for name, value in ref.params.items():
        assert res.params[name] == pytest.approx(value, rel=1e-5), name
    assert res.n_at_optimum >= 32  # most of the 64 refined starts reach it, as with BFGS


def test_bootstrap_with_newton_matches_bfgs_draws():
    runs = js.datasets.chinchilla()
    a = js.bootstrap(runs, n_resamples=8, seed=1, progress=False)
    b = js.bootstrap(runs, n_resamples=8, seed=1, progress=False, solver="newton")
    assert b.n_failed == 0
    np.testing.assert_allclose(b.objective, a.objective, rtol=1e-9)
    np.testing.assert_allclose(b.draws, a.draws, rtol=2e-5)
