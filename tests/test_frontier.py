"""Compute-optimal frontier: closed form vs numeric allocation, FLOPs functions, bootstrap bands."""

import numpy as np
import pandas as pd
import pytest

import jaxscale as js
from jaxscale.allocation import chinchilla_allocation


@pytest.fixture(scope="module")
def chinchilla_fit():
    return js.fit(js.datasets.chinchilla())


def test_numeric_allocation_matches_closed_form(chinchilla_fit):
    budgets = np.logspace(18, 26, 81)
    closed = js.frontier(chinchilla_fit, budgets, method="closed")
    numeric = js.frontier(chinchilla_fit, budgets, method="numeric")
    # The bar is 1e-6 relative; Newton on dL/dlog N reaches round-off.
    for col in ("N_opt", "D_opt", "tokens_per_param", "loss"):
        np.testing.assert_allclose(numeric[col], closed[col], rtol=1e-6)
    assert not numeric["at_edge"].any()
    np.testing.assert_allclose(closed["N_opt"] * closed["D_opt"] * 6, budgets, rtol=1e-12)


def test_closed_form_against_brute_force_search(chinchilla_fit):
    p = chinchilla_fit.params
    n = np.logspace(6, 14, 400_001)
    d = 1e23 / (6 * n)
    loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    n_opt, _ = chinchilla_allocation(p, 1e23)
    # A grid of 400k points over 8 decades resolves log N to 5e-5.
    assert np.log(n[np.argmin(loss)]) == pytest.approx(np.log(n_opt), abs=1e-4)


def test_custom_flops_function_shifts_allocation(chinchilla_fit):
    # 6ND plus an attention term per token (12 · layers · context · width ~ 1e8 FLOPs/token):
    # each token costs more, so fewer tokens fit the budget.
    def flops(n, d):
        return (6.0 * n + 1e8) * d

    plain = js.frontier(chinchilla_fit, [1e20, 1e22])
    with_attention = js.frontier(chinchilla_fit, [1e20, 1e22], flops=flops)
    assert (with_attention["D_opt"] < plain["D_opt"]).all()
    assert (with_attention["loss"] > plain["loss"]).all()
    # Brute force the same constrained problem.
    p = chinchilla_fit.params
    n = np.logspace(6, 13, 200_001)
    for c, row in zip([1e20, 1e22], with_attention.itertuples(), strict=True):
        d = c / (6.0 * n + 1e8)
        loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
        assert np.log(row.N_opt) == pytest.approx(np.log(n[np.argmin(loss)]), abs=2e-4)
        assert row.loss == pytest.approx(loss.min(), rel=1e-9)


def test_bootstrap_bands_contain_the_point_estimate():
    boot = js.bootstrap(js.datasets.chinchilla(), n_resamples=100, seed=0, progress=False)
    budgets = np.logspace(19, 25, 1000)
    table = js.frontier(boot, budgets, level=0.9)
    assert len(table) == 1000
    for col in ("N_opt", "D_opt", "tokens_per_param", "loss"):
        assert (table[f"{col}_lower"] <= table[col]).all() and (table[col] <= table[f"{col}_upper"]).all()
    # The same band by hand from the draws, at one budget.
    s = {k: v[boot.ok] for k, v in boot.samples.items()}
    n_opt, _ = chinchilla_allocation(s, budgets[500])
    lo, hi = np.percentile(n_opt, [5, 95])
    assert table["N_opt_lower"][500] == pytest.approx(lo, rel=1e-12)
    assert table["N_opt_upper"][500] == pytest.approx(hi, rel=1e-12)
    numeric = js.frontier(boot, budgets[::100], level=0.9, method="numeric")
    np.testing.assert_allclose(numeric["N_opt_upper"], table["N_opt_upper"][::100], rtol=1e-6)


def test_power_law_has_no_frontier_and_bad_input_is_named(chinchilla_fit):
    with pytest.raises(ValueError, match="finite FLOP budgets > 0; got -1.0 at position 1"):
        js.frontier(chinchilla_fit, [1e21, -1.0])
    with pytest.raises(ValueError, match="method must be"):
        js.frontier(chinchilla_fit, [1e21], method="grid")
    rng = np.random.default_rng(0)
    x = 10 ** rng.uniform(17, 22, 40)
    power = js.fit(js.Runs.from_arrays({"x": x}, 2 + 1e3 * x**-0.2), law="power")
    with pytest.raises(ValueError, match="needs a law of N and D"):
        js.frontier(power, [1e21])
    with pytest.raises(ValueError, match="closed form needs the chinchilla law"):
        js.frontier(chinchilla_fit, [1e21], method="closed", flops=lambda n, d: 6 * n * d)
    assert isinstance(js.frontier(chinchilla_fit, [1e21]), pd.DataFrame)


def test_data_constrained_allocation_matches_the_authors_readme():
    """Muennighoff et al.'s README: with their fitted law (C4 coefficients, R_D* = 15.387756,
    R_N* = 5.309743), C = 1e22 FLOPs and U = 25e9 unique tokens, the optimal allocation is
    7.02e9 parameters and 2.373e11 tokens (9.49 epochs), found there by a grid search."""
    published = {
        "E": np.exp(0.6254804),
        "A": np.exp(6.255414),
        "B": np.exp(7.3049974),
        "alpha": 0.3526596,
        "beta": 0.3526596,
        "R_D": 15.387756,
        "R_N": 5.309743,
    }
    table = js.frontier(published, [1e22], law="data_constrained", U=25e9)
    row = table.iloc[0]
    assert not row["at_edge"]
    # The README prints 3 significant figures (its grid search resolves no more).
    assert row["N_opt"] == pytest.approx(7.02e9, rel=5e-3)
    assert row["D_opt"] == pytest.approx(2.373e11, rel=5e-4)
    assert row["N_opt"] * row["D_opt"] * 6 == pytest.approx(1e22, rel=1e-12)
    with pytest.raises(ValueError, match=r"also needs \['U'\]"):
        js.frontier(published, [1e22], law="data_constrained")
    with pytest.raises(ValueError, match="needs law="):
        js.frontier(published, [1e22])
