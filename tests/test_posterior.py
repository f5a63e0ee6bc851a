"""js.posterior: NUTS chains (blackjax) against the bootstrap, known truths, scipy's densities."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import jaxscale as js
from jaxscale import priors
from jaxscale.posterior_result import diagnose
from jaxscale.saving import content_hash

pytest.importorskip("blackjax", reason="posterior() needs the optional blackjax: pip install 'jaxscale[bayes]'")

TRUTH = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}


def synthetic(n: int, sigma: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(5e7), np.log(5e10), n))
    D = np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))
    loss = TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / D ** TRUTH["beta"]
    return pd.DataFrame({"N": N, "D": D, "loss": loss * np.exp(sigma * rng.normal(size=n))})


def test_epoch_gaussian_posterior_against_the_bootstrap():
    """The must-show of the issue: on Epoch AI's 240 points, the Gaussian posterior's mean lies
    within the bootstrap's 95% interval for every parameter, R-hat < 1.01, no divergences.
    Finding: the Gaussian (least-squares) posterior sits above the Huber fit in E, alpha and beta
    (mean 1.864, 0.360, 0.406 against 1.817, 0.347, 0.367): least squares weighs the runs Huber's
    linear arm discounts; still inside the bootstrap's intervals."""
    runs = js.datasets.chinchilla()
    post = js.posterior(runs, chains=4, draws=1000, warmup=1000, seed=1)
    boot = js.bootstrap(runs, n_resamples=2000, seed=0)
    assert post.status == "ok", post.status
    assert post.diagnostics["max_rhat"] < 1.01
    assert post.diagnostics["divergences"] == 0
    pc, bc = post.ci(0.95), boot.ci(0.95)
    shown = pd.DataFrame({"posterior mean": pc["mean"], "boot lower": bc["lower"], "boot upper": bc["upper"]})
    print("\n" + shown.loc[list(TRUTH)].to_string())
    for name in TRUTH:
        assert bc.loc[name, "lower"] < pc.loc[name, "mean"] < bc.loc[name, "upper"], name
    assert 0.005 < pc.loc["sigma", "mean"] < 0.01  # the residual scale in log loss
    bands = js.frontier(post, compute=[1e24])
    assert bands.loc[0, "N_opt_lower"] < bands.loc[0, "N_opt"] < bands.loc[0, "N_opt_upper"]
    ratio = np.median(post.samples_frame(compute=[1e24])["tokens_per_param@1e+24"])
    assert bands.loc[0, "tokens_per_param"] == pytest.approx(ratio, rel=1e-9)  # the estimate: the median


@pytest.mark.parametrize("likelihood", ["gaussian", "student_t", "huber"])
def test_every_likelihood_covers_a_known_law(likelihood):
    df = synthetic(80, sigma=0.01, seed=3)
    post = js.posterior(df, likelihood=likelihood, chains=4, draws=600, warmup=600, seed=2)
    assert post.status == "ok", post.status
    ci = post.ci(0.99)
    for name, truth in TRUTH.items():
        assert ci.loc[name, "lower"] < truth < ci.loc[name, "upper"], (likelihood, name)
    if likelihood == "gaussian":  # sigma is the noise's own scale only under the Gaussian
        assert ci.loc["sigma", "lower"] < 0.01 < ci.loc["sigma", "upper"]
    frame = post.samples_frame(compute=[1e22])
    assert len(frame) == 4 * 600 and {"chain", "draw", "alpha", "sigma", "tokens_per_param@1e+22"} <= set(frame)


def test_an_informative_prior_narrows_a_small_ladder():
    """12 runs of the Epoch points: with Chinchilla's full-data bootstrap as the prior, alpha's
    posterior is narrower than under the default prior, and its mean moves towards the full fit."""
    full = js.datasets.chinchilla()
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(full.n_points, 12, replace=False))
    small = full._replace(x=full.x[pick], y=full.y[pick], rows=full.rows[pick])
    boot = js.bootstrap(full, n_resamples=500, seed=0)
    options = dict(chains=4, draws=600, warmup=600, seed=0)
    vague = js.posterior(small, **options).ci()
    informed = js.posterior(small, prior=priors.from_bootstrap(boot), **options)
    assert informed.status == "ok", informed.status
    ci = informed.ci()
    assert ci.loc["alpha", "sd"] < 0.5 * vague.loc["alpha", "sd"]
    assert abs(ci.loc["alpha", "mean"] - boot.point.params["alpha"]) < 3 * boot.ci().loc["alpha", "se"]


