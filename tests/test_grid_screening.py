"""Screening the law's grid term by term (screening.grid_values) against the direct ranking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxscale as js
from jaxscale import problem, screening, specs


def _inputs(law_name: str, fixed=None, n_points: int | None = None, seed: int = 0):
    runs = js.datasets.chinchilla()
    law = js.get_law(law_name)
    spec = specs.make_spec(law, fixed=fixed)
    cfg = screening.with_grid_starts(spec.cfg, spec.candidates)
    take = (
        np.arange(runs.n_points)
        if n_points is None
        else np.sort(np.random.default_rng(seed).choice(runs.n_points, n_points, replace=False))
    )
    log_x = runs.log_inputs()[take][:, : len(law.inputs)]
    data = specs.make_data(spec, log_x, runs.log_loss()[take])
    w = jnp.asarray(np.random.default_rng(seed).uniform(0.5, 1.5, len(take)))
    return spec, cfg, data, w


@pytest.mark.parametrize(
    "law_name, fixed",
    [
        ("chinchilla", None),
        ("chinchilla_tied", None),
        ("power", None),
        ("chinchilla", {"E": 1.69}),
        ("chinchilla", {"alpha": 0.34}),
    ],
)
def test_grid_values_equal_every_starts_objective(law_name, fixed):
    # In float64 the term-by-term sums equal the direct per-start evaluation to rounding; in
    # float32 (the coarse ranking's dtype) to float32's, on Chinchilla's 240 runs.
    spec, cfg, data, w = _inputs(law_name, fixed)
    assert cfg.grid_starts
    with jax.enable_x64(True):
        starts_c = problem.centered_starts(cfg, data, jnp.asarray(spec.candidates))
        for dtype, rtol in ((jnp.float64, 1e-13), (jnp.float32, 2e-5)):
            cast = jax.tree.map(lambda a, dtype=dtype: a.astype(dtype), data)
            direct = np.asarray(w.astype(dtype) @ screening.point_loss(cfg, cast, starts_c.astype(dtype)).T, float)
            terms = np.asarray(screening.grid_values(cfg, data, w, None, dtype), float)
            assert terms.shape == (len(spec.candidates),)
            np.testing.assert_allclose(terms, direct, rtol=rtol)


@pytest.mark.parametrize("n_points", [20, 64, 240])
def test_screening_by_terms_picks_the_same_starts(n_points):
    # Two-stage screening (coarse ranking in float32, the best 128 again in float64) chooses the
    # same 8 starts, in the same order, whether the coarse ranking is term by term or direct.
    _, cfg, data, w = _inputs("chinchilla", n_points=n_points, seed=n_points)
    spec = specs.make_spec(js.get_law("chinchilla"))
    with jax.enable_x64(True):
        starts_c = problem.centered_starts(cfg, data, jnp.asarray(spec.candidates))
        chosen = [
            np.asarray(jax.jit(lambda s, w, c=c: screening.screen_one(c, data, s, w, 8))(starts_c, w))
            for c in (cfg, cfg._replace(grid_starts=False))
        ]
    np.testing.assert_array_equal(chosen[0], chosen[1])


def test_grid_starts_only_for_the_laws_own_grid_of_log_sum_exp_terms():
    chinchilla = specs.make_spec(js.get_law("chinchilla"))
    assert screening.with_grid_starts(chinchilla.cfg, chinchilla.candidates).grid_starts
    assert not screening.with_grid_starts(chinchilla.cfg, chinchilla.candidates[::-1]).grid_starts  # reordered
    assert not screening.with_grid_starts(chinchilla.cfg, chinchilla.candidates[:100]).grid_starts
    user = specs.make_spec(js.get_law("chinchilla"), starts=chinchilla.candidates[:50])
    assert not screening.with_grid_starts(user.cfg, user.candidates).grid_starts
    for name in ("kaplan", "data_constrained", "broken_power"):  # not LogSumExp-linear
        spec = specs.make_spec(js.get_law(name))
        assert not screening.with_grid_starts(spec.cfg, spec.candidates).grid_starts


def test_a_fit_reaches_the_same_optimum_with_either_coarse_ranking():
    # js.fit on Chinchilla's points ranks its grid term by term (batches.solve sets grid_starts);
    # the same starts in reverse order are ranked directly: the optimum matches to rounding.
    runs = js.datasets.chinchilla()
    fitted = js.fit(runs, law="chinchilla")
    spec = specs.make_spec(js.get_law("chinchilla"))
    assert not screening.with_grid_starts(spec.cfg, spec.candidates[::-1]).grid_starts
    direct = js.fit(runs, law="chinchilla", starts=spec.candidates[::-1])
    np.testing.assert_allclose(fitted.objective, direct.objective, rtol=1e-12)


def test_functional_fit_with_the_default_grid_ranks_it_by_terms_and_matches_the_direct_ranking():
    # functional.fit with starts=None marks its kernel's Config (the law's own grid); the same
    # starts passed in reverse are ranked directly. Same optimum, and the gradient still flows.
    from jaxscale import functional

    runs = js.datasets.chinchilla()
    law = js.get_law("chinchilla")
    log_x, log_y = jnp.asarray(runs.log_inputs()), jnp.asarray(runs.log_loss())
    with jax.enable_x64(True):
        by_terms = jax.jit(lambda x, y: functional.fit(law, x, y, n_refine=8))(log_x, log_y)
        direct = jax.jit(
            lambda x, y: functional.fit(law, x, y, n_refine=8, starts=functional.default_starts(law)[::-1])
        )(log_x, log_y)
        grad = jax.grad(lambda y: functional.fit(law, log_x, y, n_refine=8).params[3])(log_y)  # alpha
    np.testing.assert_allclose(float(by_terms.objective), float(direct.objective), rtol=1e-12)
    assert np.all(np.isfinite(np.asarray(grad))) and float(jnp.max(jnp.abs(grad))) > 0
