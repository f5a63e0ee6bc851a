"""``posterior``: a Bayesian posterior of a law's parameters from NUTS chains run side by side.

The chains sample the law's fitted coordinates (logs of coefficients, exponents as they are)
and the log of the noise scale ``sigma`` of the log-loss residuals, under a likelihood
(:data:`LIKELIHOODS`) and a prior (:mod:`jaxscale.priors`). They start around the multi-start
fit's optimum (:func:`jaxscale.fit`), dispersed by twice its Laplace spread, adapt their step
size and diagonal mass matrix (blackjax's window adaptation), and run vmapped in one compiled
call. blackjax is an optional dependency: ``pip install 'jaxscale[bayes]'``; why blackjax and not
numpyro: benchmarks/RESULTS.md, "Posterior".

Likelihoods of a run's residual ``r = log L_hat - log L``, each with the scale ``sigma``:

* ``"gaussian"``: ``r ~ Normal(0, sigma)``;
* ``"student_t"``: ``r / sigma ~ Student-t(nu)`` (``nu`` 4 by default): heavy tails, so a few
  outlying runs pull less;
* ``"huber"``: the density ``exp(-rho(r / sigma)) / (sigma Z)`` with Huber's ``rho`` at
  ``delta`` (in units of ``sigma``, default 1.345): a proper likelihood whose mode is a Huber
  fit. Caveat: it is not the pseudo-likelihood of Hoffmann et al.'s objective, whose ``delta``
  (1e-3) is in units of log-loss and has no noise scale: exponentiating that objective gives a
  posterior whose width depends on an arbitrary temperature. Here the data set ``sigma``.

Example:
    >>> import jaxscale as js
    >>> post = js.posterior(js.datasets.chinchilla(), chains=4, draws=1000, warmup=1000, seed=1)
    >>> post.status, round(float(post.ci().loc["alpha", "mean"]), 2)
    ('ok', 0.36)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, ndtr

from . import checks, priors
from .fit import as_runs, fit, match_inputs
from .laws import Law, get_law
from .posterior_result import PosteriorResult, diagnose

LIKELIHOODS = ("gaussian", "student_t", "huber")
MAX_DOUBLINGS = 10  # NUTS tree depth: a draw that reaches it is reported (treedepth saturation)


def posterior(
    runs: Any,
    law: str | Law = "chinchilla",
    *,
    prior: priors.Prior | Mapping[str, priors.Term] | None = None,
    likelihood: str = "gaussian",
    nu: float = 4.0,
    delta: float = 1.345,
    fixed: Mapping[str, float] | None = None,
    weights: Sequence[float] | None = None,
    chains: int = 4,
    draws: int = 1000,
    warmup: int = 1000,
    seed: int = 0,
) -> PosteriorResult:
    """Sample the posterior of ``law``'s parameters given ``runs`` with NUTS, ``chains`` chains
    of ``warmup`` adaptation steps and ``draws`` kept draws each, side by side in one call.

    Args:
        runs: :class:`Runs` or what :func:`jaxscale.read_runs` reads (checked as :func:`fit` checks).
        prior: a :class:`jaxscale.priors.Prior`, or per-parameter terms
            (``{"alpha": priors.normal(0.34, 0.05)}``) over :func:`jaxscale.priors.default`;
            :func:`jaxscale.priors.from_bootstrap` turns a published fit with intervals into one.
        likelihood: one of :data:`LIKELIHOODS` (see the module's text); ``nu``: Student-t's
            degrees of freedom; ``delta``: Huber's threshold in units of ``sigma``.
        fixed: natural parameters held at a value, as in :func:`fit`.
        weights: per-run weights (default 1): a run's log-likelihood counts ``weight`` times.
        seed: the PRNG seed of the inits, the adaptation and the draws.

    Returns:
        :class:`PosteriorResult`: draws, diagnostics (R-hat, bulk and tail ESS, divergences,
        treedepth saturation) and ``status`` (``"ok"`` only when they all pass).
    """
    blackjax = _blackjax()
    law = get_law(law)
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")
    for name, value, least in (("chains", chains, 2), ("draws", draws, 50), ("warmup", warmup, 50)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise ValueError(f"{name} must be an integer of at least {least} (R-hat needs 2 chains); got {value!r}")
    if not (np.isfinite(nu) and nu > 0 and np.isfinite(delta) and delta > 0):
        raise ValueError(f"nu and delta must be numbers > 0; got nu={nu!r}, delta={delta!r}")
    checks.arguments(law, seed=seed, fixed=fixed)
    runs = as_runs(runs)
    point = fit(runs, law, fixed=fixed, weights=weights)  # checks the runs; the chains start at its optimum
    with jax.enable_x64(True):
        log_x, log_y = jnp.asarray(match_inputs(runs, law)), jnp.asarray(runs.log_loss())
        w = jnp.ones(runs.n_points) if weights is None else jnp.asarray(weights, dtype=jnp.float64)  # fit checked them
        free = np.array([i for i, n in enumerate(law.natural) if n not in point.fixed])
        full = jnp.asarray(point.theta, dtype=jnp.float64)
        the_prior = priors.resolve(law, prior, free)
        log_lik = _log_likelihood(likelihood, nu, delta)

        def log_density(z):
            theta = full.at[free].set(z[:-1])
            r = law.log_predict(theta, log_x) - log_y
            value = jnp.sum(w * log_lik(r, z[-1])) + priors.log_density(the_prior, z)
            return jnp.where(jnp.isfinite(value), value, -jnp.inf)

        r = law.log_predict(full, log_x) - log_y
        scale = jnp.maximum(jnp.sqrt(jnp.sum(w * r**2) / jnp.sum(w)), 1e-4)  # the fit's RMS residual
        mode = jnp.concatenate([full[free], jnp.log(scale)[None]])
        key_init, key_run = jax.random.split(jax.random.key(seed))
        inits = _dispersed(log_density, mode, chains, key_init)
        positions, info = _run(blackjax, log_density, inits, key_run, warmup, draws)
    theta = np.broadcast_to(np.asarray(point.theta), positions.shape[:2] + (law.n_params,)).copy()
    theta[..., free] = np.asarray(positions[..., :-1])
    return PosteriorResult(
        law=law,
        point=point,
        theta=theta,
        sigma=np.exp(np.asarray(positions[..., -1])),
        likelihood=likelihood,
        prior=the_prior,
        seed=seed,
        diagnostics=diagnose(law, theta, free, np.asarray(positions[..., -1]), info, MAX_DOUBLINGS),
    )


def _blackjax():
    try:
        import blackjax
    except ImportError:
        raise ImportError(
            "posterior() samples with blackjax, an optional dependency: pip install 'jaxscale[bayes]'"
        ) from None
    return blackjax


def _log_likelihood(likelihood: str, nu: float, delta: float):
    """``f(r, log_sigma)``: each run's log-likelihood of its residual ``r``."""
    if likelihood == "gaussian":
        return lambda r, s: -0.5 * (r / jnp.exp(s)) ** 2 - s - 0.5 * jnp.log(2 * jnp.pi)
    if likelihood == "student_t":
        const = gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * jnp.log(nu * jnp.pi)
        return lambda r, s: const - s - (nu + 1) / 2 * jnp.log1p((r / jnp.exp(s)) ** 2 / nu)
    # Huber's density: exp(-rho(x)) integrates to sqrt(2 pi) (2 Phi(delta) - 1) + 2 exp(-delta^2 / 2) / delta.
    log_z = jnp.log(jnp.sqrt(2 * jnp.pi) * (2 * ndtr(delta) - 1) + 2 * jnp.exp(-(delta**2) / 2) / delta)

    def huber(r, s):
        x = jnp.abs(r / jnp.exp(s))
        rho = jnp.where(x <= delta, 0.5 * x**2, delta * x - 0.5 * delta**2)
        return -rho - s - log_z

    return huber


def _dispersed(log_density, mode, chains: int, key) -> jax.Array:
    """``chains`` starts drawn around ``mode`` from twice the Laplace approximation's spread (the
    inverse Hessian of the negative log density), or 0.05 per coordinate where it is not
    positive definite: dispersed, as R-hat needs, but in the optimum's basin."""
    hess = -jax.hessian(log_density)(mode)
    vals, vecs = jnp.linalg.eigh(hess)
    ok = jnp.all(vals > 0) & jnp.all(jnp.isfinite(vals))
    sd = jnp.where(ok, 1.0, 0.0)[None] * (vecs / jnp.sqrt(jnp.maximum(vals, 1e-300)))
    noise = jax.random.normal(key, (chains, mode.shape[0]))
    laplace = mode + 2.0 * noise @ sd.T
    fallback = mode + 0.05 * noise
    return jnp.where(ok, laplace, fallback)


def _run(blackjax, log_density, inits, key, warmup: int, draws: int):
    """Every chain's window adaptation then ``draws`` NUTS steps, vmapped over chains, jitted:
    positions ``[chains, draws, d]`` and per-draw info (divergent, tree doublings, acceptance)."""

    def one(z0, k):
        k_adapt, k_draw = jax.random.split(k)
        adapt = blackjax.window_adaptation(
            blackjax.nuts, log_density, is_mass_matrix_diagonal=False, max_num_doublings=MAX_DOUBLINGS
        )
        (state, params), _ = adapt.run(k_adapt, z0, num_steps=warmup)
        step = blackjax.nuts(log_density, **{"max_num_doublings": MAX_DOUBLINGS, **params}).step

        def body(st, kk):
            st, info = step(kk, st)
            return st, (st.position, info.is_divergent, info.num_trajectory_expansions, info.acceptance_rate)

        _, (pos, divergent, doublings, accept) = jax.lax.scan(body, state, jax.random.split(k_draw, draws))
        return pos, {"divergent": divergent, "doublings": doublings, "acceptance": accept}

    keys = jax.random.split(key, inits.shape[0])
    pos, info = jax.jit(jax.vmap(one))(inits, keys)
    return pos, jax.tree.map(np.asarray, info)
