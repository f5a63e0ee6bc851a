"""The pure-JAX layer: jit / vmap / shard_map / grad of a fit, against js.fit, js.bootstrap,
a Python loop, and finite differences of full re-fits (references this layer did not compute)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import spearmanr

import jaxscale as js
from jaxscale import functional as jsf
from jaxscale.runner import resample_weights

LAW = js.get_law("chinchilla")
RUNS = js.datasets.chinchilla()
LOG_X, LOG_Y = jnp.asarray(RUNS.log_inputs()), jnp.asarray(RUNS.log_loss())
P = RUNS.n_points
ALPHA, BETA, E = LAW.natural_index("alpha"), LAW.natural_index("beta"), LAW.natural_index("E")


def exact_refit(w, y):
    """A full re-fit (screened grid, BFGS) finished by Newton steps on the exact Hessian, so
    that finite differences of it resolve derivatives to ~1e-8 (BFGS alone stops at a
    gradient of 1e-10, which leaves ~1e-9 in the parameters: too coarse for a difference
    quotient with a step of 1e-5)."""

    def f(th):
        return jsf.law_objective(th, LAW, LOG_X, y, w)

    theta = jax.lax.stop_gradient(jsf.fit(LAW, LOG_X, y, w).theta)
    for _ in range(6):
        theta = theta - jnp.linalg.solve(jax.hessian(f)(theta), jax.grad(f)(theta))
    return LAW.to_natural(theta)


def test_fit_matches_js_fit():
    """The functional fit with fit's 64 refined starts lands on js.fit's (and Epoch's) optimum."""
    ref = js.fit(RUNS)
    sol = jax.jit(lambda y: jsf.fit(LAW, LOG_X, y, n_refine=64))(LOG_Y)
    assert int(sol.status) == jsf.CONVERGED
    assert float(sol.objective) == pytest.approx(ref.objective, rel=1e-12)
    np.testing.assert_allclose(np.asarray(sol.params), [ref.params[n] for n in LAW.natural], rtol=1e-7)
    np.testing.assert_allclose(np.asarray(sol.params), [1.8172, 477.8, 2143.9, 0.3473, 0.3672], rtol=3e-4)


def test_vmap_equals_python_loop_and_bootstrap():
    """jit(vmap(fit)) over 24 resamples' weights equals a Python loop of single fits,
    fit_batch (the bootstrap's lane-sharing kernel) and js.bootstrap's optima for the same
    weights (seed 0)."""
    n = 24
    weights = resample_weights(jax.random.key(0), 0, n, P)
    batched = jax.jit(jax.vmap(lambda w: jsf.fit(LAW, LOG_X, LOG_Y, w)))(jnp.asarray(weights))
    one = jax.jit(lambda w: jsf.fit(LAW, LOG_X, LOG_Y, w))
    looped = [one(jnp.asarray(w)) for w in weights]
    np.testing.assert_allclose(np.asarray(batched.objective), [float(s.objective) for s in looped], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(batched.params), np.stack([s.params for s in looped]), rtol=1e-7)
    lanes = jax.jit(lambda w: jsf.fit_batch(LAW, LOG_X, LOG_Y, w))(jnp.asarray(weights))
    np.testing.assert_allclose(np.asarray(lanes.objective), np.asarray(batched.objective), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(lanes.params), np.asarray(batched.params), rtol=1e-6)
    boot = js.bootstrap(RUNS, n_resamples=n, seed=0)
    assert np.all(np.asarray(batched.status) == 0) and boot.n_failed == 0
    np.testing.assert_allclose(np.asarray(batched.objective), boot.objective, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(batched.params), boot.draws, rtol=1e-6)


@pytest.mark.slow
def test_vmap_over_1000_weight_vectors_equals_bootstrap():
    """The acceptance check at full size: 1,000 resamples of the Epoch points, jit(vmap(fit))
    against js.bootstrap(n_resamples=1000, seed=0). Measured: objectives within 6.1e-15 (relative),
    parameters within 2.5e-7 (B; median 8e-9)."""
    n = 1000
    weights = resample_weights(jax.random.key(0), 0, n, P)
    sol = jax.jit(jax.vmap(lambda w: jsf.fit(LAW, LOG_X, LOG_Y, w)))(jnp.asarray(weights))
    boot = js.bootstrap(RUNS, n_resamples=n, seed=0)
    np.testing.assert_array_equal(np.asarray(sol.status), boot.status)
    np.testing.assert_allclose(np.asarray(sol.objective), boot.objective, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(sol.params), boot.draws, rtol=1e-6)


def test_grad_matches_finite_differences_of_refits():
    """d(E, alpha, beta) / d(weight_i) and / d(log loss_i) by the implicit rule against central
    differences of exact re-fits, for the 8 runs alpha depends on most and 4 others.

    Measured on all 240 runs: weights (step 1e-3) within 6e-8 of the largest derivative and
    every entry within 1e-5 relative; losses (step 1e-5, below Huber's delta = 1e-3, so no
    residual crosses it) within 1e-8. 201 of the 240 runs lie in Huber's linear region
    (|residual| > delta): their own loss moves no parameter (the derivative is exactly 0,
    and the differences agree), only their weight does."""

    def targets(w, y):
        return jsf.fit(LAW, LOG_X, y, w).params[jnp.array([E, ALPHA, BETA])]

    w1 = jnp.ones(P)
    d_w, d_y = jax.jit(jax.jacrev(targets, argnums=(0, 1)))(w1, LOG_Y)
    runs = np.r_[np.argsort(-np.abs(np.asarray(d_w[1])))[:8], [0, 60, 120, 239]]
    unit = jnp.eye(P)[runs]
    nat = jnp.array([E, ALPHA, BETA])

    def central(h, perturb):
        diff = jax.vmap(lambda e: exact_refit(*perturb(h * e))[nat] - exact_refit(*perturb(-h * e))[nat])
        return np.asarray(jax.jit(diff)(unit)) / (2 * h)

    fd_w = central(1e-3, lambda dw: (w1 + dw, LOG_Y))
    fd_y = central(1e-5, lambda dy: (w1, LOG_Y + dy))
    for analytic, fd in ((np.asarray(d_w)[:, runs].T, fd_w), (np.asarray(d_y)[:, runs].T, fd_y)):
        scale = np.abs(analytic).max(axis=0)
        np.testing.assert_array_less(np.abs(fd - analytic), 1e-5 * np.maximum(np.abs(analytic), 1e-2 * scale))
    assert np.count_nonzero(np.asarray(d_y[1])) < P  # the linear-region runs (see the docstring)


def test_jvp_equals_grad():
    """Forward mode (jvp along a direction of weights and losses) equals reverse mode."""
    rng = np.random.default_rng(0)
    dw, dy = jnp.asarray(rng.normal(size=P)), jnp.asarray(1e-3 * rng.normal(size=P))

    def alpha(w, y):
        return jsf.fit(LAW, LOG_X, y, w).params[ALPHA]

    _, forward = jax.jit(lambda: jax.jvp(alpha, (jnp.ones(P), LOG_Y), (dw, dy)))()
    gw, gy = jax.jit(jax.grad(alpha, argnums=(0, 1)))(jnp.ones(P), LOG_Y)
    assert float(forward) == pytest.approx(float(gw @ dw + gy @ dy), rel=1e-10)


def test_gradient_of_a_problem_that_did_not_converge():
    """A fit stopped by its budget is not at a stationary point: its derivative is NaN by
    default (forward and reverse), 0 with failed_grad='zero'."""

    def alpha(w, failed_grad="nan"):
        sol = jsf.fit(LAW, LOG_X, LOG_Y, w, max_steps=5, failed_grad=failed_grad)
        return sol.params[ALPHA], sol.status

    w1 = jnp.ones(P)
    (_, status), grad = jax.value_and_grad(alpha, has_aux=True)(w1)
    assert int(status) == jsf.MAX_STEPS
    assert np.all(np.isnan(np.asarray(grad)))
    _, tangent = jax.jvp(lambda w: alpha(w)[0], (w1,), (w1,))
    assert np.isnan(float(tangent))
    grad_zero = jax.grad(lambda w: alpha(w, "zero")[0])(w1)
    np.testing.assert_array_equal(np.asarray(grad_zero), 0.0)
    with pytest.raises(ValueError, match="failed_grad"):
        jsf.fit(LAW, LOG_X, LOG_Y, failed_grad="ignore")


def test_no_host_transfer_inside_jit():
    """A jitted fit, its gradient and a frontier run with every implicit transfer disallowed
    (inputs placed on the device first): nothing inside goes back to the host."""

    def tokens_per_param(w):
        sol = jsf.fit(LAW, LOG_X, LOG_Y, w)
        n_opt, d_opt = jsf.chinchilla_optimum(sol.theta, 1e24)
        return d_opt / n_opt

    fn = jax.jit(jax.value_and_grad(tokens_per_param))
    w = jax.device_put(jnp.ones(P))
    fn.lower(w).compile()
    with jax.transfer_guard("disallow"):
        value, grad = fn(w)
        jax.block_until_ready((value, grad))
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))


