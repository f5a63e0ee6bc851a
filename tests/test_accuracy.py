"""Downstream laws (sigmoids, Gadre et al.'s exponential saturation) on the natural scale, and
the two-step loss -> error prediction."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxscale as js
from jaxscale.accuracy import two_step

GADRE = Path(__file__).parent / "fixtures" / "gadre2024_overtraining" / "models_losses.csv"
NATURAL = dict(scale="natural", loss_fn="squared")


def runs_of(x, y):
    return js.Runs.from_arrays({"x": x}, y)


@pytest.mark.parametrize(
    "law, truth, x",
    [
        ("exp_saturation", {"epsilon": 0.85, "k": 2.0, "gamma": 0.8}, np.linspace(2.0, 5.0, 30)),
        ("sigmoid", {"floor": 0.25, "span": 0.5, "k": -3.0, "x0": 3.0}, np.linspace(2.0, 4.5, 30)),
        ("sigmoid_log", {"floor": 0.25, "span": 0.6, "k": 0.8, "x0": 1e21}, np.logspace(18, 24, 30)),
    ],
)
def test_downstream_laws_recover_their_parameters(law, truth, x):
    rng = np.random.default_rng(0)
    f = js.get_law(law)
    clean = np.asarray(f.predict(f.from_natural(truth), np.log(x)[:, None]))
    res = js.fit(runs_of(x, clean + 0.002 * rng.standard_normal(x.size)), law, **NATURAL)
    assert res.converged
    for name, value in truth.items():
        assert res.params[name] == pytest.approx(value, rel=0.1), name
    exact = js.fit(runs_of(x, clean), law, **NATURAL)
    for name, value in truth.items():
        assert exact.params[name] == pytest.approx(value, rel=1e-4), name


def test_exp_saturation_is_nan_where_undefined():
    f = js.get_law("exp_saturation")
    theta = f.from_natural({"epsilon": 0.5, "k": 10.0, "gamma": 0.5})
    pred = np.asarray(f.predict(theta, np.log(np.array([[1.0], [10.0]]))))
    assert np.isnan(pred[0]) and pred[1] == pytest.approx(0.5 - 10 * np.exp(-5.0), rel=1e-12)


def test_two_step_with_paired_bands():
    df = pd.read_csv(GADRE)
    small = df[df["params_N"] < 1e9]
    loss = js.bootstrap(
        js.read_runs(small, N="params_N", D="tokens_D", loss="loss_c4_val"), n_resamples=50, progress=False
    )
    errors = runs_of(small["loss_c4_val"].to_numpy(), small["err_avg_17tasks"].to_numpy())
    err = js.bootstrap(errors, "exp_saturation", n_resamples=50, progress=False, **NATURAL)
    big = df[df["params_N"] > 1e9]
    table = two_step(loss, err, N=big["params_N"].to_numpy(), D=big["tokens_D"].to_numpy())
    assert len(table) == len(big) and (table["predicted_lower"] <= table["predicted_upper"]).all()
    point = two_step(loss.point, err.point, N=big["params_N"].to_numpy(), D=big["tokens_D"].to_numpy())
    np.testing.assert_allclose(table["predicted"], point["predicted"], rtol=1e-12)
    # The chained prediction of the 1.4B and 6.9B runs' 17-task error, from the small runs only.
    rel = table["predicted"].to_numpy() / big["err_avg_17tasks"].to_numpy() - 1
    assert np.all(np.abs(rel) < 0.1)
    with pytest.raises(ValueError, match="needs the loss law's inputs \\['N', 'D'\\]; missing \\['D'\\]"):
        two_step(loss, err, N=[1e9])


def test_custom_law_is_nan_where_undefined_and_nonfinite_is_explained():
    import jax.numpy as jnp

    law = js.make_law(
        lambda p, x: (x["L"] - p["E"]) ** p["k"], params=("E", "k"), inputs=("L",), grid={"E": [1.0], "k": [1.0]}
    )
    pred = np.asarray(law.predict(law.from_natural({"E": 2.0, "k": 1.5}), jnp.log(jnp.array([[1.5], [3.0]]))))
    assert np.isnan(pred[0]) and pred[1] == pytest.approx(1.0)  # not 2.2e-308 below the base's zero
    res = js.fit(js.datasets.chinchilla())._replace(status="nonfinite")
    assert "prediction is not positive" in str(res) and "NOT CONVERGED: nonfinite" in str(res)


def test_zero_inclusive_accuracies_on_the_natural_scale():
    from scipy.optimize import curve_fit

    from tests.conftest import shared_file

    acc = pd.read_csv(shared_file("gadre2024_overtraining/downstream_task_accuracy.csv"))
    models = pd.read_csv(GADRE)
    task = acc[acc["task"] == "jeopardy"].merge(models[["name", "loss_c4_val"]], on="name")
    assert (task["accuracy"] == 0).sum() == 41  # 41 of the 104 runs score 0 on Jeopardy
    with pytest.raises(ValueError, match=r"column 'accuracy' has 41 non-positive values"):
        js.read_runs(task, x="loss_c4_val", loss="accuracy")
    runs = js.read_runs(task, x="loss_c4_val", loss="accuracy", allow_zero=True)
    with pytest.raises(ValueError, match="41 runs have a fitted value of 0, which has no log: fit on the natural"):
        js.fit(runs, "sigmoid")
    res = js.fit(runs, "sigmoid", **NATURAL)
    assert res.converged and res.params["k"] < 0  # accuracy falls as the loss rises

    def sigmoid(x, floor, span, k, x0):
        return floor + span / (1 + np.exp(-k * (x - x0)))

    x, y = task["loss_c4_val"].to_numpy(), task["accuracy"].to_numpy()
    start = [res.params[n] for n in ("floor", "span", "k", "x0")]
    ref, _ = curve_fit(sigmoid, x, y, p0=start, maxfev=20000)
    sse = lambda p: 0.5 * np.sum((sigmoid(x, *p) - y) ** 2)  # noqa: E731
    assert res.objective == pytest.approx(sse(start), rel=1e-9)
    assert res.objective <= sse(ref) * (1 + 1e-7)  # curve_fit from our optimum finds nothing lower
    print(f"\nJeopardy accuracy vs C4 loss (41 zeros), sigmoid on the natural scale: {res.params}")
