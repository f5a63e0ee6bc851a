"""``frontier``: the compute-optimal N, D, tokens per parameter and loss of a fit or a
bootstrap at given budgets, with bootstrap bands; the math is in :mod:`jaxscale.allocation`
(closed form for Chinchilla under C = 6ND, numeric for any law or FLOPs count).

Example:
    >>> import jaxscale as js
    >>> published = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al.
    >>> table = js.frontier(published, [5.76e23], law="chinchilla")
    >>> f"{table['N_opt'][0]:.2e} {table['D_opt'][0]:.2e}"
    '3.22e+10 2.98e+12'
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import checks
from .allocation import Flops, allocate, chinchilla_allocation, six_nd
from .laws import Law, get_law
from .posterior_result import PosteriorResult
from .results import BootstrapResult, FitResult


class FrontierWarning(UserWarning):
    """Some budgets have no compute-optimal allocation (see the ``status`` column of :func:`frontier`)."""


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
    if isinstance(result, BootstrapResult | PosteriorResult):
        point = result.point.params
        return result.law, np.array([[point[n] for n in result.law.natural]]), result.draws[result.ok]
    return result.law, np.array([[result.params[n] for n in result.law.natural]]), None


def optimal_losses(result, compute: np.ndarray, *, law=None, flops: Flops | None = None, n_range=(1e4, 1e16), **inputs):
    """The compute-optimal loss at each budget ``compute [K]`` of ``result``'s point estimate
    ``[1, K]`` and of its converged bootstrap draws ``[n, K]`` (None without draws): what
    :func:`frontier` computes, for callers that need it per draw (:mod:`jaxscale.multiplier`).
    Closed form for Chinchilla under 6ND, numeric otherwise; NaN where no optimum exists."""
    law, point, draws = _point_and_draws(result, law)
    if law.name == "chinchilla" and flops is None:
        solve = lambda natural: _closed(law, natural, compute)  # noqa: E731
    else:
        solve = lambda natural: _numeric(law, natural, compute, flops or six_nd, inputs, n_range)  # noqa: E731

    def losses(natural):
        _, _, loss, edge = solve(natural)
        return np.where(np.asarray(edge, bool), np.nan, loss)

    return law, losses(point), None if draws is None else losses(draws)


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
            resamples that converged), a :class:`~jaxscale.PosteriorResult` (the same columns as
            equal-tailed credible intervals, and its posterior medians as the estimates), a dict of
            natural parameters with ``law=...`` (e.g. a published fit), or a table of
            :func:`~jaxscale.isoflop` (Approach 2's power laws extrapolated, one row per group and
            budget, with bands over its resamples: :func:`jaxscale.isoflop_report.extrapolate`).
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

    from . import isoflop_report

    if isoflop_report.is_isoflop_table(result):
        if law is not None or flops is not None or inputs or method != "auto":
            raise ValueError("an isoflop table carries its own power laws: law, flops, method and inputs do not apply")
        return isoflop_report.extrapolate(result, compute, level=level)
    if not isinstance(result, Mapping | FitResult | BootstrapResult | PosteriorResult):
        raise TypeError(
            "result must be a FitResult, a BootstrapResult, an isoflop table or a dict of natural parameters "
            f"(with law=...); got {result!r} ({type(result).__name__})"
        )
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
            if isinstance(result, PosteriorResult):  # a posterior's estimate is its median, not the fit's
                table[name] = np.median(values, axis=0)
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
