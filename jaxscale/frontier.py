"""Compute-optimal allocation: closed form for Chinchilla, numeric for any law.

Minimising ``E + A/N^α + B/D^β`` subject to ``6ND = C`` gives (Hoffmann et al. 2022, eq. 4)
``N_opt = G (C/6)^a``, ``D_opt = G⁻¹ (C/6)^b`` with ``G = (αA/(βB))^(1/(α+β))``,
``a = β/(α+β)``, ``b = α/(α+β)``. For any other law (or another FLOPs count) the optimum
is found numerically: a coarse grid in log N, then safeguarded Newton steps on
``dL/dlog N`` inside the bracket around the best grid point — vmapped over parameter
draws × budgets, so a bootstrap band over 1,000 budgets is one call.

FLOPs functions: every FLOPs count is proportional to the tokens processed, so for a
budget C the tokens are ``D = C / flops(N, 1)``. The default is ``flops(N, D) = 6 N D``.

Example:
    >>> from jaxscale.frontier import chinchilla_allocation
    >>> n, d = chinchilla_allocation({"A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}, 5.76e23)
    >>> f"{n:.2e} {d:.2e}"
    '3.22e+10 2.98e+12'
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import checks
from .laws import Law, get_law

Flops = Callable[[Any, Any], Any]


class FrontierWarning(UserWarning):
    """Some budgets have no compute-optimal allocation (see the ``status`` column of :func:`frontier`)."""


def six_nd(n, d):
    """The standard training-FLOPs approximation C = 6ND (Kaplan et al. 2020)."""
    return 6.0 * n * d


def chinchilla_allocation(params: Mapping, compute) -> tuple[np.ndarray, np.ndarray]:
    """``(N_opt, D_opt)`` at ``compute`` FLOPs for Chinchilla parameters (scalars or arrays)."""
    alpha, beta = np.asarray(params["alpha"]), np.asarray(params["beta"])
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    # In logs: G = exp((log(αA) − log(βB)) / (α+β)); avoids overflow for large A, B.
    log_g = (np.log(alpha * np.asarray(params["A"])) - np.log(beta * np.asarray(params["B"]))) / (alpha + beta)
    log_c6 = np.log(np.asarray(compute, dtype=np.float64) / 6.0)
    return np.exp(log_g + a * log_c6), np.exp(-log_g + b * log_c6)


class Allocation(NamedTuple):
    """Numeric optimum per (draw, budget): arrays of shape ``[..., n_budgets]``."""

    log_n: jax.Array
    log_d: jax.Array
    log_loss: jax.Array
    at_edge: jax.Array  # the optimum is at the end of the searched N range: not an interior optimum


def _log_tokens(log_n, log_c, flops: Flops):
    # FLOPs are linear in tokens: D = C / flops(N, 1).
    return log_c - jnp.log(flops(jnp.exp(log_n), 1.0))


@partial(jax.jit, static_argnames=("law", "flops", "grid_size", "newton_steps"))
def allocate(
    law: Law,
    theta: jax.Array,
    log_compute: jax.Array,
    extra: jax.Array,
    log_n_range: tuple[float, float] | jax.Array,
    *,
    flops: Flops = six_nd,
    grid_size: int = 96,
    newton_steps: int = 12,
) -> Allocation:
    """Numeric compute-optimal N for fitted parameters ``theta [M, p]`` and budgets ``[B]``.

    ``law`` must have inputs ``("N", "D", *others)``; ``extra [k-2]`` holds the logs of the
    other inputs (e.g. unique tokens U), held fixed. Returns arrays ``[M, B]``.
    """
    lo, hi = log_n_range
    grid = jnp.linspace(lo, hi, grid_size)
    step = grid[1] - grid[0]

    def log_loss(th, u, log_c):
        x = jnp.concatenate([jnp.stack([u, _log_tokens(u, log_c, flops)]), extra])
        return law.log_predict(th, x)

    slope = jax.grad(log_loss, argnums=1)
    curvature = jax.grad(slope, argnums=1)

    def one(th, log_c):
        values = jax.vmap(lambda u: log_loss(th, u, log_c))(grid)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)
        i = jnp.argmin(values)
        a, b = grid[i] - step, grid[i] + step

        def newton(_, state):
            u, a, b, best, best_g = state
            g = slope(th, u, log_c)
            # Keep the point with the smallest |dL/du| seen: once converged, a later
            # bisection step (taken when Newton's step rounds onto the bracket's end)
            # must not move the answer.
            better = jnp.abs(g) < best_g
            best, best_g = jnp.where(better, u, best), jnp.where(better, jnp.abs(g), best_g)
            # Keep the bracket around the root of dL/du, then step by Newton where it stays
            # inside, by bisection where it would leave (or the curvature is not positive).
            a, b = jnp.where(g > 0, a, u), jnp.where(g > 0, u, b)
            h = curvature(th, u, log_c)
            trial = u - g / jnp.where(h > 0, h, 1.0)
            inside = (h > 0) & (trial > a) & (trial < b)
            return jnp.where(inside, trial, 0.5 * (a + b)), a, b, best, best_g

        start = (grid[i], a, b, grid[i], jnp.array(jnp.inf, grid.dtype))
        _, _, _, u, _ = jax.lax.fori_loop(0, newton_steps, newton, start)
        u = jnp.clip(u, lo, hi)
        edge = (i == 0) | (i == grid_size - 1)
        return u, _log_tokens(u, log_c, flops), log_loss(th, u, log_c), edge

    out = jax.vmap(lambda th: jax.vmap(lambda c: one(th, c))(log_compute))(theta)
    return Allocation(*out)


def _numeric(law: Law, natural: np.ndarray, compute: np.ndarray, flops: Flops, extra: Mapping[str, float], n_range):
    if law.inputs[:2] != ("N", "D"):
        raise ValueError(f"a frontier needs a law of N and D (and fixed others); law {law.name!r} has {law.inputs}")
    missing = [name for name in law.inputs[2:] if name not in extra]
    if missing:
        raise ValueError(f"law {law.name!r} also needs {missing}: pass them, e.g. frontier(..., {missing[0]}=25e9)")
    with jax.enable_x64(True):
        log_extra = jnp.log(jnp.array([float(extra[name]) for name in law.inputs[2:]], dtype=jnp.float64))
        alloc = allocate(
            law,
            jnp.asarray(law.to_fitted(natural)),
            jnp.log(jnp.asarray(compute)),
            log_extra,
            (float(np.log(n_range[0])), float(np.log(n_range[1]))),
            flops=flops,
        )
    n_opt, d_opt, loss = (np.exp(np.asarray(v)) for v in alloc[:3])
    return n_opt, d_opt, loss, np.asarray(alloc.at_edge)


def _closed(law: Law, natural: np.ndarray, compute: np.ndarray):
    params = {name: natural[..., i, None] for i, name in enumerate(law.natural)}
    # An exponent <= 0 has no optimum: NaN, flagged in the status column, rather than a numpy warning.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        n_opt, d_opt = chinchilla_allocation(params, compute)
        loss = params["E"] + params["A"] / n_opt ** params["alpha"] + params["B"] / d_opt ** params["beta"]
    return n_opt, d_opt, loss, np.zeros(n_opt.shape, bool)


def _point_and_draws(result, law) -> tuple[Law, np.ndarray, np.ndarray | None]:
    """(law, natural point estimate [1, p], converged draws [n, p] or None) of any result."""
    if isinstance(result, Mapping):
        if law is None:
            raise ValueError("frontier(params_dict, ...) needs law=..., e.g. law='chinchilla'")
        law = get_law(law)
        return law, np.array([[float(result[name]) for name in law.natural]]), None
    if hasattr(result, "draws"):  # a BootstrapResult
        point = result.point.params
        return result.law, np.array([[point[n] for n in result.law.natural]]), result.draws[result.ok]
    return result.law, np.array([[result.params[n] for n in result.law.natural]]), None


def frontier(
    result,
    compute: Sequence[float],
    *,
    law: str | Law | None = None,
    flops: Flops | None = None,
    method: str = "auto",
    level: float = 0.95,
    n_range: tuple[float, float] = (1e4, 1e16),
    **inputs: float,
):
    """Compute-optimal N, D, tokens per parameter and loss at each budget (DataFrame).

    Args:
        result: a :class:`~jaxscale.FitResult`, a :class:`~jaxscale.BootstrapResult`
            (adds ``<quantity>_lower`` / ``_upper`` percentile columns at ``level``, over the
            resamples that converged), or a dict of natural parameters with ``law=...``
            (e.g. a published fit).
        compute: budgets in FLOPs.
        flops: FLOPs as a function of (N, D), linear in D (default ``6 N D``).
        method: ``"closed"`` (Chinchilla under 6ND only), ``"numeric"``, or ``"auto"``.
        n_range: the range of N searched numerically; an optimum at its end is flagged in
            the ``at_edge`` column rather than passed off as the optimum.
        inputs: values of the law's other inputs, held fixed (e.g. ``U=25e9``).

    Example:
        >>> import jaxscale as js
        >>> f = js.frontier(js.fit(js.datasets.chinchilla()), compute=[1e21, 1e23])
        >>> [round(v, 1) for v in f["tokens_per_param"]]
        [21.4, 18.8]
    """
    import pandas as pd

    checks.frontier_arguments(result, law=law, compute=compute, flops=flops, level=level, n_range=n_range, **inputs)
    law, point, draws = _point_and_draws(result, law)
    compute = checks.check_budgets("compute", compute)
    closed_ok = law.name == "chinchilla" and flops is None
    if method not in ("auto", "closed", "numeric"):
        raise ValueError(f"method must be 'auto', 'closed' or 'numeric'; got {method!r}")
    if method == "closed" and not closed_ok:
        raise ValueError("the closed form needs the chinchilla law and C = 6ND; use method='numeric'")
    use_closed = method == "closed" or (method == "auto" and closed_ok)

    def solve(natural):
        if use_closed:
            return _closed(law, natural, compute)
        return _numeric(law, natural, compute, flops or six_nd, inputs, n_range)

    n_opt, d_opt, loss, edge = (v[0] for v in solve(point))
    table = pd.DataFrame(
        {"compute": compute, "N_opt": n_opt, "D_opt": d_opt, "tokens_per_param": d_opt / n_opt, "loss": loss}
    )
    if not use_closed:
        table["at_edge"] = edge
    table["status"] = _row_status(result, law, point[0], table, edge)
    if draws is not None:
        if len(draws) == 0:
            raise ValueError("no bootstrap resample converged: no band can be computed")
        bn, bd, bl, _ = solve(draws)
        tail = 100 * (1 - level) / 2
        for name, values in {"N_opt": bn, "D_opt": bd, "tokens_per_param": bd / bn, "loss": bl}.items():
            lo, hi = np.percentile(values, [tail, 100 - tail], axis=0)
            table[f"{name}_lower"], table[f"{name}_upper"] = lo, hi
    if (table["status"] != "ok").any():
        warnings.warn(FrontierWarning(_explain(result, law, point[0], table)), stacklevel=2)
    return table


def _fit_status(result) -> str:
    """The status of the fit behind ``result`` ("converged" for a dict of parameters)."""
    fit = getattr(result, "point", result)
    return getattr(fit, "status", "converged")


def _row_status(result, law: Law, natural: np.ndarray, table, edge: np.ndarray) -> np.ndarray:
    """Per budget: ``"ok"``, ``"no_interior_optimum"`` (a non-finite answer, an optimum at the end
    of the searched range, or an exponent the law needs positive that is not), or the status of
    a fit that is not converged (e.g. ``"unidentified"``)."""
    values = table[["N_opt", "D_opt", "loss"]].to_numpy(dtype=np.float64)
    signs_ok = all(natural[law.natural.index(name)] > 0 for name in law.positive)
    interior = np.all(np.isfinite(values), axis=1) & ~np.asarray(edge, dtype=bool) & signs_ok
    fit_status = _fit_status(result)
    return np.where(interior, "ok" if fit_status == "converged" else fit_status, "no_interior_optimum")


def _explain(result, law: Law, natural: np.ndarray, table) -> str:
    n_bad = int((table["status"] != "ok").sum())
    why = []
    bad_signs = [name for name in law.positive if not natural[law.natural.index(name)] > 0]
    if bad_signs:
        shown = ", ".join(f"{n} = {natural[law.natural.index(n)]:.3g}" for n in bad_signs)
        why.append(f"{shown} (must be > 0: loss that does not fall with scale has no optimum along a budget)")
    fit = getattr(result, "point", result)
    if _fit_status(result) != "converged":
        detail = getattr(fit, "unidentified_reason", "") or ""
        why.append(f"the fit is {_fit_status(result)}" + (f" ({detail})" if detail else ""))
    if (table["status"] == "no_interior_optimum").any() and not bad_signs:
        why.append("the optimum is not finite or lies at the end of the searched N range (see at_edge, n_range)")
    return (
        f"{n_bad} of {len(table)} budgets have no trustworthy compute-optimal allocation: "
        + "; ".join(why)
        + ". See the table's status column"
    )
