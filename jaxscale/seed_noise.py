"""The seed-noise bootstrap of isoFLOP optima (Porian et al. 2024), vectorised.

Instead of resampling runs, every budget's losses are perturbed by Gaussian noise of the size
that training seeds give (loss-dependent: :func:`sigma`), and the budget's optimum is found
again, ``n`` times. Replicates whose optimum is not interior are discarded; a budget with
fewer than :data:`MIN_INTERIOR` of them interior is not used. Then, per budget:

* the observation: the median of the interior replicates' optima (or the unperturbed optimum);
* its spread: the standard deviation of their log optima, floored at :data:`MIN_STD_SPACING`
  times the budget's mean log spacing of sizes and inflated by ``n / interior``;

and the power laws are fitted by least squares, optionally weighted by 1 / spread². Intervals
come from refitting with replicate ``i`` of every budget (the ``i``-th interior one, for ``i``
below the fewest interior replicates of any budget used).

Example:
    >>> import jax.numpy as jnp
    >>> noise = jnp.array([3.0, 0.002, 7.0, 0.05])  # 0.002 at loss 3, 0.05 at 7, log-linear between
    >>> [round(float(v), 5) for v in sigma(jnp.array([2.0, 3.0, 5.0, 9.0]), noise)]
    [0.002, 0.002, 0.01, 0.05]
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from . import _approaches as shared

MIN_INTERIOR = 0.5  # share of a budget's replicates that must be interior for the budget to count
MIN_STD_SPACING = 0.33  # floor of an optimum's spread, in units of the budget's mean log spacing of sizes


def noise_schedule(noise: float | tuple[tuple[float, float], tuple[float, float]]) -> tuple[float, float, float, float]:
    """``(loss_low, sigma_low, loss_high, sigma_high)`` from a constant σ or two ``(loss, σ)`` anchors."""
    if isinstance(noise, int | float):
        if not noise > 0:
            raise ValueError(f"noise is the loss's standard deviation across seeds and must be > 0; got {noise}")
        return (0.0, float(noise), 0.0, float(noise))
    try:
        (l_lo, s_lo), (l_hi, s_hi) = noise
    except (TypeError, ValueError):
        raise ValueError(
            "noise is a standard deviation (e.g. 0.002) or two (loss, standard deviation) anchors, "
            f"e.g. ((3.0, 0.002), (7.0, 0.05)); got {noise!r}"
        ) from None
    if not (s_lo > 0 and s_hi > 0 and l_hi > l_lo):
        raise ValueError(f"noise anchors need standard deviations > 0 and increasing losses; got {noise!r}")
    return (float(l_lo), float(s_lo), float(l_hi), float(s_hi))


def sigma(y: jax.Array, noise: jax.Array) -> jax.Array:
    """The seed noise's standard deviation at loss ``y``: ``noise[1]`` up to loss ``noise[0]``,
    ``noise[3]`` from ``noise[2]``, log-linear in between."""
    l_lo, s_lo, l_hi, s_hi = noise[0], noise[1], noise[2], noise[3]
    frac = jnp.clip((y - l_lo) / jnp.maximum(l_hi - l_lo, 1e-300), 0.0, 1.0)
    return jnp.exp(jnp.log(s_lo) + frac * (jnp.log(s_hi) - jnp.log(s_lo)))


def replicate(key: jax.Array, i: jax.Array, data, noise: jax.Array, optimum: Callable) -> tuple[jax.Array, jax.Array]:
    """Replicate ``i``: every side's log optimum ``[S,G,K]`` and whether it is interior, from
    losses perturbed with noise drawn per (replicate, group, budget, side, point)."""
    S, G, K, P = data.x.shape

    def noisy(s, group_id, budget_id):
        k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, i), group_id), budget_id)
        return jax.random.normal(jax.random.fold_in(k, s), (P,), dtype=data.y.dtype)

    z = jax.vmap(  # [S,G,K,P]
        lambda s: jax.vmap(lambda g, b: jax.vmap(lambda bb: noisy(s, g, bb))(b))(data.group_id, data.budget_id)
    )(jnp.arange(S))
    y = data.y + sigma(data.y, noise) * z
    positive = jnp.all((y > 0) | (data.mask == 0), axis=-1)
    xv, _, ok = jax.vmap(optimum, in_axes=(0, 0, None))(data.x, jnp.where(y > 0, y, 1.0), data.weight)
    return data.center + xv, ok & positive


def summarise(log_opt: jax.Array, interior: jax.Array, data, point_ok: jax.Array, median: bool, point_log: jax.Array):
    """Per side and budget ``[S,G,K]``: the observation (log), its spread and whether the
    budget's replicates are usable, from ``n`` replicates ``[n,S,G,K]``."""
    n = log_opt.shape[0]
    n_int = jnp.sum(interior, axis=0)
    valid = n_int >= jnp.ceil(MIN_INTERIOR * n)
    kept = jnp.where(interior, log_opt, jnp.nan)
    obs = jnp.log(jnp.nanmedian(jnp.exp(kept), axis=0)) if median else point_log
    present = (data.weight > 0)[None]
    lo = jnp.min(jnp.where(present, data.x, jnp.inf), axis=-1)
    hi = jnp.max(jnp.where(present, data.x, -jnp.inf), axis=-1)
    spacing = (hi - lo) / jnp.maximum(jnp.sum(present, axis=-1) - 1, 1)
    spread = jnp.maximum(jnp.nanstd(kept, axis=0), MIN_STD_SPACING * spacing) * n / jnp.maximum(n_int, 1)
    used = point_ok & jnp.all(valid, axis=0)
    return jnp.where(used, obs, 0.0), jnp.where(used, spread, 1.0), used, n_int


def power_laws(log_c, log_obs, spread, used, log_fpt, sides: tuple[str, ...], weighted: bool):
    """a, log k_N, b, log k_D from each side's observations ``[S,G,K]`` (the implied side: C = fpt · N · D)."""
    weight = 1.0 / spread**2 if weighted else jnp.ones_like(spread)
    other = log_c - log_fpt - log_obs[0]
    log_n, w_n, log_d, w_d = {
        ("N",): (log_obs[0], weight[0], other, weight[0]),
        ("D",): (other, weight[0], log_obs[0], weight[0]),
        ("N", "D"): (log_obs[0], weight[0], log_obs[-1], weight[-1]),
    }[sides]
    a, log_kn = shared.power_law(log_c, jnp.where(used, log_n, 0.0), used, w_n)
    b, log_kd = shared.power_law(log_c, jnp.where(used, log_d, 0.0), used, w_d)
    return a, log_kn, b, log_kd


def paired_draws(log_opt, interior, used, n_int, spread, log_c, log_fpt, sides, weighted):
    """Each replicate index's power laws ``[n, G]`` (a, log k_N, b, log k_D), from the ``i``-th
    interior replicate of every used budget; NaN from the fewest interior count on."""
    order = jnp.argsort(~interior, axis=0, stable=True)  # interior replicates first, in order
    ranked = jnp.take_along_axis(log_opt, order, axis=0)
    n_pair = jnp.min(jnp.where(used[None], n_int, log_opt.shape[0]), axis=(0, 2))  # [G]

    def one(obs):
        return power_laws(log_c, obs, spread, used, log_fpt, sides, weighted)

    draws = jax.lax.map(one, ranked)
    live = jnp.arange(log_opt.shape[0])[:, None] < n_pair[None]
    return tuple(jnp.where(live, d, jnp.nan) for d in draws)