def test_influence_agrees_with_leave_one_out():
    """The gradient with respect to run weights predicts what leaving each run out does to
    alpha and to the optimal tokens per parameter at 1e24 FLOPs: Spearman rank correlation
    >= 0.9 over the 20 runs with the largest influence (a first-order influence function
    against 240 exact re-fits)."""

    def quantities(w):
        sol = jsf.fit(LAW, LOG_X, LOG_Y, w)
        n_opt, d_opt = jsf.chinchilla_optimum(sol.theta, 1e24)
        return jnp.stack([sol.params[ALPHA], d_opt / n_opt])

    w1 = jnp.ones(P)
    full = np.asarray(quantities(w1))
    influence = -np.asarray(jax.jit(jax.jacrev(quantities))(w1))  # leaving run i out: dw_i = -1
    loo = np.asarray(jax.jit(jax.vmap(lambda e: quantities(w1 - e)))(jnp.eye(P))) - full
    for j, name in enumerate(("alpha", "tokens per parameter at 1e24")):
        top = np.argsort(-np.abs(influence[j]))[:20]
        rho = spearmanr(influence[j, top], loo[top, j]).statistic
        print(f"{name}: Spearman {rho:.3f} over the 20 most influential runs")
        for i in top[:5]:
            print(f"  run {i}: gradient {influence[j, i]:+.3e}, leave-one-out {loo[i, j]:+.3e}")
        assert rho >= 0.9


