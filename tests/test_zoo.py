"""The law zoo: every law against an independent numpy formula, gradient safety at the edges,
recovery of known parameters with scipy L-BFGS-B from the same starts, user-defined laws, and
Muennighoff et al.'s data-constrained fit on their own 182 runs.

Nothing in the numpy references below imports jaxscale: they are the papers' formulas written
in natural parameters, exactly as printed (the data-constrained one as the datablations README's
``scaling_law``).
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

import jaxscale as js
from jaxscale.allocation import chinchilla_allocation
from jaxscale.laws import get_law
from jaxscale.objective import law_objective

FIXTURES = Path(__file__).parent / "fixtures"


# ------------------------------------------------------------------ independent references


def huber(r, delta=1e-3):
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def kaplan_np(p, N, D):
    return ((p["N_c"] / N) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / D) ** p["alpha_D"]


def data_constrained_np(p, N, D, U):
    E, A, B, alpha, beta = p["E"], p["A"], p["B"], p["alpha"], p["beta"]
    G = ((alpha * A) / (beta * B)) ** (1 / (alpha + beta))
    n_opt_of_u = (U * G) ** (beta / alpha) * G  # N_opt(C(U)): the README's D_to_N(U)
    UD = np.minimum(U, D)
    RD = np.maximum(D / UD - 1, 0)
    UN = np.minimum(N, n_opt_of_u)
    RN = np.maximum(N / UN - 1, 0)
    n_eff = UN + UN * p["R_N"] * (1 - np.exp(-RN / p["R_N"]))
    d_eff = UD + UD * p["R_D"] * (1 - np.exp(-RD / p["R_D"]))
    return E + A / n_eff**alpha + B / d_eff**beta


def broken_power_np(p, x):
    return p["a"] + p["b"] * x ** (-p["c0"]) * (1 + (x / p["d1"]) ** (1 / p["f1"])) ** (-p["c1"] * p["f1"])


def overtraining_np(p, N, M):
    b = -p["neg_b"]  # scaling/laws.py::powlaw_ours, with b < 0
    return p["alpha"] * N**b + p["beta"] * 6 ** (b / 2) * (M * N) ** b + p["E"]


REFERENCE = {
    "kaplan": kaplan_np,
    "data_constrained": data_constrained_np,
    "broken_power": broken_power_np,
    "overtraining": overtraining_np,
}

TRUTH = {
    # Kaplan et al. (2020)'s own values.
    "kaplan": {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095},
    # C4 Chinchilla coefficients of Muennighoff et al. with their published decay constants.
    "data_constrained": {
        "E": 1.87,
        "A": 520.8,
        "B": 1487.7,
        "alpha": 0.35,
        "beta": 0.35,
        "R_D": 15.4,
        "R_N": 5.3,
    },
    "broken_power": {"a": 1.0, "b": 10.0, "c0": 0.1, "c1": 0.3, "d1": 1e6, "f1": 0.5},
    # Close to the over-training law fitted to Gadre et al.'s RedPajama runs.
    "overtraining": {"E": 1.76, "alpha": 138.0, "beta": 302.0, "neg_b": 0.26},
}


def synthetic_inputs(name, rng, n=200):
    """Inputs spanning the regimes each law distinguishes (n runs)."""
    if name == "kaplan":
        N = 10 ** rng.uniform(7, 10.5, n)
        return {"N": N, "D": N * 10 ** rng.uniform(0, 2.5, n)}
    if name == "data_constrained":
        N = 10 ** rng.uniform(7, 10, n)
        D = N * 10 ** rng.uniform(0.5, 2.5, n)
        return {"N": N, "D": D, "U": D / 10 ** rng.uniform(0, 2.5, n)}  # 1 to ~300 epochs
    if name == "broken_power":
        return {"x": 10 ** rng.uniform(3, 9, n)}  # three decades either side of the break
    return {"N": 10 ** rng.uniform(7, 10, n), "M": 10 ** rng.uniform(np.log10(5), np.log10(640), n)}


def synthetic(name, seed, noise=0.002):
    """Runs from the truth with multiplicative log-normal noise, and the inputs by name."""
    rng = np.random.default_rng(seed)
    inputs = synthetic_inputs(name, rng)
    clean = REFERENCE[name](TRUTH[name], *inputs.values())
    return js.Runs.from_arrays(inputs, clean * np.exp(noise * rng.standard_normal(clean.shape))), inputs


def numpy_objective(name, runs):
    """Summed Huber(1e-3) of log residuals as a function of the law's *fitted* parameters."""
    law = get_law(name)
    cols = [runs.x[:, runs.inputs.index(k)] for k in law.inputs]
    log_y = np.log(runs.y)

    def objective(theta):
        # scipy's line search may try steps where a log-scale coefficient overflows: inf, then 1e10.
        with np.errstate(all="ignore"):
            nat = {k: np.exp(t) if lg else t for k, t, lg in zip(law.natural, theta, law.log_scale, strict=True)}
            value = huber(np.log(REFERENCE[name](nat, *cols)) - log_y).sum()
        return value if np.isfinite(value) else 1e10

    return objective


