"""``isoflop``: Hoffmann et al.'s Approach 2 — a parabola per isoFLOP budget, then power laws.

For every compute budget C (runs of one ``flops`` value, or binned: :mod:`jaxscale.budgets`)
the loss is fitted by weighted least squares as a parabola in log N (:mod:`jaxscale.optima`);
its vertex is the budget's compute-optimal size N*(C), and D*(C) = C / (flops_per_token · N*).
With a tokens column the same is done in log D: D* fitted, and N* implied or (with both
columns) fitted too. Least squares across budgets then gives log N* = log k_N + a log C and
log D* = log k_D + b log C (a + b = 1 where one side is implied).

Intervals come from a bootstrap that resamples the points *within each budget* (multinomial
weights, resample ``i`` drawn from ``fold_in(key(seed), i)``) and refits every parabola and
both power laws. Groups × budgets × resamples are padded to one array shape
``[G groups, K budgets, P points]`` (zero weights on padding) and solved by one jit-compiled,
vmapped kernel; pandas stays at the edges.

Example:
    >>> import numpy as np, pandas as pd
    >>> import jaxscale as js
    >>> C = np.repeat([1e18, 1e19, 1e20], 7)
    >>> n_opt = 0.1 * C**0.5  # N* ∝ C^0.5 by construction
    >>> N = n_opt * np.tile([1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8], 3)
    >>> df = pd.DataFrame({"flops": C, "params": N, "loss": 2 + 0.05 * np.log(N / n_opt) ** 2})
    >>> table = js.isoflop(df, n_resamples=100)
    >>> table[["a", "a_lower", "a_upper", "b", "n_budgets"]].round(6).values.tolist()
    [[0.5, 0.5, 0.5, 0.5, 3.0]]
    >>> round(table.budgets[0][0]["N_opt"] / 1e8, 6), round(table.budgets[0][0]["loss"], 6)
    (1.0, 2.0)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import _approaches as shared
from . import budgets, checks, optima, seed_noise
from . import isoflop_report as report
from .io import read_table
from .isoflop_data import Padded, prepare
from .isoflop_report import EdgeOfRangeWarning, IsoflopWarning, isoflop_to_dicts
from .queries import select_rows

__all__ = ["EdgeOfRangeWarning", "IsoflopWarning", "isoflop", "isoflop_to_dicts"]


def _optimum(method: str):
    """A budget's optimum ``(x, loss, ok)`` by ``method`` (:mod:`jaxscale.optima`)."""
    return optima.parabola if method == "parabola" else lambda x, y, w: optima.akima(x, y, w)[:3]


def _fit(data: Padded, w: jax.Array, log_fpt: jax.Array, sides: tuple[str, ...], method: str, use=True):
    """Every budget's optimum on every side, then both power laws, for point weights ``w [G,K,P]``."""
    xv, yv, ok = jax.vmap(_optimum(method), in_axes=(0, None, None))(data.x, data.y, w)
    present = (w > 0)[None]
    lo = jnp.min(jnp.where(present, data.x, jnp.inf), axis=-1)
    hi = jnp.max(jnp.where(present, data.x, -jnp.inf), axis=-1)
    edge = jnp.any(ok & ((xv <= lo) | (xv >= hi)), axis=0)  # the optimum at or past the sampled range
    ok = jnp.all(ok, axis=0) & use
    log_opt = data.center + xv
    other = data.log_c - log_fpt - log_opt[0]  # the implied side: C = flops_per_token · N · D
    log_n, log_d = {
        ("N",): (log_opt[0], other),
        ("D",): (other, log_opt[0]),
        ("N", "D"): (log_opt[0], log_opt[-1]),
    }[sides]
    log_n, log_d = jnp.where(ok, log_n, 0.0), jnp.where(ok, log_d, 0.0)
    a, log_kn = shared.power_law(data.log_c, log_n, ok)
    b, log_kd = shared.power_law(data.log_c, log_d, ok)
    out = {"log_n": log_n, "log_d": log_d, "loss": yv[0], "ok": ok, "edge": edge}
    return out | {"a": a, "b": b, "log_kn": log_kn, "log_kd": log_kd}


