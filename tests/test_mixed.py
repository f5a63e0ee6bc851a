"""solver="bfgs_mixed": a float32 search finished in float64 reaches the float64 optima (scipy's,
the float64 solver's), and a lane's result does not depend on which lanes share its block."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxscale as js
from jaxscale import backends, mixed, problem, solver, specs
from tests.reference import scipy_best
from tests.test_against_scipy import TRUTHS, screened_starts, synthetic
from tests.test_groups import synthetic_groups


@pytest.mark.parametrize("truth", TRUTHS, ids=["epoch", "hoffmann", "shallow"])
def test_mixed_fit_reaches_scipys_optimum_from_the_same_starts(truth):
    runs = synthetic(truth, seed=1)
    starts = screened_starts(runs)
    ours = js.fit(runs, starts=starts, solver="bfgs_mixed")
    log_n, log_d = np.log(runs.x).T
    ref = scipy_best(starts, log_n, log_d, np.log(runs.y))
    assert ours.converged, str(ours)
    # The float64 optimum: within 1e-9 absolute or 1e-6 relative, and never above by more
    # than round-off (a float32 optimum would be ~1e-7 relative above: see the next test).
    assert abs(ours.objective - ref.fun) <= max(1e-9, 1e-6 * abs(ref.fun))
    assert ours.objective <= ref.fun + 1e-12
    np.testing.assert_allclose(ours.theta, ref.x, atol=1e-4)


def test_the_search_stops_short_in_float32_and_the_float64_phase_finishes():
    """On the Epoch data, lanes stepped without finish_searches stop where float32 can go no
    further, short of float64's tolerance; with it, the same lanes end at the float64 optimum."""
    runs = js.datasets.chinchilla()
    spec = specs.make_spec(js.get_law("chinchilla"), n_refine=8)
    with jax.enable_x64(True):
        data = specs.make_data(spec, runs.log_inputs(), runs.log_loss())
        w = jnp.ones((8, runs.n_points))  # one weight vector per lane
        x0 = problem.centered_starts(spec.cfg, data, spec.candidates[:: len(spec.candidates) // 8][:8])
        best = js.fit(runs).objective

        def evaluate(d, x, weights):
            return problem.objective_value_and_grad(spec.cfg, d, x, weights)

        pairs = (w, mixed.single(w)), (data, mixed.single(data))

        @jax.jit
        def run(lanes, finish: bool):
            def step(_, lanes):
                return mixed.advance(evaluate, lanes, *pairs, None, 1000, 1e-10)

            def steps(_, lanes):  # a run of 8 steps, as the engine's lanes, then the phase switch
                lanes = jax.lax.fori_loop(0, 8, step, lanes)
                return jax.lax.cond(finish, mixed.finish_searches, lambda ln: ln, lanes)

            return jax.lax.fori_loop(0, 125, steps, lanes)

        start = mixed.searching(jax.vmap(solver.start)(x0))
        searched, finished = run(start, False), run(start, True)
        # the float64 gradient where the search stopped (its own g is float32's there)
        at_stop = jax.vmap(lambda x: problem.objective_value_and_grad(spec.cfg, data, x, w[0])[1])(searched.state.x)
    stopped = np.asarray(searched.state.status)
    assert np.all(stopped != solver.RUNNING) and not np.any(np.asarray(searched.finishing))
    # float32 alone: no start reaches float64's gradient tolerance (1e-10; 2026-12-06: the best
    # stopped 2e-10 relative above the optimum in objective).
    assert np.min(np.max(np.abs(np.asarray(at_stop)), axis=1)) > 1e-10
    assert np.all(np.asarray(finished.finishing))
    values = np.asarray(finished.state.f)
    assert np.min(values) == pytest.approx(best, rel=1e-12)
    assert np.all(np.asarray(finished.state.status) == solver.CONVERGED)


def test_mixed_groups_equal_the_float64_solvers_optima():
    df = synthetic_groups([24, 40, 90, 150, 230, 300], noise=0.01)
    a = js.fit_groups(df, by="group", solver="bfgs_mixed")
    b = js.fit_groups(df, by="group", solver="bfgs")
    # The CPU's default (backends.Sizes.grouped_solver; a GPU's is "bfgs").
    assert backends.CPU.grouped_solver == "bfgs_mixed" and backends.GPU.grouped_solver == "bfgs"
    if backends.sizes() is backends.CPU:
        default = js.fit_groups(df, by="group")
        np.testing.assert_array_equal(default["objective"], a["objective"])
        np.testing.assert_array_equal(default["steps"], a["steps"])
    assert list(a["status"]) == list(b["status"]) == ["converged"] * 6
    np.testing.assert_allclose(a["objective"], b["objective"], rtol=1e-10)
    np.testing.assert_allclose(a[["alpha", "beta"]], b[["alpha", "beta"]], rtol=1e-5)


def test_a_lanes_result_does_not_depend_on_the_lanes_beside_it():
    """128 and 256 lanes (blocks of 32 either way) schedule the 40 groups' starts differently:
    other lanes share each block, searching or finishing, so blocks evaluate in float32, float64
    or both; each lane's arithmetic is its own, so the tables agree to the bit (at other lane
    counts XLA may compile other last bits: tests/test_groups.py)."""
    df = synthetic_groups([12, 30, 9, 20, 17, 150, 80, 260] * 5, seed=6)
    tables = [js.fit_groups(df, by="group", solver="bfgs_mixed", lanes=lanes) for lanes in (128, 256)]
    cols = ["E", "A", "B", "alpha", "beta", "objective", "steps"]
    np.testing.assert_array_equal(tables[1][cols].to_numpy(float), tables[0][cols].to_numpy(float))
    assert tables[1]["status"].tolist() == tables[0]["status"].tolist()


def test_a_retry_solves_with_the_float64_bfgs():
    """A bootstrap resample of a weighted group (tests/test_groups.py's run-weights test: group 0,
    resample 13, alpha 0.05, a nearly flat objective) converged with "bfgs" in 594 steps, but its
    "bfgs_mixed" finish crawled to max_steps from 8 and from 64 starts (2026-12-06): retries use
    the float64 BFGS (refinement.retry_config), and the intervals match the float64 solver's."""
    df = synthetic_groups([30, 40, 30], noise=0.02, seed=4)
    df["w"] = np.random.default_rng(0).choice([0.0, 0.5, 1.0, 3.0], size=len(df))
    options = dict(by="group", weights="w", reduction="mean", n_resamples=16, level=0.9, seed=3)
    mixed_table = js.fit_groups(df, solver="bfgs_mixed", **options)
    float64_table = js.fit_groups(df, solver="bfgs", **options)
    cols = [f"{name}_{end}" for name in ("alpha", "beta", "a") for end in ("lower", "upper")]
    np.testing.assert_allclose(mixed_table[cols], float64_table[cols], rtol=1e-6)