def scipy_best(objective, starts):
    """Best L-BFGS-B optimum over the starts (central finite-difference gradients, tight tolerances)."""
    best = None
    for x0 in starts:
        opts = {"ftol": 1e-15, "gtol": 1e-11, "maxiter": 20000, "maxfun": 100000}
        res = minimize(objective, x0, method="L-BFGS-B", jac="3-point", options=opts)
        if best is None or res.fun < best.fun:
            best = res
    return best


# ------------------------------------------------------------------ registry and formulas


def test_registered_under_design_names():
    for name in ("kaplan", "data_constrained", "broken_power", "overtraining"):
        assert get_law(name).name == name
    assert get_law("data_constrained").inputs == ("N", "D", "U")
    assert get_law("data_constrained").natural[-2:] == ("R_D", "R_N")
    assert js.broken_power_law(1) is get_law("broken_power")
    two = js.broken_power_law(2)
    assert two.natural == ("a", "b", "c0", "c1", "d1", "f1", "c2", "d2", "f2")
    assert two.grid_points().shape == (80 * 30 * 10, 9)
    with pytest.raises(ValueError, match="n_breaks"):
        js.broken_power_law(0)
    with pytest.raises(ValueError, match="already registered"):
        js.register(dataclasses.replace(get_law("kaplan"), grid=((0.0,),) * 4))
    assert js.register(get_law("kaplan")) is get_law("kaplan")  # re-registering the same law is a no-op


def test_kaplan_grid_contains_kaplans_values():
    law = get_law("kaplan")
    theta = law.from_natural(TRUTH["kaplan"])
    for i, values in enumerate(law.grid):
        assert min(values) < theta[i] < max(values), law.natural[i]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_log_space_predictor_matches_the_papers_formula(name):
    law = get_law(name)
    rng = np.random.default_rng(7)
    inputs = synthetic_inputs(name, rng, n=500)
    for scale in (0.8, 1.0, 1.25):  # around the truth, in every parameter at once
        params = {k: v * scale**j for j, (k, v) in enumerate(TRUTH[name].items())}
        if name == "data_constrained":
            params["beta"] = params["alpha"] * 1.1  # alpha != beta exercises N_opt's exponent
        expected = REFERENCE[name](params, *inputs.values())
        log_x = np.log(np.stack([inputs[k] for k in law.inputs], axis=-1))
        got = np.asarray(law.predict(law.from_natural(params), log_x))
        np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("name", ["chinchilla", "chinchilla_tied", "power"])
