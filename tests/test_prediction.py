"""Prediction intervals for new runs: run-to-run noise added to the curve's uncertainty; their
coverage of held-out synthetic runs."""

import numpy as np
import pandas as pd
import pytest

import jaxscale as js

TRUE = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}


def synthetic(n, sigma, rng):
    log_n = rng.uniform(np.log(1e7), np.log(3e9), n)
    log_d = log_n + rng.uniform(np.log(5), np.log(100), n)
    law = js.get_law("chinchilla")
    clean = np.asarray(law.predict(law.from_natural(TRUE), np.stack([log_n, log_d], -1)))
    return pd.DataFrame(
        {"N": np.exp(log_n), "D": np.exp(log_d), "loss": clean * np.exp(sigma * rng.standard_normal(n))}
    )


def test_residual_noise_and_shapes():
    rng = np.random.default_rng(0)
    df = synthetic(120, 0.01, rng)
    runs = js.read_runs(df)
    fit = js.fit(runs)
    table = js.prediction_interval(fit, runs, N=[1e8, 1e9], D=[2e9, 2e10], level=0.9)
    assert table.attrs["noise_source"] == "residuals" and 0.008 < table.attrs["noise_sigma"] < 0.012
    ratio = np.log(table["upper"] / table["predicted"])
    np.testing.assert_allclose(ratio, 1.6448536 * table.attrs["noise_sigma"], rtol=1e-6)
    boot = js.bootstrap(runs, n_resamples=50, progress=False)
    wide = js.prediction_interval(boot, runs, N=[1e8, 1e12], D=[2e9, 2e13], level=0.9)
    assert (wide["lower"] < wide["mean_lower"]).all() and (wide["mean_upper"] < wide["upper"]).all()
    given = js.prediction_interval(fit, noise=0.0, N=[1e9], D=[2e10])
    assert given["lower"][0] == given["predicted"][0] == given["upper"][0]
    with pytest.raises(ValueError, match="needs the runs fitted"):
        js.prediction_interval(fit, N=[1e9], D=[2e10])
    with pytest.raises(ValueError, match=r"needs the law's inputs \['N', 'D'\]; missing \['D'\]"):
        js.prediction_interval(fit, runs, N=[1e9])


@pytest.mark.slow
def test_coverage_of_held_out_runs():
    # 500 repetitions: fit 80 noisy runs, predict 20 new runs drawn from the same design, count
    # how many fall inside the 90% interval (noise estimated from the residuals).
    rng = np.random.default_rng(1)
    inside, total = 0, 0
    for _ in range(500):
        train, test = synthetic(80, 0.02, rng), synthetic(20, 0.02, rng)
        runs = js.read_runs(train)
        fit = js.fit(runs, n_refine=8)
        table = js.prediction_interval(fit, runs, N=test["N"].to_numpy(), D=test["D"].to_numpy(), level=0.9)
        y = test["loss"].to_numpy()
        inside += int(np.sum((table["lower"].to_numpy() <= y) & (y <= table["upper"].to_numpy())))
        total += len(y)
    coverage = inside / total
    print(f"\n90% prediction intervals, 500 repetitions x 20 held-out runs: coverage {coverage:.3f}")
    assert abs(coverage - 0.90) < 0.03
