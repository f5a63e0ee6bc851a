"""Bootstrap: weights, reproducibility, failure accounting, and Epoch AI's published intervals."""

import importlib
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jaxscale as js
from jaxscale.runner import resample_weights


def test_weights_are_multinomial_counts_and_chunk_independent():
    key = jax.random.key(7)
    w = resample_weights(key, 0, 50, 240)
    assert w.shape == (50, 240)
    np.testing.assert_array_equal(w.sum(axis=1), 240)  # each resample draws 240 runs
    # Resample i depends only on (seed, i): any slicing gives the same rows.
    np.testing.assert_array_equal(resample_weights(key, 20, 30, 240), w[20:30])
    np.testing.assert_array_equal(resample_weights(key, 5, 6, 240), w[5:6])  # drawn in power-of-two counts
    assert resample_weights(key, 9, 9, 240).shape == (0, 240)
    # ... and on whether x64 is on (a float32 bootstrap draws them with x64 off).
    with jax.enable_x64(False):
        np.testing.assert_array_equal(resample_weights(key, 0, 50, 240), w)
    # About 1 - 1/e of the runs appear in a resample (the bootstrap's 63.2%).
    assert np.mean(w > 0) == pytest.approx(1 - np.exp(-1), abs=0.02)


def test_cluster_weights_give_every_run_its_clusters_count():
    clusters = np.repeat(np.arange(10), 5)  # 10 clusters of 5 runs
    w = resample_weights(jax.random.key(0), 0, 20, 50, clusters)
    for row in w:
        per_cluster = row.reshape(10, 5)
        assert np.all(per_cluster == per_cluster[:, :1])  # constant within a cluster
        assert per_cluster[:, 0].sum() == 10  # 10 clusters drawn


def test_same_seed_same_draws_whatever_the_chunk_size():
    # At a fixed lane count (the contract); 96 lanes rather than 512 keep small chunks cheap.
    runs, opts = js.datasets.chinchilla(), dict(n_resamples=40, lanes=96, progress=False)
    a = js.bootstrap(runs, seed=3, chunk_size=40, **opts)
    b = js.bootstrap(runs, seed=3, chunk_size=16, **opts)  # 16 + 16 + 8 padded
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_allclose(a.draws, b.draws, rtol=1e-12, atol=0)
    assert a.ci(0.9).equals(b.ci(0.9))
    c = js.bootstrap(runs, seed=4, chunk_size=40, **opts)
    assert not np.allclose(a.draws, c.draws)  # another seed, other draws


def test_failed_resamples_are_counted_and_excluded():
    runs = js.datasets.chinchilla()
    boot = js.bootstrap(runs, n_resamples=24, seed=0, max_steps=90, progress=False)
    # With 90 steps some resamples' best start is still running: they must be reported.
    assert 0 < boot.n_failed < boot.n_resamples
    table = boot.ci(0.9)
    assert (table["n_used"] == boot.n_resamples - boot.n_failed).all()
    assert (table["n_failed"] == boot.n_failed).all()
    assert f"{boot.n_failed} of 24 resamples failed" in str(boot)
    frame = boot.samples_frame()
    assert (frame["status"] != "converged").sum() == boot.n_failed


def test_cluster_bootstrap_by_model_size_is_wider_for_alpha():
    runs = js.datasets.chinchilla()
    sizes = np.round(np.log(runs.x[:, 0]), 2)  # 43 model sizes (extraction jitter ~1e-6)
    iid = js.bootstrap(runs, n_resamples=200, seed=1, progress=False)
    clustered = js.bootstrap(runs, n_resamples=200, seed=1, clusters=sizes, progress=False)
    assert clustered.cluster_count == len(np.unique(sizes))
    assert clustered.n_failed == 0 and iid.n_failed == 0
    # Resampling whole model sizes keeps the within-size correlation: alpha (the N exponent)
    # must be at least as uncertain as under the i.i.d. bootstrap.
    assert clustered.ci(0.9).loc["alpha", "se"] > iid.ci(0.9).loc["alpha", "se"]


def test_derived_quantities_match_their_formulas():
    boot = js.bootstrap(js.datasets.chinchilla(), n_resamples=16, seed=0, progress=False)
    s = boot.samples
    d = boot.derived_samples(compute=[1e22], at={"N": [7e10], "D": [1.4e12]})
    np.testing.assert_allclose(d["a"], s["beta"] / (s["alpha"] + s["beta"]), rtol=1e-14)
    g = (s["alpha"] * s["A"] / (s["beta"] * s["B"])) ** (1 / (s["alpha"] + s["beta"]))
    ratio = g**-2 * (1e22 / 6) ** ((s["alpha"] - s["beta"]) / (s["alpha"] + s["beta"]))
    np.testing.assert_allclose(d["tokens_per_param@1e+22"], ratio, rtol=1e-10)
    loss = s["E"] + s["A"] / 7e10 ** s["alpha"] + s["B"] / 1.4e12 ** s["beta"]
    np.testing.assert_allclose(d["loss@N=7e+10,D=1.4e+12"], loss, rtol=1e-12)