def test_logsumexp_laws_match_jax_logsumexp_with_derivatives_at_ties(name):
    """The LogSumExp laws take the exp of all but the largest term (jaxscale.laws._ranked_shares);
    value, gradient and Hessian must be jax.nn.logsumexp's, also where terms tie exactly (a grid
    start with e = a = alpha = 0 has two equal terms), where differentiating through the
    ranking's min/max would split the derivative wrongly."""
    law = get_law(name)
    k = len(law.inputs)
    rng = np.random.default_rng(3)
    log_x = jnp.asarray(rng.uniform(15.0, 28.0, (40, k)))
    log_y = jnp.asarray(rng.normal(0.7, 0.1, 40))

    def terms(theta, x):  # the law's terms, written out: e, then a_j - exponent_j * log x_j
        expo = theta[len(theta) - k :] if name != "chinchilla_tied" else jnp.repeat(theta[3], 2)
        return jnp.stack(
            [jnp.broadcast_to(theta[0], x.shape[:-1])] + [theta[1 + j] - expo[j] * x[:, j] for j in range(k)], -1
        )

    def objectives(theta, x):
        ours = jnp.sum((law.log_predict(theta, x) - log_y) ** 2)
        reference = jnp.sum((jax.nn.logsumexp(terms(theta, x), axis=-1) - log_y) ** 2)
        return ours, reference

    p = len(law.params)
    thetas = [rng.normal(0.5, 1.5, p) for _ in range(4)] + [np.zeros(p)]
    for theta, x in [(jnp.asarray(t), log_x) for t in thetas] + [(jnp.zeros(p), jnp.zeros((40, k)))]:
        value, reference = objectives(theta, x)
        np.testing.assert_allclose(value, reference, rtol=1e-14)
        for derivative in (jax.grad, jax.hessian):
            ours, expected = (derivative(lambda t, x=x, i=i: objectives(t, x)[i])(theta) for i in (0, 1))
            np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12 * float(jnp.max(jnp.abs(expected))))


def test_gradients_are_finite_at_the_edges():
    """Kinks (max/min), R* -> 0 or huge, non-positive exponents, repeats of 0 and of 1e15:
    the objective's gradient stays finite (the solver can always take a step or stop)."""
    law = get_law("data_constrained")
    pts = np.array(
        [
            [1e9, 2e10, 2e10],  # one epoch exactly: D = U, R_D = 0
            [1e9, 2e10, 4e10],  # U > D: U_D = D
            [1e10, 1e12, 1e6],  # 1e6 epochs, N far beyond N_opt(C(U))
            [1e7, 1e24, 1e9],  # 1e15 epochs
        ]
    )
    log_x, log_y = jnp.log(pts), jnp.log(jnp.full(4, 3.0))
    base = law.from_natural({**TRUTH["data_constrained"]})
    edits = [
        {},
        {3: 0.0},  # alpha = 0: N_opt undefined
        {4: -0.3},  # beta < 0
        {5: -200.0, 6: -200.0},  # R* = e^-200
        {5: 200.0, 6: 200.0},  # R* = e^200
        {3: 1e-12},  # beta / alpha = 3.5e11
    ]
    grad = jax.grad(law_objective)
    for edit in edits:
        theta = base.copy()
        for i, v in edit.items():
            theta[i] = v
        g = grad(jnp.asarray(theta), law, log_x, log_y, jnp.ones(4))
        assert np.all(np.isfinite(g)), edit
    bp = get_law("broken_power")
    theta = bp.from_natural({"a": 1.0, "b": 10.0, "c0": 0.1, "c1": 0.3, "d1": 1e-30, "f1": 1e-3})
    g = jax.grad(law_objective)(jnp.asarray(theta), bp, jnp.log(jnp.array([[1e3], [1e300]])), jnp.zeros(2), jnp.ones(2))
    assert np.all(np.isfinite(g))


# ------------------------------------------------------------------ recovery and scipy