def test_prior_terms_are_the_densities_they_name():
    """Up to a constant, against scipy: a normal on the natural value of a log coordinate (with the
    Jacobian), a log-normal on a log coordinate, a normal and a log-normal on an exponent."""
    law = js.get_law("chinchilla")
    terms = {"E": priors.normal(1.7, 0.2), "A": priors.lognormal(400.0, 0.5), "alpha": priors.lognormal(0.3, 0.2)}
    p = priors.resolve(law, terms | {"beta": priors.normal(0.4, 0.1)}, [0, 1, 2, 3, 4])

    def expected(z):
        e, a, b, alpha, beta, s = z
        return (
            stats.norm.logpdf(np.exp(e), 1.7, 0.2) + e
            + stats.norm.logpdf(a, np.log(400.0), 0.5)
            + stats.norm.logpdf(b, 12.5, 25.0)
            + stats.lognorm.logpdf(alpha, 0.2, scale=0.3)
            + stats.norm.logpdf(beta, 0.4, 0.1)
            + stats.norm.logpdf(s, np.log(0.03), 1.5)
        )  # fmt: skip

    z1, z2 = np.array([0.5, 6.0, 7.0, 0.35, 0.38, -4.0]), np.array([0.6, 5.5, 8.0, 0.31, 0.45, -5.0])
    got = float(priors.log_density(p, z2)) - float(priors.log_density(p, z1))
    assert got == pytest.approx(expected(z2) - expected(z1), rel=1e-10)
    assert float(priors.log_density(p, np.array([0.5, 6.0, 7.0, -0.1, 0.38, -4.0]))) == -np.inf  # alpha <= 0


def test_diagnostics_name_what_failed():
    law = js.get_law("chinchilla")
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(4, 200, 5))
    theta[0, :, 3] += 3.0  # one chain elsewhere in alpha
    info = {"divergent": np.zeros((4, 200), bool), "doublings": np.full((4, 200), 3), "acceptance": np.ones((4, 200))}
    info["divergent"][1, 5] = True
    d = diagnose(law, theta, [0, 1, 2, 3, 4], rng.normal(size=(4, 200)), info, 10)
    assert d["status"].startswith("not_converged: R-hat")
    assert "1 divergent transitions" in d["status"]
    assert d["per_parameter"]["alpha"]["rhat"] > 1.1 and d["per_parameter"]["E"]["rhat"] < 1.01
    ok = diagnose(law, rng.normal(size=(4, 200, 5)), [0, 1, 2, 3, 4], rng.normal(size=(4, 200)), info | {
        "divergent": np.zeros((4, 200), bool)}, 10)  # fmt: skip
    assert ok["status"] == "ok", ok["status"]


def test_bad_input_gets_the_fits_errors_and_the_samplers_own():
    df = synthetic(30, sigma=0.01)
    df.loc[4, "loss"] = np.nan
    with pytest.raises(ValueError, match="column 'loss'"):
        js.posterior(df)
    df = synthetic(30, sigma=0.01)
    with pytest.raises(ValueError, match="chains must be an integer of at least 2"):
        js.posterior(df, chains=1)
    with pytest.raises(ValueError, match="unknown likelihood 'laplace'"):
        js.posterior(df, likelihood="laplace")
    with pytest.raises(ValueError, match="prior for 'gamma'"):
        js.posterior(df, prior={"gamma": priors.normal(0, 1)})
    with pytest.raises(ValueError, match="prior for 'E': it is held fixed"):
        js.posterior(df, prior={"E": priors.normal(1.8, 0.1)}, fixed={"E": 1.8})
    with pytest.raises(ValueError, match="spread > 0"):
        priors.normal(0.3, 0.0)