def test_frontier_numeric_equals_closed_form_with_gradients():
    """compute_optimal (numeric, implicit derivative) against chinchilla_optimum (closed form):
    values and d log N_opt / d theta agree."""
    theta = jnp.asarray(js.fit(RUNS).theta)

    def numeric(th, c):
        return jnp.log(jsf.compute_optimal(LAW, th, c).n_opt)

    def closed(th, c):
        return jnp.log(jsf.chinchilla_optimum(th, c)[0])

    for c in (1e21, 1e24):
        assert float(numeric(theta, c)) == pytest.approx(float(closed(theta, c)), abs=1e-10)
        g_num = jax.grad(numeric, argnums=(0, 1))(theta, c)
        g_closed = jax.grad(closed, argnums=(0, 1))(theta, c)
        np.testing.assert_allclose(np.asarray(g_num[0]), np.asarray(g_closed[0]), rtol=1e-8, atol=1e-12)
        assert float(g_num[1]) == pytest.approx(float(g_closed[1]), rel=1e-8)
    assert not bool(jsf.compute_optimal(LAW, theta, 1e24).at_edge)


def test_shard_map_over_local_devices():
    """The fit inside the user's own shard_map (a batch of weights split over the local
    devices) gives what the plain vmap gives."""
    devices = np.array(jax.local_devices())
    mesh = jax.sharding.Mesh(devices, ("batch",))
    weights = jnp.asarray(resample_weights(jax.random.key(1), 0, 2 * len(devices), P))
    spec = jax.sharding.PartitionSpec("batch")

    def fit_many(w):
        return jax.vmap(lambda v: jsf.fit(LAW, LOG_X, LOG_Y, v, n_refine=4).objective)(w)

    sharded = jax.jit(jax.shard_map(fit_many, mesh=mesh, in_specs=spec, out_specs=spec))(weights)
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(jax.jit(fit_many)(weights)), rtol=1e-12)


def test_fixed_values_and_options_are_checked_and_differentiable():
    """A held-fixed E can be differentiated through (d alpha / d E against a difference of
    re-fits), and bad shapes or options raise at trace time with the argument named."""

    def alpha(e):
        return jsf.fit(LAW, LOG_X, LOG_Y, fixed={"E": e}, gtol=1e-12).params[ALPHA]

    g = float(jax.jit(jax.grad(alpha))(1.8))
    h = 1e-4
    fd = (float(jax.jit(alpha)(1.8 + h)) - float(jax.jit(alpha)(1.8 - h))) / (2 * h)
    assert g == pytest.approx(fd, rel=1e-4)
    with pytest.raises(ValueError, match=r"log_x must be \[P, 2\]"):
        jsf.fit(LAW, LOG_X[:, :1], LOG_Y)
    with pytest.raises(ValueError, match="weights must have shape"):
        jsf.fit(LAW, LOG_X, LOG_Y, jnp.ones(3))
    with pytest.raises(ValueError, match="n_refine must be an integer"):
        jsf.fit(LAW, LOG_X, LOG_Y, n_refine=0)
    with pytest.raises(ValueError, match="has no parameter 'Q'"):
        jsf.fit(LAW, LOG_X, LOG_Y, fixed={"Q": 1.0})


def test_fit_batch_gradient_equals_per_problem_fit():
    """fit_batch's derivative (the implicit rule, vmapped over its rows) equals fit's for each row."""
    weights = jnp.asarray(resample_weights(jax.random.key(2), 0, 2, P))
    batch = jax.jit(jax.grad(lambda w: jnp.sum(jsf.fit_batch(LAW, LOG_X, LOG_Y, w).params[:, ALPHA])))(weights)
    single = jax.jit(jax.vmap(jax.grad(lambda w: jsf.fit(LAW, LOG_X, LOG_Y, w).params[ALPHA])))(weights)
    np.testing.assert_allclose(np.asarray(batch), np.asarray(single), rtol=1e-5, atol=1e-9)