# Relative tolerances on the natural parameters: 3x the largest deviation seen over four noise
# draws (0.2% log-normal noise, 200 runs; seeds 100-103). Exponents and E are pinned to ~1%;
# coefficients that multiply a power of N are correlated with its exponent and move ~5-8%.
RECOVERY_RTOL = {
    "kaplan": {"N_c": 0.08, "D_c": 0.15, "alpha_N": 0.01, "alpha_D": 0.015},
    "data_constrained": {
        "E": 0.01,
        "A": 0.2,
        "B": 0.04,
        "alpha": 0.035,
        "beta": 0.01,
        "R_D": 0.06,
        "R_N": 0.25,
    },
    "broken_power": {"a": 0.01, "b": 0.01, "c0": 0.01, "c1": 0.015, "d1": 0.03, "f1": 0.05},
    "overtraining": {"E": 0.012, "alpha": 0.04, "beta": 0.07, "neg_b": 0.012},
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_recovers_known_parameters_and_matches_scipy(name):
    law = get_law(name)
    runs, _ = synthetic(name, seed=0)
    objective = numpy_objective(name, runs)

    res = js.fit(runs, law=name)  # the law's default start grid, screened
    assert res.converged, str(res)
    assert res.objective <= objective(law.from_natural(TRUTH[name]))  # the truth is a feasible point
    for k, rtol in RECOVERY_RTOL[name].items():
        assert res.params[k] == pytest.approx(TRUTH[name][k], rel=rtol), (k, res.params)

    if name == "data_constrained":
        # The Chinchilla grid's best-screened starts include exponent-1 points on a plateau where
        # A/N^alpha is negligible and flat; from there scipy and jaxscale stop at *different*
        # plateau points. Compare from starts inside the basin instead: the truth, perturbed.
        rng = np.random.default_rng(1)
        starts = law.from_natural(TRUTH[name]) + rng.normal(0, 1, (4, 7)) * [0.1, 0.3, 0.3, 0.03, 0.03, 0.5, 0.5]
    else:
        # The 12 best grid points by initial objective (the screening jaxscale does). Fewer is
        # not enough for the broken power law: most of its starts stall on plateaus where a
        # break is degenerate (f1 -> 0 or d1 beyond the data), and which start escapes
        # differs between the two solvers; with 12, each reaches the optimum from some start.
        grid = law.grid_points()
        values = np.array([objective(g) for g in grid])
        starts = grid[np.argsort(values, kind="stable")[:12]]
    ours = js.fit(runs, law=name, starts=starts)
    ref = scipy_best(objective, starts)
    print(f"\n{name}: jaxscale {ours.objective:.12g}  scipy {ref.fun:.12g}  (default grid {res.objective:.12g})")
    # Same optimum within 1e-9 absolute or 1e-6 relative; never worse than scipy beyond round-off.
    assert abs(ours.objective - ref.fun) <= max(1e-9, 1e-6 * abs(ref.fun))
    assert ours.objective <= ref.fun + 1e-12


# ------------------------------------------------------------------ user-defined laws


def chinchilla_runs(seed=3, n=120):
    rng = np.random.default_rng(seed)
    N = 10 ** rng.uniform(7.5, 10.5, n)
    D = N * 10 ** rng.uniform(0, 2.5, n)
    y = (1.8 + 450.0 / N**0.34 + 2000.0 / D**0.34) * np.exp(0.005 * rng.standard_normal(n))
    return js.Runs.from_arrays({"N": N, "D": D}, y)


def test_user_law_in_a_few_lines_fits_bootstraps_and_holds_parameters_fixed():
    law = js.make_law(
        lambda p, x: p["E"] + p["A"] / x["N"] ** p["alpha"] + p["B"] / x["D"] ** p["alpha"],
        params=("E", "A", "B", "alpha"),
        inputs=("N", "D"),
        positive=("E", "A", "B"),
        grid={"E": [1.0, 2.0], "A": [100.0, 1000.0], "B": [100.0, 1000.0], "alpha": [0.2, 0.5]},
        name="tied_chinchilla",
    )
    runs = chinchilla_runs()
    res = js.fit(runs, law=law)
    assert res.converged, str(res)
    assert res.params["alpha"] == pytest.approx(0.34, abs=0.03)
    assert res.params["E"] == pytest.approx(1.8, rel=0.05)
    # Held fixed, E stays exactly where it was put and the rest is refitted.
    held = js.fit(runs, law=law, fixed={"E": 1.8})
    assert held.converged and held.params["E"] == 1.8 and held.fixed == ("E",)
    boot = js.bootstrap(runs, law=law, n_resamples=6, seed=0)
    assert boot.n_resamples == 6 and boot.n_failed == 0
    ci = boot.ci(0.9)
    assert list(ci.index) == ["E", "A", "B", "alpha"]
    assert ci.loc["alpha", "lower"] <= res.params["alpha"] <= ci.loc["alpha", "upper"]
    # The numeric frontier works on it unchanged; with alpha = beta it has Chinchilla's closed
    # form (a = b = 1/2), which the numeric optimum must match.
    front = js.frontier(res, [1e20, 1e22, 1e24])
    p = res.params
    n_opt, d_opt = chinchilla_allocation({"A": p["A"], "B": p["B"], "alpha": p["alpha"], "beta": p["alpha"]},
                                         front["compute"].to_numpy())  # fmt: skip
    np.testing.assert_allclose(front["N_opt"], n_opt, rtol=1e-6)
    np.testing.assert_allclose(front["D_opt"], d_opt, rtol=1e-6)
    band = js.frontier(boot, [1e22], level=0.9)
    assert band["N_opt_lower"][0] <= band["N_opt"][0] <= band["N_opt_upper"][0]


def test_user_law_reproduces_the_builtin_chinchilla_in_natural_and_log_space():
    runs = chinchilla_runs(seed=4)
    builtin = js.fit(runs, law="chinchilla")
    # The same start for every variant: the builtin optimum, nudged.
    start = [{**builtin.params, "alpha": builtin.params["alpha"] * 1.05, "beta": builtin.params["beta"] * 0.95}]
    grid = {"E": [1.0], "A": [100.0], "B": [100.0], "alpha": [0.3], "beta": [0.3]}
    natural = js.make_law(
        lambda p, x: p["E"] + p["A"] / x["N"] ** p["alpha"] + p["B"] / x["D"] ** p["beta"],
        params=("E", "A", "B", "alpha", "beta"),
        inputs=("N", "D"),
        positive=("E", "A", "B"),
        grid=grid,
    )
    logspace = js.make_law(
        lambda p, lx: jnp.logaddexp(
            jnp.log(p["E"]),
            jnp.logaddexp(jnp.log(p["A"]) - p["alpha"] * lx["N"], jnp.log(p["B"]) - p["beta"] * lx["D"]),
        ),
        params=("E", "A", "B", "alpha", "beta"),
        inputs=("N", "D"),
        positive=("E", "A", "B"),
        grid=grid,
        space="log",
    )
    ref = js.fit(runs, law="chinchilla", starts=start)
    for law in (natural, logspace):
        res = js.fit(runs, law=law, starts=start)
        assert res.converged, str(res)
        assert res.objective == pytest.approx(ref.objective, rel=1e-9)
        for k, v in ref.params.items():
            assert res.params[k] == pytest.approx(v, rel=1e-5), k


def test_user_law_natural_space_guards_non_positive_predictions():
    law = js.make_law(
        lambda p, x: p["c"] - p["s"] * jnp.log(x["x"]),  # goes negative for large x
        params=("c", "s"),
        inputs=("x",),
        grid={"c": [1.0, 3.0], "s": [0.05, 0.5]},
    )
    x = jnp.log(jnp.array([[10.0], [1e30]]))
    theta = jnp.array([1.0, 0.5])
    values = law.log_predict(theta, x)
    assert np.isfinite(values[0]) and values[1] < -700  # log of the smallest float, not NaN/-inf
    g = jax.grad(law_objective)(theta, law, x, jnp.zeros(2), jnp.ones(2))
    assert np.all(np.isfinite(g))


def test_user_law_argument_errors_name_the_fix():
    fn = lambda p, x: p["E"] + x["N"] * 0  # noqa: E731
    with pytest.raises(ValueError, match="space must be"):
        js.make_law(fn, params=("E",), inputs=("N",), grid={"E": [1.0]}, space="exp")
    with pytest.raises(ValueError, match="missing \\['E'\\]"):
        js.make_law(fn, params=("E",), inputs=("N",), grid={"F": [1.0]})
    with pytest.raises(ValueError, match="must be > 0"):
        js.make_law(fn, params=("E",), inputs=("N",), grid={"E": [0.0, 1.0]}, positive=("E",))
    with pytest.raises(ValueError, match="not parameters"):
        js.make_law(fn, params=("E",), inputs=("N",), grid={"E": [1.0]}, positive=("A",))


# ------------------------------------------------------------------ Muennighoff et al. (2023)

# C4 Chinchilla coefficients of the datablations notebook (cells 7/15): LOG values of A, B, E.
C4_LOG = {"a": 6.255414, "b": 7.3049974, "e": 0.6254804, "alpha": 0.3526596}
C4 = {
    "E": float(np.exp(C4_LOG["e"])),
    "A": float(np.exp(C4_LOG["a"])),
    "B": float(np.exp(C4_LOG["b"])),
    "alpha": C4_LOG["alpha"],
    "beta": C4_LOG["alpha"],
}
PUBLISHED = {"R_D": 15.387756, "R_N": 5.309743}  # README / notebook cell 29
NOTEBOOK_OBJECTIVE = 0.015825936570763588  # cell 29's printed minimum (float32 torch)
README_EXAMPLES = np.array([[6.34e9, 242e9, 25e9], [8.67e9, 178e9, 25e9]])
README_PREDICTIONS = np.array([2.2256440889984477, 2.2269634075087867])  # printed by the README code


def datablations():
    df = pd.read_csv(FIXTURES / "muennighoff2023_datablations" / "datablations_runs.csv")
    final = df[df["in_final_fit_set"] == 1]
    assert len(final) == 182
    return js.read_runs(final, N="params_N", D="tokens_D", U="unique_tokens_U", loss="val_loss")


def test_published_law_predictions_and_objective():
    """At the published R_D*, R_N* our log-space law gives the README's predictions to all 17
    printed digits, and the paper's objective to 1e-6 relative."""
    law = get_law("data_constrained")
    theta = law.from_natural({**C4, **PUBLISHED})
    pred = np.asarray(law.predict(theta, np.log(README_EXAMPLES)))
    np.testing.assert_allclose(pred, README_PREDICTIONS, rtol=1e-12)
    assert np.round(pred, 5).tolist() == [2.22564, 2.22696]
    runs = datablations()
    value = float(law_objective(theta, law, jnp.log(runs.x), jnp.log(runs.y), jnp.ones(runs.n_points)))
    assert value == pytest.approx(NOTEBOOK_OBJECTIVE, rel=1e-6)
    assert round(value, 7) == 0.0158259


def test_published_decay_constants_are_a_float32_local_minimum():
    """Started at the published values, the float64 fit moves 0.10% along a flat valley.

    The authors fitted in float32 (``torch.Tensor``). Our float64 minimum of that basin,
    R_D* = 15.3718, R_N* = 5.3151, lies 0.104% / 0.101% from the published 15.387756 / 5.309743
    -- just outside the 0.1% one might expect -- while the objective there is lower by only
    3.2e-9 (2.0e-7 relative): below what a float32 sum of 182 Huber terms resolves (rounding
    error ~sqrt(182) * 1.2e-7 = 1.6e-6 relative; the notebook's own two candidates,
    15.373248/5.3098564 and the published pair, print objectives 7.5e-9 apart).
    So the published R* are determined to ~0.1% by the float32 arithmetic, not by the data;
    the objective agrees to 3e-7 relative. We assert 0.15% on R* and 1e-6 on the objective.
    """
    runs = datablations()
    res = js.fit(runs, law="data_constrained", fixed=C4, starts=[{**C4, **PUBLISHED}])
    print(
        f"\npublished basin, float64: R_D*={res.params['R_D']:.6f} R_N*={res.params['R_N']:.6f} obj={res.objective!r}"
    )
    assert res.converged, str(res)
    assert res.params["R_D"] == pytest.approx(PUBLISHED["R_D"], rel=1.5e-3)
    assert res.params["R_N"] == pytest.approx(PUBLISHED["R_N"], rel=1.5e-3)
    assert res.objective == pytest.approx(NOTEBOOK_OBJECTIVE, rel=1e-6)
    law = get_law("data_constrained")
    at_published = float(
        law_objective(law.from_natural({**C4, **PUBLISHED}), law, jnp.log(runs.x), jnp.log(runs.y), jnp.ones(182))
    )
    assert 0 < at_published - res.objective < 1e-6 * res.objective  # lower, by < 1e-6 relative
    # The README's predictions move by ~1e-5 with it: the first still rounds to 2.22564, the
    # second becomes 2.22695 (printed 2.22696).
    pred = res.predict(N=README_EXAMPLES[:, 0], D=README_EXAMPLES[:, 1], U=README_EXAMPLES[:, 2])
    print(f"README examples at this optimum: {pred.tolist()}")
    np.testing.assert_allclose(pred, README_PREDICTIONS, atol=2e-5)


def test_start_grid_finds_a_lower_minimum_than_published():
    """On the 182 runs the objective has several local minima along a long, flat R_D*/R_N*
    valley: (15.37, 5.32) 0.01582593, (46.99, 2.33) 0.01580738, (52.2, 2.20), (160.7, 1.45)
    and the lowest, (95.37, 1.706) 0.01580466 (a dense 400x300 log-grid scan over
    R_D* in [1, 1e5], R_N* in [0.05, 50] finds no lower point). The published optimum is the
    first: the authors' grid, np.linspace(0, 20, 4) for both, never starts beyond R* = 20, its
    R* = 0 starts are NaN in their code, and the notebook prints every improvement it finds:
    both printed points are in the first basin, so none of its starts reached a lower one.
    jaxscale's default 4x4 grid (1, 10, 100, 1000 for both) reaches the lowest minimum, 0.13%
    below the published objective; scipy L-BFGS-B on an independent numpy objective agrees from
    the same starts. Not a bug in either fit: R_D* and R_N* are poorly identified by these runs
    (a 32-resample bootstrap puts R_D* anywhere from ~7 to "infinite", asserted below), so the
    data-constrained law's decay constants should be read with that caveat.
    """
    runs = datablations()
    law = get_law("data_constrained")
    objective = numpy_objective("data_constrained", runs)

    res = js.fit(runs, law="data_constrained", fixed=C4)  # the law's own 4x4 (R_D*, R_N*) grid
    np.testing.assert_allclose(np.exp(law.grid[5]), law_grid())
    np.testing.assert_allclose(np.exp(law.grid[6]), law_grid())
    assert res.converged and res.n_starts == 16, str(res)
    print(f"\n{res}")
    starts = np.array([law.from_natural({**C4, "R_D": rd, "R_N": rn}) for rd in law_grid() for rn in law_grid()])
    ref = scipy_best(lambda th2: objective(np.concatenate([starts[0, :5], th2])), starts[:, 5:])
    assert abs(res.objective - ref.fun) <= max(1e-9, 1e-6 * ref.fun)
    assert res.objective == pytest.approx(0.01580466247, rel=1e-6)
    assert res.params["R_D"] == pytest.approx(95.365, rel=1e-3)
    assert res.params["R_N"] == pytest.approx(1.70590, rel=1e-3)
    assert NOTEBOOK_OBJECTIVE - res.objective > 2e-5  # lower than published by 0.13%

    # The authors' grid (R* = 0 moved to 1): which minimum of the valley a start drains into
    # depends on the optimiser's path. jaxscale's best start ends at (46.99, 2.33); scipy's (in
    # the same log coordinates) at the lowest one. Both lie below the published objective.
    authors = [1.0, 20 / 3, 40 / 3, 20.0]
    starts = np.array([law.from_natural({**C4, "R_D": rd, "R_N": rn}) for rd in authors for rn in authors])
    ours = js.fit(runs, law="data_constrained", fixed=C4, starts=starts)
    ref = scipy_best(lambda th2: objective(np.concatenate([starts[0, :5], th2])), starts[:, 5:])
    print(
        f"authors' grid: jaxscale R_D*={ours.params['R_D']:.4f} R_N*={ours.params['R_N']:.4f} "
        f"obj={ours.objective!r}; scipy R*={np.exp(ref.x).round(4).tolist()} obj={ref.fun!r}"
    )
    assert ours.converged
    assert ours.objective == pytest.approx(0.01580737857, rel=1e-6)
    assert ref.fun == pytest.approx(res.objective, rel=1e-6)
    assert max(ours.objective, ref.fun) < NOTEBOOK_OBJECTIVE - 1.5e-5

    pred = res.predict(N=README_EXAMPLES[:, 0], D=README_EXAMPLES[:, 1], U=README_EXAMPLES[:, 2])
    print(f"README examples at the lowest minimum: {pred.tolist()} (published law: {README_PREDICTIONS.tolist()})")
    assert pred[0] < pred[1]  # the README's conclusion (fewer params, more epochs) survives

    # Percentiles on the log scale, not boot.ci(): a few resamples send R_D* into the region
    # beyond e^50 where the law no longer depends on it (repeated data as good as new), and the
    # standard deviation of such draws overflows.
    boot = js.bootstrap(runs, law="data_constrained", fixed=C4, n_resamples=32, seed=0)
    assert boot.n_failed == 0
    for name in ("R_D", "R_N"):
        lo, hi = np.percentile(np.log(boot.samples[name]), [2.5, 97.5])
        print(f"{name}* 95% bootstrap interval (32 resamples): e^{lo:.2f} .. e^{hi:.2f}")
    lo, hi = np.percentile(np.log(boot.samples["R_D"]), [2.5, 97.5])
    assert hi - lo > np.log(1e6)  # six decades at least: R_D* is not identified by these runs


def law_grid():
    return [1.0, 10.0, 100.0, 1000.0]