def test_groups_sample_side_by_side_and_agree_with_one_group_alone():
    """by=: every group's chains in one call, each around its own fit; a group's posterior agrees
    with the same group sampled alone (other keys, so to Monte Carlo error: 3 posterior sd of
    the mean at most, with ESS in the hundreds)."""
    frames = []
    for g, e in enumerate((1.8, 1.9, 2.0)):
        df = synthetic(50, sigma=0.01, seed=10 + g)
        df["loss"] += e - TRUTH["E"]  # each group its own E
        frames.append(df.assign(group=g))
    df = pd.concat(frames, ignore_index=True)
    options = dict(chains=4, draws=500, warmup=500, seed=0)
    posts = js.posterior(df, by="group", **options)
    assert list(posts) == [(0,), (1,), (2,)]
    for g, e in enumerate((1.8, 1.9, 2.0)):
        ci = posts[(g,)].ci(0.99)
        assert ci.loc["E", "lower"] < e < ci.loc["E", "upper"], g
        assert posts[(g,)].diagnostics["divergences"] == 0
    alone = js.posterior(df[df["group"] == 1], **options).ci()
    together = posts[(1,)].ci()
    for name in ("E", "alpha", "beta"):
        assert abs(alone.loc[name, "mean"] - together.loc[name, "mean"]) < 3 * together.loc[name, "sd"] / np.sqrt(100)


def test_groups_give_the_same_chains_in_calls_of_any_size(monkeypatch):
    """by= in calls of the backend's number of groups, two calls at a time (a CPU's default), or
    every group in one call: on one device the same chains, to the bit."""
    from jaxscale import backends

    frames = [synthetic(25, sigma=0.01, seed=40 + g).assign(group=g) for g in range(3)]
    df = pd.concat(frames, ignore_index=True)
    options = dict(chains=2, draws=60, warmup=60, seed=1, devices=1)
    out = {}
    for per_call, at_once in ((0, 1), (2, 2)):  # 3 groups: one call; calls of 2 (the last padded)
        monkeypatch.setattr(backends, "CPU", backends.CPU._replace(posterior_groups=per_call, calls_at_once=at_once))
        out[per_call] = js.posterior(df, by="group", **options)
    for per_call in (2,):
        for key, post in out[0].items():
            np.testing.assert_array_equal(out[per_call][key].draws, post.draws)  # rtol 0
            np.testing.assert_array_equal(out[per_call][key].sigma, post.sigma)


