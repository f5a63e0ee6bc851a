"""The batched kernel: vmapped batch == Python loop, no recompilation, honest statuses."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxscale as js
from jaxscale import batches, engine, problem, screening, specs
from jaxscale.solver import CONVERGED, NONFINITE, minimize, minimize_batch


def rosenbrock(x, scale):
    return scale * jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_solver_batch_equals_loop_and_finds_the_known_minimum():
    x0 = jnp.array([[-1.2, 1.0, 0.5], [0.0, 0.0, 0.0], [2.0, -1.0, 1.5], [1.5, 2.0, 4.0]])
    scales = jnp.array([1.0, 0.1, 10.0, 1e-3])
    batch = minimize_batch(rosenbrock, x0, scales, max_steps=2000, gtol=1e-12)
    for i in range(x0.shape[0]):
        single = minimize(lambda z, s=scales[i]: rosenbrock(z, s), x0[i], max_steps=2000, gtol=1e-12)
        # Lockstep batching must not change any lane: identical to round-off.
        np.testing.assert_allclose(batch.x[i], single.x, rtol=0, atol=1e-12)
        assert int(batch.steps[i]) == int(single.steps)
        assert int(batch.status[i]) == CONVERGED
        # Rosenbrock's minimum is exactly (1, 1, 1) whatever the scale.
        np.testing.assert_allclose(batch.x[i], np.ones(3), atol=1e-6)


def test_solver_reports_nonfinite_start():
    res = minimize(lambda x: jnp.sum(jnp.log(x)), jnp.array([-1.0, 2.0]))
    assert int(res.status) == NONFINITE


def _kernel_inputs(n_resamples=6, seed=0):
    runs = js.datasets.chinchilla()
    law = js.get_law("chinchilla")
    spec = specs.make_spec(law, max_steps=1000, gtol=1e-10)
    cfg, data = spec.cfg, specs.make_data(spec, runs.log_inputs(), runs.log_loss())
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(runs.n_points, np.full(runs.n_points, 1 / runs.n_points), size=n_resamples).astype(float)
    return cfg, data, law.grid_points(), weights


def test_vmapped_problems_equal_python_loop():
    cfg, data, grid, weights = _kernel_inputs()
    batch = batches.solve(cfg, data, grid, weights, n_refine=16, chunk_size=6)
    for i in range(weights.shape[0]):
        one = batches.solve(cfg, data, grid, weights[i : i + 1], n_refine=16, chunk_size=1)
        # XLA vectorises a batch of 6 differently from a batch of 1, so the arithmetic differs
        # in the last bits and ~200 BFGS steps carry that to ~1e-8 in the flattest parameter
        # direction: both are the same optimum to the solver's tolerance (objective to 1e-12).
        np.testing.assert_allclose(batch.value[i], one.value[0], rtol=1e-12)
        np.testing.assert_allclose(batch.theta[i], one.theta[0], rtol=0, atol=1e-6)
        assert batch.status[i] == one.status[0] == CONVERGED


def test_chunk_size_does_not_change_results():
    cfg, data, grid, weights = _kernel_inputs()
    a = batches.solve(cfg, data, grid, weights, n_refine=16, chunk_size=6)
    b = batches.solve(cfg, data, grid, weights, n_refine=16, chunk_size=4)  # 4 + padded 2
    np.testing.assert_allclose(a.theta, b.theta, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.status, b.status)


def test_lanes_beyond_one_block_do_not_change_results():
    """40 resamples x 8 refined starts on one block of 256 lanes and on two (packed as they
    empty): the same arithmetic per start, so the same bits."""
    cfg, data, grid, weights = _kernel_inputs(n_resamples=40, seed=1)
    assert engine.lane_layout(512, grouped=False) == (256, 2)
    a, b = (batches.solve(cfg, data, grid, weights, n_refine=8, chunk_size=40, lanes=n) for n in (256, 512))
    for field in ("theta", "value", "steps", "status", "start_values"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert np.all(a.status == CONVERGED)


def test_second_call_with_same_shapes_does_not_recompile():
    runs = js.datasets.chinchilla()
    tight = js.fit(runs, law="chinchilla")
    compiled = engine.solve_chunk._cache_size()
    # New values, same shapes (other losses, other weights): the compiled kernel is reused.
    other = js.Runs.from_arrays({"N": runs.x[:, 0], "D": runs.x[:, 1]}, runs.y * 1.01)
    js.fit(other, law="chinchilla", weights=np.linspace(0.5, 1.5, runs.n_points))
    assert engine.solve_chunk._cache_size() == compiled
    # Another step budget or tolerance too (problem.Limits are arrays), and they still act.
    short = js.fit(runs, law="chinchilla", max_steps=8)
    loose = js.fit(runs, law="chinchilla", gtol=1e-3)
    assert engine.solve_chunk._cache_size() == compiled
    assert short.status == "max_steps" and short.steps == 8
    assert loose.converged and 0 < loose.grad_norm <= 1e-3 and loose.steps < tight.steps


def test_fits_of_run_counts_in_one_bucket_share_one_kernel_and_padding_changes_nothing():
    # 130, 200 and all 240 of the Epoch points pad to 256 runs: one kernel, not one per count.
    runs = js.datasets.chinchilla()
    subset = [js.Runs.from_arrays({"N": runs.x[:n, 0], "D": runs.x[:n, 1]}, runs.y[:n]) for n in (130, 200, 240)]
    fits = [js.fit(subset[0])]
    compiled = engine.solve_chunk._cache_size()
    fits += [js.fit(r) for r in subset[1:]]
    assert engine.solve_chunk._cache_size() == compiled
    assert [f.n_points for f in fits] == [130, 200, 240]
    # Padding adds weight-0 points: the same optimum as the first 130 runs given among all 240
    # with the other 110 weighted 0 (another kernel shape, so equal to round-off, not bitwise).
    masked = js.fit(runs, weights=(np.arange(runs.n_points) < 130).astype(float))
    assert masked.n_points == 130
    assert fits[0].objective == pytest.approx(masked.objective, rel=1e-12)
    np.testing.assert_allclose(fits[0].theta, masked.theta, rtol=0, atol=1e-6)


def test_step_budget_exhausted_is_reported_not_passed_off():
    res = js.fit(js.datasets.chinchilla(), law="chinchilla", max_steps=8)
    assert not res.converged
    assert res.status == "max_steps"
    assert "NOT CONVERGED" in str(res)
    assert res.to_dict()["converged"] is False


def test_unreachable_optimum_at_infinity_is_not_reported_converged():
    # A pure power law with no floor: the best E is 0, i.e. log E -> -inf, which no finite
    # number of steps reaches. With a modest budget the fit must say it did not converge.
    rng = np.random.default_rng(3)
    n = 10 ** rng.uniform(7, 10, 100)
    d = n * 20
    loss = 400 / n**0.34 + 2000 / d**0.37
    res = js.fit(js.Runs.from_arrays({"N": n, "D": d}, loss), law="chinchilla", max_steps=60)
    assert res.status in ("max_steps", "stalled")
    assert not res.converged


def test_fixed_parameters_are_held():
    res = js.fit(js.datasets.chinchilla(), law="chinchilla", fixed={"E": 1.69})
    assert res.params["E"] == pytest.approx(1.69, rel=1e-12)
    assert res.converged and res.fixed == ("E",)
    free = js.fit(js.datasets.chinchilla(), law="chinchilla")
    assert res.objective > free.objective  # constraining can only raise the optimum


def test_power_law_recovers_truth():
    rng = np.random.default_rng(1)
    c = 10 ** rng.uniform(17, 23, 80)
    y = (1.7 + 3e4 * c**-0.25) * np.exp(0.005 * rng.standard_normal(80))
    res = js.fit(js.Runs.from_arrays({"x": c}, y), law="power")
    assert res.converged
    assert res.params["alpha"] == pytest.approx(0.25, abs=0.02)
    assert res.params["E"] == pytest.approx(1.7, rel=0.03)


def test_fit_runs_in_float64_without_global_x64():
    # The library enables x64 locally (jax.enable_x64) rather than flipping global config.
    with jax.enable_x64(False):
        res = js.fit(js.datasets.chinchilla(), law="chinchilla")
    assert res.theta.dtype == np.float64
    assert res.objective <= 0.00101828


@pytest.mark.parametrize("n_points", [20, 48, 64, 240])
def test_float32_coarse_screening_keeps_the_float64_best_starts(n_points):
    # Chinchilla's grid is ranked in float32 first (Law.screen_float32), then the best 256 in
    # float64. With all points in the coarse ranking (<= 64 runs) the 8 chosen starts must be
    # the exact float64 best 8; with a 32-point subset (240 runs), as before, the best start.
    runs = js.datasets.chinchilla()
    law = js.get_law("chinchilla")
    assert law.screen_float32
    rng = np.random.default_rng(n_points)
    take = np.sort(rng.choice(runs.n_points, n_points, replace=False))
    part = js.Runs.from_arrays({"N": runs.x[take, 0], "D": runs.x[take, 1]}, runs.y[take])
    spec = specs.make_spec(law, max_steps=1000, gtol=1e-10)
    cfg, data = spec.cfg, specs.make_data(spec, part.log_inputs(), part.log_loss())
    with jax.enable_x64(True):
        starts = problem.centered_starts(cfg, data, law.grid_points())
        w = jnp.ones(n_points)
        exact = np.asarray(w @ screening.point_loss(cfg, data, starts).T)
        chosen = np.asarray(jax.jit(lambda s, w: screening.screen_one(cfg, data, s, w, 8))(starts, w))
        # A single fit's kernel sorts the 4,500 instead of bisecting: the same starts, in order.
        alone = jax.jit(lambda s, w: screening.screen_one(cfg, data, s, w, 8, alone=True))(starts, w)
    np.testing.assert_array_equal(np.asarray(alone), chosen)
    best8 = np.sort(exact)[:8]
    if n_points <= 2 * screening.SCREEN_POINTS:
        np.testing.assert_allclose(exact[chosen], best8, rtol=1e-12)
    else:
        np.testing.assert_allclose(exact[chosen[0]], best8[0], rtol=1e-12)
    assert np.all(np.diff(exact[chosen]) >= 0)  # chosen in float64 order


def test_compile_only_compiles_the_kernel_that_the_calls_then_run(caplog):
    """batches.solve(compile_only=True) compiles the kernel of its calls and runs nothing; the
    calls that follow (fit_groups' later buckets: batches.bucket_calls) compile nothing more."""
    cfg, data, grid, weights = _kernel_inputs(n_resamples=5, seed=4)
    options = dict(n_refine=12, chunk_size=5, lanes=96)  # shapes no other test compiles

    def compiled() -> int:
        return sum("Finished XLA compilation of jit(_solve_chunk)" in r.getMessage() for r in caplog.records)

    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        assert batches.solve(cfg, data, grid, weights, compile_only=True, **options) is None
        assert compiled() == 1
        solved = batches.solve(cfg, data, grid, weights, **options)
        assert compiled() == 1
    assert np.all(solved.status == CONVERGED)
