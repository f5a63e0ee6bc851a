"""The objective's options: residual scale, reduction, the over-prediction penalty, run weights
and tied exponents, in every entry point; against scipy and on synthetic ladders."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import least_squares

import jaxscale as js
from jaxscale import functional as jsf
from tests.test_cli import run

RUNS = js.datasets.chinchilla()
FRAME = pd.DataFrame(
    {"N": np.exp(RUNS.log_inputs()[:, 0]), "D": np.exp(RUNS.log_inputs()[:, 1]), "loss": np.exp(RUNS.log_loss())}
)


def _natural_residuals(x, log_n, log_d, y):
    e, a, b, alpha, beta = x
    return np.exp(e) + np.exp(a - alpha * log_n) + np.exp(b - beta * log_d) - y


def test_natural_scale_least_squares_matches_scipy():
    res = js.fit(RUNS, scale="natural", loss_fn="squared")
    log_x = RUNS.log_inputs()
    y = np.exp(RUNS.log_loss())
    # scipy's least squares (curve_fit's engine) from jaxscale's optimum and from its best start:
    # neither finds a lower sum of squares.
    ref = least_squares(_natural_residuals, res.theta, args=(log_x[:, 0], log_x[:, 1], y), xtol=1e-15, ftol=1e-15)
    assert res.converged and res.scale == "natural"
    assert res.objective == pytest.approx(0.5 * np.sum(ref.fun**2), rel=1e-9)
    assert res.objective <= 0.5 * np.sum(ref.fun**2) * (1 + 1e-9)
    np.testing.assert_allclose(res.theta, ref.x, rtol=1e-5, atol=1e-6)
    log_fit = js.fit(RUNS)
    assert abs(res.params["alpha"] - log_fit.params["alpha"]) > 1e-3  # another objective, another optimum


def test_mean_is_the_sum_over_the_runs_everywhere():
    total = js.fit(RUNS)
    mean = js.fit(RUNS, reduction="mean")
    assert mean.params == total.params and mean.reduction == "mean"
    assert mean.objective == pytest.approx(total.objective / 240, rel=1e-12)
    w = np.ones(240)
    w[:40] = 0.5
    weighted = js.fit(RUNS, reduction="mean", weights=w)
    assert weighted.objective == pytest.approx(js.fit(RUNS, weights=w).objective / w.sum(), rel=1e-12)
    boot = js.bootstrap(RUNS, n_resamples=8, reduction="mean", progress=False)
    plain = js.bootstrap(RUNS, n_resamples=8, progress=False)
    np.testing.assert_allclose(boot.objective, plain.objective / 240, rtol=1e-12)
    np.testing.assert_array_equal(boot.draws, plain.draws)
    with jax.enable_x64(True):
        sol = jsf.fit(js.get_law("chinchilla"), RUNS.log_inputs(), RUNS.log_loss(), reduction="mean")
    assert float(sol.objective) == pytest.approx(total.objective / 240, rel=1e-9)


def ladder(penalty_seed=0, n_sizes=8, per_size=6):
    """An under-tuned ladder: at each size some runs sit on the law (tuned), others above it by
    1-8% (learning rates off the optimum): the law is the lower envelope."""
    rng = np.random.default_rng(penalty_seed)
    rows = []
    for n in np.logspace(7.5, 9.5, n_sizes):
        for d in n * np.array([5.0, 10, 20, 40, 80])[: per_size - 1]:
            true = 1.8 + 400 / n**0.34 + 2000 / d**0.37
            for over in (0.0, *rng.uniform(0.01, 0.08, 2)):
                rows.append((n, d, true * (1 + over)))
    return pd.DataFrame(rows, columns=["N", "D", "loss"])


def test_overestimate_penalty_recovers_the_envelope():
    df = ladder()
    truth = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}
    symmetric = js.fit(df)
    lower = js.fit(df, overestimate_penalty=1000.0)
    assert lower.converged and lower.overestimate_penalty == 1000.0
    # Symmetric Huber fits through the middle of the cloud: its E sits above the envelope's.
    err = {k: (abs(lower.params[k] / v - 1), abs(symmetric.params[k] / v - 1)) for k, v in truth.items()}
    assert err["E"][0] < 0.01 < err["E"][1]
    assert err["alpha"][0] < err["alpha"][1] and err["beta"][0] < 0.05
    pred = lower.predict(N=df["N"].to_numpy(), D=df["D"].to_numpy())
    assert np.mean(pred > df["loss"].to_numpy() * (1 + 1e-3)) < 0.05  # almost no run below the curve


def test_options_round_trip_and_default_files_unchanged(tmp_path):
    res = js.fit(RUNS, scale="natural", reduction="mean", overestimate_penalty=3.0)
    js.save(res, tmp_path / "fit.json")
    back = js.load(tmp_path / "fit.json")
    assert (back.scale, back.reduction, back.overestimate_penalty) == ("natural", "mean", 3.0)
    assert back.objective == res.objective
    js.save(js.fit(RUNS), tmp_path / "default.json")
    doc = json.loads((tmp_path / "default.json").read_text())
    assert not {"scale", "reduction", "overestimate_penalty"} & set(doc)  # as earlier versions wrote it
    assert "x3 where the law over-predicts" in str(res) and "natural scale" in str(res)


def test_fit_groups_and_validate_take_the_options():
    df = (
        RUNS.to_frame()
        if hasattr(RUNS, "to_frame")
        else pd.DataFrame(
            {
                "N": np.exp(RUNS.log_inputs()[:, 0]),
                "D": np.exp(RUNS.log_inputs()[:, 1]),
                "loss": np.exp(RUNS.log_loss()),
            }
        )
    )
    df["half"] = np.arange(len(df)) % 2
    table = js.fit_groups(df, by="half", scale="natural", loss_fn="squared", reduction="mean")
    for _, row in table.iterrows():
        alone = js.fit(
            js.read_runs(df[df["half"] == row["half"]]), scale="natural", loss_fn="squared", reduction="mean"
        )
        assert row["alpha"] == pytest.approx(alone.params["alpha"], rel=1e-6)
        assert row["objective"] == pytest.approx(alone.objective, rel=1e-6)
    train = (df["N"] < 1e9).to_numpy()
    held = js.validate(js.read_runs(df), train=train, scale="natural", loss_fn="squared")
    alone = js.fit(js.read_runs(df[train]), scale="natural", loss_fn="squared")
    assert held.attrs["fit"].scale == "natural"
    assert held.attrs["params"]["alpha"] == pytest.approx(alone.params["alpha"], rel=1e-6)


def test_tied_exponents_law():
    rng = np.random.default_rng(0)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e10), 200))
    d = np.exp(rng.uniform(np.log(1e9), np.log(1e12), 200))
    loss = (1.7 + 400 / n**0.33 + 1500 / d**0.33) * np.exp(0.002 * rng.standard_normal(200))
    res = js.fit(pd.DataFrame({"N": n, "D": d, "loss": loss}), law="chinchilla_tied")
    assert res.converged and set(res.params) == {"E", "A", "B", "alpha"}
    assert abs(res.params["alpha"] - 0.33) < 0.01 and res.derived == {"a": 0.5, "b": 0.5}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"scale": "linear"}, r"scale must be one of \('log', 'natural'\)"),
        ({"reduction": "median"}, r"reduction must be one of \('sum', 'mean'\)"),
        ({"overestimate_penalty": 0.0}, "overestimate_penalty multiplies the loss where the law over-predicts"),
        ({"overestimate_penalty": float("nan")}, "must be a number > 0"),
    ],
)
def test_bad_objective_options(options, message):
    with pytest.raises(ValueError, match=message):
        js.fit(RUNS, **options)
    with pytest.raises(ValueError, match=message), jax.enable_x64(True):
        jsf.fit(js.get_law("chinchilla"), jnp.asarray(RUNS.log_inputs()), jnp.asarray(RUNS.log_loss()), **options)


def test_cli_objective_flags(tmp_path):
    path = tmp_path / "runs.csv"
    FRAME.to_csv(path, index=False)
    out = run("fit", str(path), "--scale", "natural", "--loss-fn", "squared", "--reduction", "mean", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    api = js.fit(js.read_runs(path), scale="natural", loss_fn="squared", reduction="mean")
    assert doc["diagnostics"]["scale"] == "natural" and doc["diagnostics"]["reduction"] == "mean"
    assert doc["objective"] == pytest.approx(api.objective, rel=1e-9)
    bad = run("fit", str(path), "--overestimate-penalty", "-1")
    assert bad.returncode == 2 and "overestimate_penalty" in bad.stderr.replace("-", "_")