def test_eight_simulated_devices_equal_one(tmp_path):
    """bootstrap and fit_groups (with per-group bootstrap) on 1 and 8 simulated devices.

    Results are bit-identical at a fixed lane count (batches.solve), so the bootstrap runs on 48
    lanes, the refinements of one 6-resample chunk: on the default 512, seven of every eight
    lanes of each call would iterate idle (the test took 90 s on 512 lanes, 56 s on 48; 2-core
    CPU).
    """
    script = textwrap.dedent(
        """
        import json, jax, numpy as np, pandas as pd
        import jaxscale as js
        assert len(jax.local_devices()) == 8
        runs = js.datasets.chinchilla()
        boot = dict(n_resamples=48, seed=5, chunk_size=6, lanes=48, progress=False)
        one, eight = js.bootstrap(runs, devices=1, **boot), js.bootstrap(runs, devices=8, **boot)
        df = js.datasets.chinchilla_table()
        df = {"N": df["params_N"], "D": df["tokens_D"], "loss": df["loss"], "g": (df["params_N"] > 1e9) * 1}
        opts = dict(by="g", n_refine=4, n_resamples=12, chunk_size=1)
        g1, g8 = js.fit_groups(pd.DataFrame(df), devices=1, **opts), js.fit_groups(pd.DataFrame(df), devices=8, **opts)
        cols = [c for c in g1.columns if g1[c].dtype.kind == "f"]
        a, b = g1[cols].to_numpy(), g8[cols].to_numpy()
        same_nan = bool((np.isnan(a) == np.isnan(b)).all())
        a, b = np.where(np.isnan(a), 1.0, a), np.where(np.isnan(b), 1.0, b)
        print(json.dumps({"max_diff": float(np.max(np.abs(one.draws - eight.draws) / np.abs(one.draws))),
                          "same_status": bool((one.status == eight.status).all()),
                          "groups_max_diff": float(np.max(np.where(a == b, 0.0, np.abs(a - b) / np.abs(a)))),
                          "groups_same_nan": same_nan,
                          "groups_same_status": g1["status"].tolist() == g8["status"].tolist()}))
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["same_status"] and result["groups_same_status"] and result["groups_same_nan"]
    assert result["max_diff"] <= 1e-12
    assert result["groups_max_diff"] <= 1e-12


@pytest.mark.slow
def test_epoch_published_bootstrap_intervals():
    """4,000 resamples vs Epoch AI's published 95% percentile intervals (data README, cell 26).

    What is compared: Epoch bootstrapped a Huber-*likelihood* MLE (with a fitted scale, BFGS
    from Hoffmann's parameters, seed 42); we bootstrap the summed-Huber grid fit. Both are
    M-estimators on the same 240 points, so their sampling distributions should agree to
    about the difference between the two point estimates (alpha 0.3473 vs 0.348, beta 0.3672
    vs 0.366, E 1.8172 vs 1.817) plus Monte-Carlo error of a 2.5% quantile from 4,000 draws
    (about 0.003 for alpha). Hence 0.01 on every bound, the issue's expected difference.
    """
    boot = js.bootstrap(js.datasets.chinchilla(), n_resamples=4000, seed=0, progress=False)
    assert boot.failed_fraction == 0.0
    ci = boot.ci(0.95)
    for name, (lo, hi) in {"alpha": (0.317, 0.373), "beta": (0.331, 0.415), "E": (1.769, 1.871)}.items():
        assert ci.loc[name, "lower"] == pytest.approx(lo, abs=0.01), name
        assert ci.loc[name, "upper"] == pytest.approx(hi, abs=0.01), name
    # Epoch's cell 59: bootstrap SE of a = beta/(alpha+beta) is 0.020.
    assert ci.loc["a", "se"] == pytest.approx(0.020, abs=0.004)


def test_warm_start_mode_reaches_the_same_optima_here():
    runs = js.datasets.chinchilla()
    screened = js.bootstrap(runs, n_resamples=48, seed=2, progress=False)
    warm = js.bootstrap(runs, n_resamples=48, seed=2, starts="warm", progress=False)
    # On the Chinchilla points every resample's optimum is in the full-data fit's basin, so
    # the faster warm mode finds the same optima (to round-off); the default stays the grid.
    np.testing.assert_allclose(warm.objective, screened.objective, rtol=1e-10)
    np.testing.assert_allclose(warm.draws, screened.draws, rtol=1e-5)


def test_fixed_parameters_in_bootstrap_stay_fixed():
    boot = js.bootstrap(js.datasets.chinchilla(), n_resamples=16, seed=0, fixed={"E": 1.69}, progress=False)
    np.testing.assert_allclose(boot.samples["E"], 1.69, rtol=1e-12)
    assert boot.n_failed == 0
    assert boot.ci(0.9).loc["E", "se"] < 1e-12


def test_float32_search_polished_in_float64_matches_float64():
    """float32 alone stops where single precision can no longer move the parameters, short of
    the optimum along the flat alpha/A direction (on 512 Epoch resamples a median 1e-4 and up
    to 0.5% off in A and B, and never converged to gtol 1e-10); each float32 optimum is
    therefore finished by a float64 BFGS (jaxscale/polish.py). Measured on 512 resamples:
    objectives within 1.9e-11 of float64's, parameters within 6.5e-5 (B, the flattest): both
    solves stop on that flat valley where a step no longer changes x, not at the same point."""
    runs, opts = js.datasets.chinchilla(), dict(n_resamples=24, seed=0, lanes=96, progress=False)
    ref = js.bootstrap(runs, **opts)
    boot = js.bootstrap(runs, dtype="float32", **opts)
    assert boot.draws.dtype == np.float64 and boot.objective.dtype == np.float64
    assert boot.n_failed == 0 and ref.n_failed == 0
    np.testing.assert_allclose(boot.objective, ref.objective, rtol=1e-10, atol=0)
    np.testing.assert_allclose(boot.draws, ref.draws, rtol=1e-4, atol=0)
    # Chunking changes neither the float32 search (fixed lanes) nor the polish (fixed batches).
    again = js.bootstrap(runs, dtype="float32", chunk_size=10, **opts)
    np.testing.assert_allclose(again.draws, boot.draws, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="dtype must be 'float64' or 'float32'"):
        js.bootstrap(runs, n_resamples=4, dtype="float16")


def test_float32_resamples_whose_polish_fails_are_solved_again_in_float64(monkeypatch):
    """A float32 optimum that is not finite cannot be polished (status nonfinite); such a
    resample is solved again from the grid in float64, never dropped or passed off."""
    from jaxscale.polish import polish
    from jaxscale.solver import NONFINITE

    seen = {}

    def spoiled(cfg, data, rough, weights, n):
        rough = rough._replace(theta=np.asarray(rough.theta).copy())
        rough.theta[[1, 4]] = np.nan  # as if float32 had overflowed on resamples 1 and 4
        out = polish(cfg, data, rough, weights, n)
        seen["status"] = np.asarray(out.status)
        return out

    monkeypatch.setattr(importlib.import_module("jaxscale.polish"), "polish", spoiled)  # the runner calls polish.polish
    runs, opts = js.datasets.chinchilla(), dict(n_resamples=6, seed=5, lanes=96, progress=False)
    boot = js.bootstrap(runs, dtype="float32", **opts)
    assert seen["status"][[1, 4]].tolist() == [NONFINITE, NONFINITE]
    assert boot.n_failed == 0
    ref = js.bootstrap(runs, staged=False, **opts)  # float32 searches are not staged
    np.testing.assert_allclose(boot.draws[[1, 4]], ref.draws[[1, 4]], rtol=1e-12, atol=0)


def test_offsets_split_a_bootstrap_across_processes():
    """Two processes drawing resamples 0-11 and 12-23 merge into the one-process result."""
    runs = js.datasets.chinchilla()
    whole = js.bootstrap(runs, n_resamples=24, seed=4, lanes=96, progress=False)
    parts = [js.bootstrap(runs, n_resamples=12, seed=4, offset=o, lanes=96, progress=False) for o in (0, 12)]
    merged = js.BootstrapResult.merge(parts)
    np.testing.assert_allclose(merged.draws, whole.draws, rtol=1e-12)
    np.testing.assert_array_equal(merged.status, whole.status)
    other = js.bootstrap(runs, n_resamples=4, seed=5, progress=False)
    with pytest.raises(ValueError, match="same runs, law and seed"):
        js.BootstrapResult.merge([parts[0], other])


def test_resamples_that_stop_where_a_term_vanished_are_refitted():
    """A 30-run synthetic group (benchmarks/groups_data.py, seed 1, group 870): 8 of its first 64
    resamples stop, 'converged', on the plateau where A / N^alpha vanishes (resample 7: objective
    4.9e-4, alpha at its grid start). Refitted from 64 starts they reach the optimum that refining
    all 4,500 grid starts finds, and no converged draw is left with an inert parameter."""
    from pathlib import Path

    import jax.numpy as jnp

    from jaxscale.fit import match_inputs
    from jaxscale.refinement import INERT_TOL

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.groups_data import make_archive

    df, _ = make_archive(2000, seed=1)
    runs = js.read_runs(df[df["group"] == 870])
    law = js.get_law("chinchilla")
    boot = js.bootstrap(runs, n_resamples=64, seed=0)
    for i in (7, 9):
        w = resample_weights(jax.random.key(0), i, i + 1, runs.n_points)[0]
        grid = js.fit(runs, weights=w, starts="grid")
        np.testing.assert_allclose(boot.objective[i], grid.objective, rtol=1e-9)
        assert boot.objective[i] < 0.5 * 4.8e-4  # far below the plateau's objective
    with jax.enable_x64(True):
        log_x = jnp.asarray(match_inputs(runs, law))
        jac = jax.vmap(jax.jacfwd(lambda t: law.log_predict(t, log_x)))(jnp.asarray(law.to_fitted(boot.draws)))
    sensitivity = np.max(np.abs(np.asarray(jac)), axis=1)  # [n, p]
    assert boot.ok.sum() >= 60
    assert np.all(sensitivity[boot.ok] > INERT_TOL)