def test_groups_take_run_weights_and_split_over_devices_alike(tmp_path):
    """weights= with by=: weight-0 runs (outliers here) are left out, as if never given. Groups
    split over 2 CPU devices (3 groups, padded to 4) sample the same posteriors as on one device,
    to Monte Carlo error. Not the same draws: the partitioned program's chains differ from the
    first draws on (a finding, not chased: inits, log density and gradient are bit-identical, and
    on one device any number of groups gives bit-identical chains)."""
    frames = [synthetic(30, sigma=0.01, seed=20 + g).assign(group=g) for g in range(3)]
    outliers = synthetic(8, sigma=0.01, seed=30).assign(group=1)
    outliers["loss"] *= 1.3
    df = pd.concat([*frames, outliers], ignore_index=True)
    w = np.where(np.arange(len(df)) >= 90, 0.0, 1.0)
    options = dict(chains=4, draws=400, warmup=400, seed=0)
    weighted = js.posterior(df, by="group", weights=w, **options)[(1,)].ci()
    clean = js.posterior(frames[1], **options).ci()
    for name in ("E", "alpha", "beta", "sigma"):
        assert abs(weighted.loc[name, "mean"] - clean.loc[name, "mean"]) < 3 * clean.loc[name, "sd"] / np.sqrt(100)
    path = tmp_path / "runs.csv"
    df.iloc[:90].to_csv(path, index=False)
    code = (
        "import sys, numpy as np, pandas as pd, jaxscale as js\n"
        "js.use_cpu_cores(2)\n"
        "df = pd.read_csv(sys.argv[1])\n"
        "one, two = (js.posterior(df, by='group', chains=4, draws=400, warmup=400, seed=3, devices=d)\n"
        "            for d in (1, 2))\n"
        "z = [abs(one[k].ci().loc[n, 'mean'] - two[k].ci().loc[n, 'mean']) / one[k].ci().loc[n, 'sd']\n"
        "     for k in one for n in ('E', 'alpha', 'beta', 'sigma')]\n"
        "print(len(two), sorted(two) == sorted(one), max(z))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    n, same_keys, worst = done.stdout.split()
    assert (n, same_keys) == ("3", "True")
    assert float(worst) < 3 / np.sqrt(100)  # means within 3 Monte Carlo errors (ESS >= 100 per chain)
    with pytest.raises(ValueError, match="devices must be between 1 and"):
        js.posterior(df, by="group", devices=64, **options)


@pytest.mark.parametrize("likelihood", ["gaussian", "student_t", "huber"])
def test_predictive_intervals_cover_new_runs_including_their_noise(likelihood):
    """90% predictive intervals (curve and noise) of 300 new runs drawn like the 60 fitted ones
    cover about 90% of them; the curve alone would cover far fewer at this noise (2% in log loss)."""
    df = synthetic(360, sigma=0.02, seed=7)
    train, test = df.iloc[:60], df.iloc[60:]
    post = js.posterior(train, likelihood=likelihood, chains=4, draws=500, warmup=500, seed=3)
    pred = post.predictive(0.9, N=test["N"].to_numpy(), D=test["D"].to_numpy())
    inside = (pred["lower"] < test["loss"].to_numpy()) & (test["loss"].to_numpy() < pred["upper"])
    assert 0.84 < inside.mean() < 0.96, inside.mean()
    assert np.all(pred["lower"] < pred["mean"]) and np.all(pred["mean"] < pred["upper"])


def test_save_and_load_keep_every_draw_the_prior_and_the_diagnostics(tmp_path):
    df = synthetic(30, sigma=0.02, seed=4)
    post = js.posterior(df, likelihood="student_t", nu=5.0, prior={"alpha": priors.normal(0.3, 0.05)},
                        chains=2, draws=60, warmup=60, seed=5)  # fmt: skip
    path = js.save(post, tmp_path / "post.json")
    back = js.load(path)
    assert isinstance(back, js.PosteriorResult)
    np.testing.assert_array_equal(back.theta, post.theta)
    np.testing.assert_array_equal(back.sigma, post.sigma)
    assert (back.likelihood, back.nu, back.seed, back.status) == ("student_t", 5.0, 5, post.status)
    assert back.diagnostics == post.diagnostics and back.point.params == post.point.params
    for field in ("kind", "a", "b", "log_coordinate"):
        np.testing.assert_array_equal(getattr(back.prior, field), getattr(post.prior, field))
    pd.testing.assert_frame_equal(back.ci(compute=[1e23]), post.ci(compute=[1e23]), rtol=0, atol=0)
    pd.testing.assert_frame_equal(js.frontier(back, [1e22, 1e24]), js.frontier(post, [1e22, 1e24]))
    doc = json.loads(path.read_text())
    doc["theta"][1][7][3] += 1e-3  # one draw of alpha edited
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="does not match its field 'sha256'"):
        js.load(path)
    doc["theta"][1][7] = doc["theta"][1][7][:4]  # a draw missing a coordinate, hash refreshed
    doc["sha256"] = content_hash(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"field 'theta' should be \[chains, draws, 5\]"):
        js.load(path)


def test_warmup_metric_is_the_laplace_covariance_with_indefinite_curvature_taken_by_size():
    # The chains' first metric: the inverse Hessian of the negative log density where it is
    # positive definite; where a direction curves the wrong way (a fit that is not the
    # posterior's mode) the eigenvalue counts by its size, so no direction falls back to 1.
    import jax
    import jax.numpy as jnp

    from jaxscale.posterior import _dispersed

    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    mode = jnp.array([0.5, -1.0, 2.0])
    with jax.enable_x64(True):
        for eigenvalues, inits_spread in (([4.0, 2.5e3, 1e6], "laplace"), ([4.0, -0.5, 1e6], "fallback")):
            curvature = rotation @ np.diag(eigenvalues) @ rotation.T
            log_density = lambda z, c=curvature: -0.5 * (z - mode) @ c @ (z - mode)  # noqa: E731
            inits, metric = _dispersed(log_density, mode, 4000, jax.random.key(1))
            expected = rotation @ np.diag(1 / np.abs(eigenvalues)) @ rotation.T
            np.testing.assert_allclose(np.asarray(metric), expected, rtol=1e-9, atol=1e-15)
            spread = np.cov(np.asarray(inits - mode).T)
            if inits_spread == "laplace":  # twice the Laplace sd: 4x its covariance, to sampling error
                np.testing.assert_allclose(np.diag(spread), 4 * np.diag(expected), rtol=0.1)
            else:  # 0.05 per coordinate
                np.testing.assert_allclose(np.diag(spread), 0.05**2, rtol=0.1)
