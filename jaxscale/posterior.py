"""``posterior``: a Bayesian posterior of a law's parameters from NUTS chains run side by side.

The chains sample the law's fitted coordinates (logs of coefficients, exponents as they are)
and the log of the noise scale ``sigma`` of the log-loss residuals, under a likelihood
(:data:`LIKELIHOODS`) and a prior (:mod:`jaxscale.priors`). They start around the multi-start
fit's optimum (:func:`jaxscale.fit`), dispersed by twice its Laplace spread, adapt their step
size and a dense mass matrix (blackjax's window adaptation), and run vmapped in one compiled
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

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, ndtr
from jax.sharding import Mesh, PartitionSpec

from . import backends, checks, priors
from .fit import as_runs, fit, match_inputs
from .laws import Law, get_law
from .posterior_result import LIKELIHOODS, PosteriorResult, diagnose
from .runs import Runs

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
    by: str | Sequence[str] | None = None,
    devices: int | None = None,
) -> PosteriorResult | dict:
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
        weights: per-run weights (default 1; one per run, also with ``by=``): a run's
            log-likelihood counts ``weight`` times, 0 leaves it out.
        seed: the PRNG seed of the inits, the adaptation and the draws.
        by: column(s) naming groups (``runs`` a DataFrame or file, or Runs read with ``group=``):
            the groups' chains run side by side in compiled calls of the backend's number of
            groups (all at once on a GPU, 4 on a CPU, two calls at a time:
            :mod:`jaxscale.backends`), each started around its own fit
            (:func:`jaxscale.fit_groups`' defaults); returns ``{group key: PosteriorResult}``.
            On one device the chains do not depend on how the groups are split into calls.
        devices: with ``by=``, the local devices the groups are split over (default: all; see
            :func:`jaxscale.use_cpu_cores`); the same posteriors on any count, to Monte Carlo
            error (the partitioned program's draws are not bit-identical to one device's).

    Returns:
        :class:`PosteriorResult`: draws, diagnostics (R-hat, bulk and tail ESS, divergences,
        treedepth saturation) and ``status`` (``"ok"`` only when they all pass).
    """
    _blackjax()  # fails first, naming the extra to install, when blackjax is missing
    law = get_law(law)
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")
    for name, value, least in (("chains", chains, 2), ("draws", draws, 50), ("warmup", warmup, 50)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise ValueError(f"{name} must be an integer of at least {least} (R-hat needs 2 chains); got {value!r}")
    if not (np.isfinite(nu) and nu > 0 and np.isfinite(delta) and delta > 0):
        raise ValueError(f"nu and delta must be numbers > 0; got nu={nu!r}, delta={delta!r}")
    checks.arguments(law, seed=seed, fixed=fixed)
    if by is not None and not isinstance(runs, Runs):
        from .io import read_runs

        runs = read_runs(runs, group=by)
    runs = as_runs(runs)
    model = (likelihood, nu, delta)
    if by is not None:
        return _posterior_groups(runs, law, prior, model, fixed, weights, (chains, draws, warmup), seed, devices)
    point = fit(runs, law, fixed=fixed, weights=weights)  # checks the runs; the chains start at its optimum
    free = np.array([i for i, n in enumerate(law.natural) if n not in point.fixed])
    the_prior = priors.resolve(law, prior, free)
    w = np.ones(runs.n_points) if weights is None else np.asarray(weights, dtype=np.float64)  # fit checked them
    sample = _compiled(law, tuple(free), likelihood, float(nu), float(delta), chains, warmup, draws, 0)
    with jax.enable_x64(True):
        data = (match_inputs(runs, law), runs.log_loss(), w)
        positions, info = sample(jnp.asarray(point.theta), *data, jax.random.key(seed), _traced(the_prior))
    return _result(law, point, the_prior, free, model, seed, np.asarray(positions), info)


def _posterior_groups(runs, law, prior, model, fixed, weights, sizes, seed, devices):
    """Every group's chains, in calls of the backend's number of groups (one call on a GPU), two
    calls at a time (:mod:`jaxscale.backends`): groups padded with weight-0 runs to one size."""
    from .batches import balanced_chunk, group_rows, pad_rows, side_by_side
    from .groups import group_fits

    if runs.groups is None:
        raise ValueError(
            "posterior(..., by=...) needs runs with groups: pass the DataFrame or file, or Runs read with "
            "read_runs(..., group=[...])"
        )
    n_devices = len(jax.local_devices()) if devices is None else int(devices)
    if not 1 <= n_devices <= len(jax.local_devices()):
        raise ValueError(f"devices must be between 1 and {len(jax.local_devices())} (the local devices); got {devices}")
    likelihood, nu, delta = model
    chains, draws, warmup = sizes
    keys, members, fits, run_weights = group_fits(runs, law, fixed=fixed, weights=weights)
    free = np.array([i for i, n in enumerate(law.natural) if n not in (fixed or {})])
    the_prior = priors.resolve(law, prior, free)
    size = max(len(m) for m in members)
    log_x_all, log_y_all = match_inputs(runs, law), runs.log_loss()
    take, real = group_rows(members, size)  # padding repeats a group's runs, with weight 0
    w = real * run_weights[take]
    thetas = np.stack([fits[g].theta for g in range(len(keys))])
    sample = _compiled(law, tuple(free), likelihood, float(nu), float(delta), chains, warmup, draws, n_devices)
    # Groups per call (the backend's; a multiple of the device count): whole groups per device,
    # the last call padded with copies of its first group, dropped after. A group's key is the
    # same in any call.
    per_call = backends.sizes().posterior_groups or len(keys)
    step = n_devices * balanced_chunk(-(-len(keys) // n_devices), -(-per_call // n_devices))
    with jax.enable_x64(True):
        keys_g = jax.random.split(jax.random.key(seed), len(keys))

    def call(lo: int) -> tuple[np.ndarray, dict]:
        rows = pad_rows(np.arange(lo, min(lo + step, len(keys))), step)
        with jax.enable_x64(True):
            args = (thetas[rows], log_x_all[take[rows]], log_y_all[take[rows]], w[rows], keys_g[rows])
            positions, info = sample(*args, _traced(the_prior))
        keep = min(step, len(keys) - lo)
        return np.asarray(positions)[:keep], {k: np.asarray(v)[:keep] for k, v in info.items()}

    parts = list(side_by_side(call, range(0, len(keys), step), backends.sizes().calls_at_once))
    positions = np.concatenate([p for p, _ in parts])
    info = {k: np.concatenate([i[k] for _, i in parts]) for k in parts[0][1]}
    return {
        key: _result(
            law,
            fits[g],
            the_prior,
            free,
            model,
            seed,
            positions[g],
            {k: v[g] for k, v in info.items()},
        )
        for g, key in enumerate(keys)
    }


@functools.lru_cache(maxsize=32)
def _compiled(law: Law, free: tuple, likelihood: str, nu: float, delta: float, chains, warmup, draws, devices: int):
    """The jitted sampler of one static configuration, kept so that calls alike (a loop over data
    sets) compile once: :func:`_sampler`'s ``sample`` for one data set (``devices`` 0), or vmapped
    over data sets (the prior shared) and split over ``devices`` local devices (``shard_map``,
    as :func:`jaxscale.engine.sharded_solver`: the group count must be a multiple of it)."""
    sample = _sampler(_blackjax(), law, np.asarray(free), likelihood, nu, delta, chains, warmup, draws)
    if devices == 0:
        return jax.jit(sample)
    batched = jax.vmap(sample, in_axes=(0, 0, 0, 0, 0, None))
    if devices == 1:
        return jax.jit(batched)
    mesh = Mesh(np.array(jax.local_devices()[:devices]), ("devices",))
    per_group = PartitionSpec("devices")
    return jax.jit(
        jax.shard_map(
            batched, mesh=mesh, in_specs=(per_group,) * 5 + (PartitionSpec(),), out_specs=per_group, check_vma=False
        )
    )


def _traced(prior: priors.Prior) -> priors.Prior:
    """The prior as a pytree of arrays (its names, strings, dropped), passed to the jitted sampler."""
    return prior._replace(names=None)


def _sampler(blackjax, law: Law, free, likelihood, nu, delta, chains, warmup, draws):
    """``sample(theta, log_x, log_y, w, key, prior)``: one data set's chains (pure; vmap it over
    data sets): positions ``[chains, draws, d]`` and NUTS's per-draw info."""
    log_lik = _log_likelihood(likelihood, nu, delta)

    def sample(theta, log_x, log_y, w, key, prior):
        def log_density(z):
            r = law.log_predict(theta.at[free].set(z[:-1]), log_x) - log_y
            value = jnp.sum(w * log_lik(r, z[-1])) + priors.log_density(prior, z)
            return jnp.where(jnp.isfinite(value), value, -jnp.inf)

        r = law.log_predict(theta, log_x) - log_y
        scale = jnp.maximum(jnp.sqrt(jnp.sum(w * r**2) / jnp.sum(w)), 1e-4)  # the fit's RMS residual
        mode = jnp.concatenate([theta[free], jnp.log(scale)[None]])
        key_init, key_run = jax.random.split(key)
        inits, metric = _dispersed(log_density, mode, chains, key_init)
        return _run(blackjax, log_density, inits, metric, key_run, warmup, draws)

    return sample


def _result(law, point, prior, free, model, seed, positions, info) -> PosteriorResult:
    likelihood, nu, delta = model
    theta = np.broadcast_to(np.asarray(point.theta), positions.shape[:2] + (law.n_params,)).copy()
    theta[..., free] = positions[..., :-1]
    info = jax.tree.map(np.asarray, info)
    return PosteriorResult(
        law=law,
        point=point,
        theta=theta,
        sigma=np.exp(positions[..., -1]),
        likelihood=likelihood,
        prior=prior,
        seed=seed,
        diagnostics=diagnose(law, theta, free, positions[..., -1], info, MAX_DOUBLINGS),
        nu=float(nu),
        delta=float(delta),
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


def _dispersed(log_density, mode, chains: int, key) -> tuple[jax.Array, jax.Array]:
    """``chains`` starts drawn around ``mode`` from twice the Laplace approximation's spread (the
    inverse Hessian of the negative log density), or 0.05 per coordinate where it is not
    positive definite: dispersed, as R-hat needs, but in the optimum's basin. Also the
    warm-up's first metric: that covariance, with the Hessian's eigenvalues taken by absolute
    value (floored at 1e-8 of the largest) where some are not positive, as at a fit that is not
    the posterior's mode; the identity where they are not finite or all 0. Without it, a group
    whose Hessian is indefinite warms up from the identity, draws deep trees, and in a batch of
    groups holds every chain's step to them (benchmarks/RESULTS.md, "Posterior")."""
    hess = -jax.hessian(log_density)(mode)
    vals, vecs = jnp.linalg.eigh(hess)
    finite = jnp.all(jnp.isfinite(vals))
    ok = jnp.all(vals > 0) & finite
    sd = jnp.where(ok, 1.0, 0.0)[None] * (vecs / jnp.sqrt(jnp.maximum(vals, 1e-300)))
    noise = jax.random.normal(key, (chains, mode.shape[0]))
    laplace = mode + 2.0 * noise @ sd.T
    fallback = mode + 0.05 * noise
    # The positive-definite metric keeps its own formula (sd sd^T, no floor): the same to the bit
    # as before indefinite Hessians had one, so those groups' chains are unchanged.
    size = jnp.where(finite, jnp.abs(vals), 1.0)
    usable = finite & (jnp.max(size) > 0)
    indefinite = (vecs / jnp.maximum(size, 1e-8 * jnp.max(size))[None]) @ vecs.T
    metric = jnp.where(ok, sd @ sd.T, jnp.where(usable, indefinite, jnp.eye(mode.shape[0])))
    return jnp.where(ok, laplace, fallback), metric


def _run(blackjax, log_density, inits, metric, key, warmup: int, draws: int):
    """Every chain's window adaptation, from the inverse mass matrix ``metric``, then ``draws``
    NUTS steps, vmapped over chains, jitted: positions ``[chains, draws, d]`` and per-draw info
    (divergent, tree doublings, acceptance)."""

    def one(z0, k):
        k_adapt, k_draw = jax.random.split(k)
        adapt = blackjax.window_adaptation(
            blackjax.nuts,
            log_density,
            is_mass_matrix_diagonal=False,
            initial_inverse_mass_matrix=metric,
            max_num_doublings=MAX_DOUBLINGS,
        )
        (state, params), _ = adapt.run(k_adapt, z0, num_steps=warmup)
        step = blackjax.nuts(log_density, **{"max_num_doublings": MAX_DOUBLINGS, **params}).step

        def body(st, kk):
            st, info = step(kk, st)
            return st, (st.position, info.is_divergent, info.num_trajectory_expansions, info.acceptance_rate)

        _, (pos, divergent, doublings, accept) = jax.lax.scan(body, state, jax.random.split(k_draw, draws))
        return pos, {"divergent": divergent, "doublings": doublings, "acceptance": accept}

    return jax.vmap(one)(inits, jax.random.split(key, inits.shape[0]))