def _resample_weights(key: jax.Array, i: jax.Array, data: Padded) -> jax.Array:
    """Multinomial counts ``[G,K,P]`` for resample ``i``: each budget's points drawn with replacement.

    Every draw has its own key (resample → group hash → budget rank → slot), so a group's
    resamples do not depend on the padding or on which other groups share the call.
    """
    slots = jnp.arange(data.mask.shape[-1])
    n = jnp.sum(data.mask, axis=-1).astype(jnp.int32)

    def budget(key_g, budget_id, n_b):
        key_b = jax.random.fold_in(key_g, budget_id)
        bits = jax.vmap(lambda j: jax.random.bits(jax.random.fold_in(key_b, j), (), jnp.uint32))(slots)
        draws = shared.uniform_below(bits, n_b)
        hits = (draws[:, None] == slots[None, :]) & (slots[:, None] < n_b)
        return jnp.sum(hits, axis=0).astype(data.y.dtype)

    def group(group_id, budget_ids, ns):
        key_g = jax.random.fold_in(jax.random.fold_in(key, i), group_id)
        return jax.vmap(partial(budget, key_g))(budget_ids, ns)

    return jax.vmap(group)(data.group_id, data.budget_id, n)


class Options(NamedTuple):
    """The static choices of one isoflop call (how optima, intervals and power laws are made)."""

    sides: tuple[str, ...]  # fitted sides: ("N",), ("D",) or ("N", "D")
    method: str  # "parabola" or "akima"
    resample: str  # "runs" or "noise"
    median: bool  # observations: the median of the noise replicates' optima (else the optimum)
    weighted: bool  # power laws weighted by 1 / spread² of each optimum


@partial(jax.jit, static_argnames=("n_resamples", "chunk", "options"))
def _kernel(data: Padded, key: jax.Array, log_fpt: jax.Array, noise: jax.Array, *, n_resamples, chunk, options):
    sides, method = options.sides, options.method
    point = _fit(data, data.weight, log_fpt, sides, method)
    if not n_resamples:
        return point, {}
    if options.resample == "noise":
        return _noise_kernel(data, key, log_fpt, noise, point, n_resamples, chunk, options)

    # The bootstrap refits the budgets the point estimate used; a resample drops a budget whose
    # parabola it leaves non-convex or undetermined (and we count how often that happens).
    def fit_one(i):  # only what the intervals need: keeps the [n_resamples, G, K] outputs small
        out = _fit(data, _resample_weights(key, i, data) * data.weight, log_fpt, sides, method, point["ok"])
        return {k: out[k] for k in ("a", "b", "log_kn", "log_kd", "ok", "edge")}

    boot = shared.chunked_resamples(fit_one, n_resamples, chunk)
    used = point["ok"][None]
    boot["dropped"] = jnp.mean((used & ~boot["ok"]).astype(data.y.dtype), axis=0)  # [G, K] per budget
    boot["edge"] = jnp.mean((boot["ok"] & boot["edge"]).astype(data.y.dtype), axis=0)
    boot["any_dropped"] = jnp.mean(jnp.any(used & ~boot["ok"], axis=-1).astype(data.y.dtype), axis=0)
    del boot["ok"]
    return point, boot


def _noise_kernel(data, key, log_fpt, noise, point, n, chunk, options):
    """Intervals (and, with ``options.median``/``weighted``, the point estimate) from the
    seed-noise bootstrap (:mod:`jaxscale.seed_noise`)."""
    optimum = _optimum(options.method)
    reps = shared.chunked_resamples(lambda i: seed_noise.replicate(key, i, data, noise, optimum), n, chunk)
    log_opt, interior = reps
    point_log = jnp.stack([point["log_n"] if s == "N" else point["log_d"] for s in options.sides])
    obs, spread, used, n_int = seed_noise.summarise(log_opt, interior, data, point["ok"], options.median, point_log)
    args = (data.log_c, obs, spread, used, log_fpt, options.sides, options.weighted)
    a, log_kn, b, log_kd = seed_noise.power_laws(*args)
    other = data.log_c - log_fpt - obs[0]
    log_n, log_d = {("N",): (obs[0], other), ("D",): (other, obs[0]), ("N", "D"): (obs[0], obs[-1])}[options.sides]
    point = point | {"ok": used, "log_n": jnp.where(used, log_n, 0.0), "log_d": jnp.where(used, log_d, 0.0)}
    point |= {"a": a, "log_kn": log_kn, "b": b, "log_kd": log_kd}
    draws = seed_noise.paired_draws(
        log_opt, interior, used, n_int, spread, *args[:1], log_fpt, options.sides, options.weighted
    )
    dropped = 1 - jnp.min(n_int, axis=0) / n  # [G, K]: replicates not interior on some side
    boot = dict(zip(("a", "log_kn", "b", "log_kd"), draws, strict=True))
    boot |= {"dropped": dropped, "edge": dropped, "any_dropped": jnp.mean(jnp.isnan(draws[0]), axis=0)}
    return point, boot


