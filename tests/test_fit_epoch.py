"""The Approach-3 fit on Epoch AI's 240 Chinchilla points reproduces their published grid fit.

Reference (Epoch AI, analyzing-chinchilla data_analysis.ipynb, cell 18/72, Huber delta=1e-3
summed, L-BFGS over their 4,500-start grid): A = 477.8, B = 2143.9, E = 1.8172,
alpha = 0.3473, beta = 0.3672, objective 0.00101827. Tolerances are the issue's: they cover
the rounding of the printed values (B is printed to 5 digits but is the least identified
parameter: the data README's own scipy re-fit gives 2143.16).
"""

import numpy as np
import pytest

import jaxscale as js

PUBLISHED = {"A": 477.8, "B": 2143.9, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}


def check_published(res):
    assert res.converged, str(res)
    assert res.n_points == 240
    assert res.objective <= 0.00101828
    assert res.params["A"] == pytest.approx(PUBLISHED["A"], rel=5e-3)
    assert res.params["B"] == pytest.approx(PUBLISHED["B"], rel=1e-2)
    assert res.params["E"] == pytest.approx(PUBLISHED["E"], abs=1e-3)
    assert res.params["alpha"] == pytest.approx(PUBLISHED["alpha"], abs=1e-3)
    assert res.params["beta"] == pytest.approx(PUBLISHED["beta"], abs=1e-3)


def test_default_strategy_reproduces_epoch_fit():
    res = js.fit(js.datasets.chinchilla(), law="chinchilla")
    check_published(res)
    assert res.n_candidates == 4500 and res.n_starts == 64
    # a = beta / (alpha + beta): Epoch's cell 59 reports 0.513 for their MLE fit.
    assert res.derived["a"] == pytest.approx(0.514, abs=2e-3)


def test_full_epoch_grid_reaches_the_same_optimum_as_the_screened_default():
    runs = js.datasets.chinchilla()
    full = js.fit(runs, law="chinchilla", starts="grid")
    check_published(full)
    assert full.n_starts == 4500
    screened = js.fit(runs, law="chinchilla")
    # Screening 4,500 starts down to 64 loses nothing: same optimum to 1e-12 relative.
    assert screened.objective == pytest.approx(full.objective, rel=1e-12)
    np.testing.assert_allclose(screened.theta, full.theta, rtol=0, atol=1e-5)


def test_all_245_points_fit_differently_but_converge():
    # Epoch drop the 5 highest-loss runs as outliers; with them the fit still converges but
    # the objective grows (those points sit far in the linear part of the Huber loss).
    res = js.fit(js.datasets.chinchilla(all_points=True), law="chinchilla")
    assert res.converged and res.n_points == 245
    assert res.objective > 0.00101828