@checks.renamed(n_boot="n_resamples")
def isoflop(
    source: pd.DataFrame | str | os.PathLike,
    *,
    flops: str = "flops",
    N: str | None = "params",
    D: str | None = None,
    loss: str = "loss",
    by: str | Sequence[str] | None = None,
    where=None,
    budget: str | None = None,
    budget_rtol: float | None = None,
    bins_per_decade: float | None = None,
    budget_range: tuple[float, float] | None = None,
    window: float | None = None,
    weights: str | None = None,
    method: str = "parabola",
    resample: str = "runs",
    noise: float | tuple[tuple[float, float], tuple[float, float]] | None = None,
    observation: str = "point",
    weighted: bool = False,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    flops_per_token: float = 6.0,
) -> pd.DataFrame:
    """Approach 2 of Hoffmann et al. (2022): isoFLOP parabolas, then N* ∝ C^a and D* ∝ C^b.

    Porian et al. (2024)'s procedure is ``method="akima", resample="noise", noise=σ,
    observation="median", weighted=True`` with both ``N`` and ``D`` (σ = 0.002 for their
    RefinedWeb runs, 0.01 for OpenWebText2: what their code's noise schedule gives).

    Args:
        source: a DataFrame or a CSV/Parquet/JSON/JSONL file, one row per (budget, model) run.
        flops, loss: the columns holding each run's compute C and its loss.
        N, D: the parameter-count and token-count columns. With ``N`` only (the default),
            each budget's optimum N* is the vertex of a parabola of loss in log N and
            D* = C / (flops_per_token · N*), so b = 1 - a. With ``D`` only (``N=None``, e.g.
            Llama 3's isoFLOP figure), D* is fitted and N* implied. With both, N* and D* are
            each fitted on the observed values, so b is estimated, not set to 1 - a. The
            ``a_source`` and ``b_source`` columns say which (``"fitted"`` or ``"implied"``).
        by: a column or list of columns; one result row per group (default: one group).
        where: a pandas query string or boolean mask picking the runs to use.
        budget, budget_rtol, bins_per_decade: how runs form budgets (:mod:`jaxscale.budgets`;
            at most one): by default runs with the exact same ``flops`` share a budget;
            ``budget_rtol=0.1``: runs within 10% of a budget's smallest compute;
            ``bins_per_decade=10``: log-spaced bins; ``budget="name"``: runs with the same value
            of column ``name``. A formed budget's C is the geometric mean of its runs' compute;
            each entry of ``budgets`` gives its runs' smallest and largest. A budget needs at
            least 3 distinct sizes (after ``window``), else it is skipped and counted.
        budget_range: ``(smallest, largest)`` compute of the budgets fitted; others are left out.
        window: keep only runs within ``window`` of the budget's lowest-loss run in natural
            log N (log D with ``D`` only): ``np.log(4)`` is a factor of 4 either side, for
            curves that are not parabolic far from their minimum.
        weights: optional column of positive per-run weights for the parabola fits (e.g. to
            down-weight runs far from the minimum); resampling multiplies them by the counts.
        method: each budget's optimum (:mod:`jaxscale.optima`): ``"parabola"`` (its vertex, the
            default) or ``"akima"`` (the lowest point of an Akima interpolant of log loss on a
            grid of 25 points per gap between sizes; a budget whose lowest point is an end of
            the grid has no interior optimum and is left out). Akima needs one run per size in a
            budget: keep the lowest loss of repeated sizes first.
        resample: how intervals are made: ``"runs"`` resamples the runs within every budget and
            refits everything; ``"noise"`` perturbs the losses with seed noise of standard
            deviation ``noise`` (a number, or two ``(loss, σ)`` anchors, log-linear between) and
            finds each budget's optimum again (:mod:`jaxscale.seed_noise`: replicates without an
            interior optimum are discarded, and a budget with fewer than half interior is left out).
        observation: ``"point"`` (each budget's optimum) or ``"median"`` (the median of its noise
            replicates' optima); weighted: power laws weighted by 1 / spread² of each budget's
            optimum over its noise replicates. Both need ``resample="noise"``.
        n_resamples: bootstrap resamples or noise replicates (0: no intervals).
        level: level of the percentile intervals; seed: PRNG seed. A group's resamples depend
            only on the seed, its key and its runs, not on the other groups in the call.
        flops_per_token: the implied side: N · D = C / flops_per_token (6 for C = 6ND).

    Returns:
        One row per group: the ``by`` columns, ``a``, ``a_lower``, ``a_upper``, ``b``,
        ``b_lower``, ``b_upper``, ``a_source``, ``b_source``, ``n_budgets`` (used by the power
        laws), ``n_budgets_skipped`` (too few sizes, or a non-convex parabola), ``n_points``
        (runs in the budgets fitted), ``nonconvex_fraction`` (resamples in which some budget's
        parabola was non-convex or undetermined; that budget is left out of that resample's
        power laws), ``k_N``, ``k_D`` (N* = k_N C^a, D* = k_D C^b), ``interval_warning``
        (empty, or why the intervals are not to be trusted: see Warns), ``budgets`` (list of
        ``{"compute", "N_opt", "D_opt", "loss", "n_runs", "flops_min", "flops_max"}`` and, with
        resamples, ``"dropped_fraction"`` and ``"edge_fraction"``; ``"name"`` with
        ``budget=``) and ``draws`` (``[n_resamples, 4]``: each resample's a, log k_N, b,
        log k_D; NaN where fewer than 2 budgets remained), which :func:`jaxscale.frontier`
        uses for bands when it extrapolates the table to other budgets. ``table.attrs`` holds
        the options and ``"binning"``. :func:`isoflop_to_dicts` gives the JSON.

    Warns:
        EdgeOfRangeWarning: a budget's fitted optimum or lowest observed loss is at (or beyond)
            its smallest or largest size. IsoflopWarning: budgets skipped or excluded, and
            intervals driven by degenerate resamples (:func:`jaxscale.isoflop_report.interval_doubts`),
            naming the budgets behind them.

    Example:
        >>> import numpy as np, pandas as pd
        >>> import jaxscale as js
        >>> C = np.repeat([1e18, 1e19, 1e20], 7)
        >>> n_opt = 0.1 * C**0.5  # N* ∝ C^0.5 by construction
        >>> N = n_opt * np.tile([1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8], 3)
        >>> df = pd.DataFrame({"flops": C * np.exp(0.01 * np.sin(N)), "params": N,
        ...                    "loss": 2 + 0.05 * np.log(N / n_opt) ** 2})
        >>> table = js.isoflop(df, budget_rtol=0.05, n_resamples=100)
        >>> round(float(table["a"][0]), 2), table.attrs["binning"], int(table["n_budgets"][0])
        (0.5, {'method': 'rtol', 'rtol': 0.05}, 3)
    """
    by_cols = shared.check_options(by, level=level, n_resamples=n_resamples, flops_per_token=flops_per_token)
    if window is not None and not window > 0:
        raise ValueError(f"window is a distance in natural log N and must be > 0 (e.g. np.log(4)); got {window}")
    budgets.check_options(budget=budget, rtol=budget_rtol, per_decade=bins_per_decade)
    schedule = _check_methods(method, resample, noise, observation, weighted, n_resamples, budget_range)
    df = source if isinstance(source, pd.DataFrame) else read_table(source)
    if where is not None:
        df = select_rows(df, where)
    data, table, info = prepare(
        df, flops, N, loss, by_cols, window, weights, D=D, budget=budget, budget_rtol=budget_rtol,
        bins_per_decade=bins_per_decade, budget_range=budget_range, one_per_size=method == "akima",
    )  # fmt: skip
    sides = info["sides"]
    options = Options(sides, method, resample, observation == "median", weighted)
    S, G, K, P = data.x.shape
    # A resample's largest intermediate: its one-hot draws [G, K, P, P], or the Akima grid's
    # interval search [S, G, K, 25 (P - 1), P].
    per_resample = G * K * P * P if method == "parabola" else S * G * K * optima.AKIMA_PER_GAP * P * P
    chunk = shared.boot_chunk(n_resamples, per_resample)
    with jax.enable_x64(True):
        point, boot = _kernel(
            jax.tree.map(jnp.asarray, data),
            jax.random.key(seed),
            jnp.log(jnp.asarray(flops_per_token, jnp.float64)),
            jnp.asarray(schedule, jnp.float64),
            n_resamples=n_resamples,
            chunk=chunk,
            options=options,
        )
        point, boot = jax.tree.map(np.asarray, (point, boot))
    gk = (table["g"].to_numpy(), table["k"].to_numpy())
    for name in ("ok", "log_n", "log_d", "loss"):
        table[name] = point[name][gk]
    if n_resamples:
        table["dropped_fraction"], table["edge_fraction"] = boot["dropped"][gk], boot["edge"][gk]
    tail = 100 * (1 - level) / 2
    rows = []
    for g, key in enumerate(info["keys"]):
        mine = table[table["g"] == g]
        label = shared.group_label(by_cols, key)
        report.warn_budgets(label, mine, int(info["skipped"][g]), bool(np.isfinite(point["a"][g])), options)
        draws = np.full((0, 4), np.nan)
        ci = {q: (np.nan, np.nan) for q in ("a", "b")}
        if n_resamples:
            draws = np.stack([boot[q][:, g] for q in ("a", "log_kn", "b", "log_kd")], axis=1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no interval
                ci = {q: tuple(np.nanpercentile(boot[q][:, g], [tail, 100 - tail])) for q in ("a", "b")}
        row = {
            **dict(zip(by_cols, key, strict=True)),
            "a": point["a"][g], "a_lower": ci["a"][0], "a_upper": ci["a"][1],
            "b": point["b"][g], "b_lower": ci["b"][0], "b_upper": ci["b"][1],
            "a_source": "fitted" if "N" in sides else "implied",
            "b_source": "fitted" if "D" in sides else "implied",
            "n_budgets": int(mine["ok"].sum()),
            "n_budgets_skipped": int(info["skipped"][g]) + int((~mine["ok"]).sum()),
            "n_points": int(info["n_points"][g]),
            "nonconvex_fraction": float(boot["any_dropped"][g]) if n_resamples else np.nan,
            "k_N": np.exp(point["log_kn"][g]),
            "k_D": np.exp(point["log_kd"][g]),
        }  # fmt: skip
        row["interval_warning"] = report.interval_doubts(label, row, mine, level) if n_resamples else ""
        row["budgets"] = report.budget_entries(mine[mine["ok"]], flops_per_token)
        row["draws"] = draws
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs = {"by": by_cols, "n_resamples": n_resamples, "level": level, "seed": seed, "window": window}
    out.attrs |= {"binning": info["binning"], "flops_per_token": flops_per_token, "budget_range": budget_range}
    out.attrs |= {"method": method, "resample": resample, "noise": noise, "observation": observation}
    out.attrs["weighted"] = weighted
    return out


def _check_methods(method, resample, noise, observation, weighted, n_resamples, budget_range) -> tuple:
    """The method options, checked; returns the noise schedule for the kernel."""
    for name, value, allowed in (
        ("method", method, ("parabola", "akima")),
        ("resample", resample, ("runs", "noise")),
        ("observation", observation, ("point", "median")),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    if (resample == "noise") != (noise is not None):
        raise ValueError(
            "noise=... (the loss's standard deviation across seeds, e.g. 0.002) goes with resample='noise', "
            "and resample='noise' needs it"
        )
    if (observation == "median" or weighted) and (resample != "noise" or not n_resamples):
        raise ValueError(
            "observation='median' and weighted=True use the noise replicates: add resample='noise', noise=..."
        )
    if budget_range is not None:
        lo, hi = budget_range
        if not (0 < lo <= hi < np.inf):
            raise ValueError(
                f"budget_range is (smallest, largest) compute, 0 < smallest <= largest; got {budget_range}"
            )
    return seed_noise.noise_schedule(noise) if noise is not None else (0.0, 1.0, 0.0, 1.0)
