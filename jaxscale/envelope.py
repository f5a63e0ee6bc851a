"""``envelope``: Hoffmann et al.'s Approach 1 — the lower envelope of training curves, then power laws.

Each run (one model size N) contributes a training curve: its loss at every checkpoint, at
compute C = flops_per_token · N · tokens. On a log-spaced grid of budgets, a run's loss at C is
read off its curve by linear interpolation in (log C, log loss) between the two checkpoints
around C — only inside the run's own checkpoint range, never extrapolated. The run with the
lowest loss at C attains the envelope: N_opt(C) is its size and D_opt = C / (flops_per_token ·
N_opt). Least squares in log-log over the budgets gives N_opt ∝ C^a and D_opt ∝ C^b.

**Budget grid.** ``n_budgets`` points log-spaced from the lowest to the highest compute at which
the checkpoint ranges of at least 2 runs overlap: beyond that only one run is left, so the
"envelope" would be that run's own curve and say nothing about which size is optimal. The grid
is fixed by the full data and shared by every resample; budgets that no run covers (a gap
between curves, or runs missing from a resample) are left out of that fit.

**Intervals.** A cluster bootstrap over runs: resample ``i`` draws the runs with replacement
(multinomial counts from ``fold_in(key(seed), i)``). Duplicating a run does not change the
envelope, so a resample is the set of runs it draws at least once. The interpolated losses
[groups, budgets, runs] are computed once; every resample is a masked minimum over runs and
two regressions, all in one jit-compiled, vmapped kernel. Groups (``by``) are padded to one
shape and share that call; a group's resamples depend only on the seed, its key and its runs.

Example:
    >>> import numpy as np, pandas as pd
    >>> import jaxscale as js
    >>> rows = []
    >>> for i, n in enumerate(1e7 * 2.0 ** np.arange(8)):
    ...     d = 20 * n * np.logspace(-0.6, 0.6, 13)  # checkpoints around D = 20 N, this law's optimum
    ...     loss = 2 + 400 / n**0.3 + 400 / (d / 20) ** 0.3  # α = β: N_opt ∝ C^0.5
    ...     rows.append(pd.DataFrame({"run": f"m{i}", "params": n, "tokens": d, "loss": loss}))
    >>> table = js.envelope(pd.concat(rows), n_budgets=40, n_resamples=200)
    >>> res = table["result"].iloc[0]  # one row: no by=
    >>> round(res.a, 2), round(res.a + res.b, 12), res.n_runs, res.n_budgets
    (0.5, 1.0, 8, 40)
    >>> list(res.frontier.columns)
    ['compute', 'N_opt', 'D_opt', 'loss', 'run']
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import _approaches as shared
from . import checks
from .io import python_value, read_runs, read_table
from .results import json_safe
from .runs import describe_rows


class EnvelopeWarning(UserWarning):
    """The envelope sits at the smallest/largest run over many budgets, or has < 3 distinct sizes."""


class EnvelopeResult(NamedTuple):
    """Approach 1 for one group: N_opt ∝ C^a, D_opt ∝ C^b and the envelope they were fitted to."""

    a: float
    a_ci: tuple[float, float]  # percentile interval of the cluster bootstrap (NaN without one)
    b: float
    b_ci: tuple[float, float]
    level: float
    frontier: pd.DataFrame  # one row per budget used: compute, N_opt, D_opt, loss, run
    n_runs: int
    n_budgets: int  # budgets on the frontier (those covered by some run)
    a_draws: np.ndarray  # [n_resamples] a of every resample (NaN where < 2 budgets were covered)
    n_resamples: int
    seed: int
    failed_fraction: float  # resamples whose a is NaN, left out of the intervals
    group: dict[str, Any]  # the ``by`` keys of this group ({} without ``by``)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: NaN becomes ``None``, numpy scalars become Python numbers."""
        cols = ["compute", "N_opt", "D_opt", "loss", "run"]
        return {
            "a": json_safe(self.a),
            "b": json_safe(self.b),
            "ci": {"a": [json_safe(v) for v in self.a_ci], "b": [json_safe(v) for v in self.b_ci]},
            "level": self.level,
            "n_runs": self.n_runs,
            "n_budgets": self.n_budgets,
            "frontier": [
                {**{k: json_safe(v) for k, v in zip(cols[:4], row[:4], strict=True)}, "run": _json_key(row[4])}
                for row in self.frontier[cols].itertuples(index=False)
            ],
            "bootstrap": {
                "n_resamples": self.n_resamples,
                "seed": self.seed,
                "failed_fraction": json_safe(self.failed_fraction),
            },
            "group": {k: _json_key(v) for k, v in self.group.items()},
        }

    def __str__(self) -> str:
        f, where = self.frontier, ", ".join(f"{k}={v!r}" for k, v in self.group.items())
        a_ci, b_ci = ("" if not math.isfinite(lo) else f"  [{lo:.4g}, {hi:.4g}]" for lo, hi in (self.a_ci, self.b_ci))
        boot = (
            f"{self.level:.0%} cluster bootstrap over runs, {self.n_resamples} resamples"
            if self.n_resamples
            else "no bootstrap"
        )
        failed = f", {self.failed_fraction:.1%} failed" if self.failed_fraction else ""
        return (
            f"Approach 1 (lower envelope){' for ' + where if where else ''}: {self.n_runs} runs, {self.n_budgets} "
            f"budgets C = {f['compute'].min():.3g} … {f['compute'].max():.3g}\n"
            f"  N_opt ∝ C^a: a = {self.a:.4g}{a_ci}\n  D_opt ∝ C^b: b = {self.b:.4g}{b_ci}\n"
            f"  ({boot}{failed}; {f['N_opt'].nunique()} distinct sizes on the envelope, "
            f"N_opt {f['N_opt'].min():.3g} … {f['N_opt'].max():.3g})"
        )


def _json_key(v: Any) -> Any:
    v = python_value(v)
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


class _Padded(NamedTuple):
    """Every group's runs and checkpoints, padded to ``[G, R, P]`` (checkpoints sorted by C)."""

    log_c: np.ndarray  # [G,R,P] log compute of each checkpoint; +inf on padding keeps rows sorted
    log_l: np.ndarray  # [G,R,P] log loss (0 on padding)
    n_ckpt: np.ndarray  # [G,R] checkpoints per run (0 for a padding run)
    log_n: np.ndarray  # [G,R] log N of each run
    n_runs: np.ndarray  # [G] real runs per group: resamples draw among these only
    grid: np.ndarray  # [G,K] log budgets
    group_id: np.ndarray  # [G] hash of the group's key: its PRNG stream


def _interpolate(xs: jax.Array, ys: jax.Array, n: jax.Array, q: jax.Array) -> jax.Array:
    """log loss of one run at log budget ``q``: linear in (log C, log L) between its checkpoints, else +inf."""
    last = xs[jnp.maximum(n - 1, 0)]
    inside = (n > 0) & (q >= xs[0]) & (q <= last)
    # Segment [x_j, x_j+1] holding q; the last segment also takes q == its right end.
    j = jnp.clip(jnp.sum(xs <= q) - 1, 0, jnp.maximum(n - 2, 0))
    x0, x1 = xs[j], xs[jnp.minimum(j + 1, xs.shape[0] - 1)]
    y0, y1 = ys[j], ys[jnp.minimum(j + 1, ys.shape[0] - 1)]
    t = jnp.where(inside & (n > 1), (q - x0) / jnp.where(inside & (n > 1), x1 - x0, 1.0), 0.0)
    # (1 - t) y0 + t y1 (not y0 + t (y1 - y0)) returns y0 at t = 0 and y1 at t = 1 exactly.
    return jnp.where(inside, (1 - t) * y0 + t * y1, jnp.inf)


def _loss_table(data: _Padded) -> jax.Array:
    """Interpolated log loss ``[G, K, R]`` of every run at every budget (+inf where it has no checkpoints)."""
    per_budget = jax.vmap(_interpolate, in_axes=(None, None, None, 0))  # over budgets
    per_run = jax.vmap(per_budget, in_axes=(0, 0, 0, None), out_axes=1)  # over runs → [K, R]
    return jax.vmap(per_run)(data.log_c, data.log_l, data.n_ckpt, data.grid)


def _frontier(data: _Padded, table: jax.Array, present: jax.Array, log_fpt: jax.Array) -> dict[str, jax.Array]:
    """The envelope over the runs in ``present [G,R]`` and the power laws fitted to it."""
    masked = jnp.where(present[:, None, :], table, jnp.inf)
    best = jnp.argmin(masked, axis=-1)  # [G,K]; ties go to the first run in sort order
    low = jnp.take_along_axis(masked, best[..., None], axis=-1)[..., 0]
    ok = jnp.isfinite(low)  # some present run covers the budget
    log_n = jnp.where(ok, jnp.take_along_axis(data.log_n, best, axis=-1), 0.0)
    log_d = jnp.where(ok, data.grid - log_fpt - log_n, 0.0)
    a, _ = shared.power_law(data.grid, log_n, ok)
    b, _ = shared.power_law(data.grid, log_d, ok)
    return {"best": best, "log_loss": low, "ok": ok, "a": a, "b": b}


def _resample_counts(key: jax.Array, i: jax.Array, n_runs: jax.Array, group_id: jax.Array, slots: int, grouped: bool):
    """Multinomial counts ``[G, slots]`` of resample ``i``: each group's runs drawn with replacement.

    Draw ``j`` has its own key (resample → group hash → j), so a group's draws do not depend on
    the padding or on the other groups in the call.
    """
    j = jnp.arange(slots)

    def group(n, gid):
        key_g = jax.random.fold_in(key, i)
        if grouped:  # static: without `by` the resample key is fold_in(key, i) itself
            key_g = jax.random.fold_in(key_g, gid)
        bits = jax.vmap(lambda s: jax.random.bits(jax.random.fold_in(key_g, s), (), jnp.uint32))(j)
        draws = shared.uniform_below(bits, n)
        return jnp.sum((draws[:, None] == j[None, :]) & (j[:, None] < n), axis=0)

    return jax.vmap(group)(n_runs, group_id)


@partial(jax.jit, static_argnames=("n_resamples", "chunk", "grouped"))
def _kernel(data: _Padded, key: jax.Array, log_fpt: jax.Array, *, n_resamples: int, chunk: int, grouped: bool):
    table = _loss_table(data)  # resample-independent: a resample only changes which runs compete
    slots = data.log_n.shape[-1]
    point = _frontier(data, table, jnp.arange(slots) < data.n_runs[:, None], log_fpt)
    if not n_resamples:
        return point, {}

    def one(i):
        present = _resample_counts(key, i, data.n_runs, data.group_id, slots, grouped) > 0
        out = _frontier(data, table, present, log_fpt)
        return {"a": out["a"], "b": out["b"]}

    return point, jax.tree.map(lambda v: v.T, shared.chunked_resamples(one, n_resamples, chunk))


def _budget_range(lo: np.ndarray, hi: np.ndarray, size: np.ndarray) -> tuple[float, float] | None:
    """Lowest and highest log C covered by the checkpoint ranges [lo, hi] of runs of >= 2
    different sizes ``size`` (None if no range): where one size is left (however many runs of
    it, e.g. learning rates), the envelope says nothing about which size is optimal."""
    sizes = np.unique(size)

    def cover(x):  # distinct sizes whose runs cover each x
        covering = (lo[None, :] <= x[:, None]) & (x[:, None] <= hi[None, :])
        return (covering[:, :, None] & (size[None, :, None] == sizes[None, None, :])).any(axis=1).sum(axis=1)

    # Coverage rises only at a run's first checkpoint and falls only after its last one, so the
    # ends of the region covered twice are among those points.
    starts, ends = lo[cover(lo) >= 2], hi[cover(hi) >= 2]
    return (starts.min(), ends.max()) if len(starts) and starts.min() < ends.max() else None


def _prepare(df: pd.DataFrame, cols: dict[str, str | None], by: list[str], fpt: float, n_budgets: int):
    """Validate, group, sort and pad the checkpoints and lay out each group's budget grid."""
    run, N, loss, flops, tokens = (cols[k] for k in ("run", "N", "loss", "flops", "tokens"))
    run_cols = [run] if isinstance(run, str) else list(run)
    missing = [c for c in dict.fromkeys([*run_cols, N, loss, flops or tokens, *by]) if c not in df.columns]
    if missing:
        raise ValueError(
            f"missing column(s) {missing}; available columns: {list(df.columns)}. "
            "Name yours with envelope(..., run=..., N=..., tokens=..., loss=..., flops=..., by=...)"
        )
    labels = df.index.to_numpy()
    bad = df[run_cols].isna().any(axis=1).to_numpy()
    if bad.any():
        named = f"column {run!r}" if isinstance(run, str) else f"columns {run_cols}"
        raise ValueError(
            f"{named} {'has' if isinstance(run, str) else 'have'} {int(bad.sum())} missing run ids "
            f"({describe_rows(labels, bad)}): label every checkpoint with the run it belongs to"
        )
    # Several run columns: a run is a combination of their values (a tuple key).
    run_key = df[run_cols[0]] if len(run_cols) == 1 else pd.Series(list(zip(*(df[c] for c in run_cols), strict=True)))
    inputs = {"N": N, "flops": flops} if flops else {"N": N, "tokens": tokens}
    runs = read_runs(
        df, loss=loss, check_duplicates=False, **inputs
    )  # names the column and rows of non-numeric/NaN/inf/≤0 values
    c = runs.x[:, 1] if flops else fpt * runs.x[:, 0] * runs.x[:, 1]
    gid, keys = shared.group_keys(df, by)
    pts = pd.DataFrame({"g": gid, "run": run_key.to_numpy(), "n": runs.x[:, 0], "c": c, "y": runs.y})
    # A training curve has one model size; the run's most common N is taken as the intended one.
    usual = pts.groupby(["g", "run"], sort=False)["n"].transform(lambda s: s.mode().iloc[0]).to_numpy()
    bad = pts["n"].to_numpy() != usual
    if bad.any():
        r = pts["run"][bad].iloc[0]
        odd = bad & (pts["run"] == r).to_numpy()
        i = int(np.argmax(odd))
        raise ValueError(
            f"run {python_value(r)!r} has checkpoints with a different value in column {N!r} "
            f"({describe_rows(labels, odd)}: "
            f"{pts['n'][i]:.6g}, against {usual[i]:.6g} elsewhere): N is fixed along a training "
            "curve; fix those rows or give each model size its own run id"
        )
    dup = pts.duplicated(["g", "run", "c"], keep=False).to_numpy()
    if dup.any():
        r = pts["run"][dup].iloc[0]
        same = dup & (pts["run"] == r).to_numpy()
        raise ValueError(
            f"run {python_value(r)!r} has several checkpoints at the same compute ({describe_rows(labels, same)}): "
            "drop the duplicates or average their losses first; if they are different runs (another learning "
            "rate or seed), name them apart: run=[...] takes several columns"
        )
    pts["log_c"], pts["log_n"], pts["log_l"] = np.log(pts["c"]), np.log(pts["n"]), np.log(pts["y"])
    pts["order"] = pts.groupby(["g", "run"], sort=False).ngroup()
    grouped = pts.groupby(["g", "order"], sort=False)
    per_run = grouped[["run", "n", "log_n"]].first()
    per_run["lo"], per_run["hi"], per_run["p"] = grouped["log_c"].min(), grouped["log_c"].max(), grouped.size()
    # Runs sorted by size (first appearance breaks ties), so argmin's ties go to the smaller run.
    per_run = per_run.reset_index().sort_values(["g", "log_n", "order"], ignore_index=True)
    per_run["r"] = per_run.groupby("g").cumcount()
    G, R, P = len(keys), int(per_run["r"].max()) + 1, int(per_run["p"].max())
    grid = np.zeros((G, n_budgets))
    for g, key in enumerate(keys):
        mine = per_run[per_run["g"] == g]
        where = f" in {shared.group_label(by, key)}" if by else ""
        if len(mine) < 2:
            raise ValueError(
                f"only 1 run{where} (column {run!r}: {python_value(mine['run'].iloc[0])!r}): "
                "the envelope compares training curves and needs at least 2 runs"
            )
        span = _budget_range(mine["lo"].to_numpy(), mine["hi"].to_numpy(), mine["n"].to_numpy())
        if span is None:
            raise ValueError(
                f"the checkpoints of no 2 runs of different sizes{where} overlap over a range of compute: the "
                f"envelope needs curves that share budgets (check columns {N!r} and {flops or tokens!r})"
            )
        grid[g] = np.linspace(*span, n_budgets)  # both ends exact: they are checkpoints
    pts = pts.merge(per_run[["g", "order", "r"]], on=["g", "order"]).sort_values(["g", "r", "log_c"])
    at = (pts["g"].to_numpy(), pts["r"].to_numpy(), pts.groupby(["g", "r"]).cumcount().to_numpy())
    ran = (per_run["g"].to_numpy(), per_run["r"].to_numpy())
    log_c, log_l = np.full((G, R, P), np.inf), np.zeros((G, R, P))
    log_c[at], log_l[at] = pts["log_c"], pts["log_l"]
    n_ckpt, log_n = np.zeros((G, R), np.int64), np.zeros((G, R))
    n_ckpt[ran], log_n[ran] = per_run["p"], per_run["log_n"]
    n_runs = per_run.groupby("g").size().to_numpy()
    group_id = shared.group_ids(keys)
    return _Padded(log_c, log_l, n_ckpt, log_n, n_runs, grid, group_id), per_run, keys


def _warn(label: str, front: pd.DataFrame, sizes: np.ndarray) -> None:
    """Warn about an envelope that leaves the sampled sizes, or has too few sizes to fix a slope."""
    counts = front["N_opt"].value_counts()
    inner = counts.drop([sizes.min(), sizes.max()], errors="ignore")
    # "Many" budgets: at least 3 and more than the median interior size holds. An edge size that
    # holds more likely stands in for sizes outside the sampled range, which flattens N_opt(C).
    typical = float(inner.median()) if len(inner) else 0.0
    edges = []
    for name, size in (("smallest", sizes.min()), ("largest", sizes.max())):
        k = int(counts.get(size, 0))
        if k >= 3 and k > typical:
            cs = front["compute"][front["N_opt"] == size]
            edges.append(
                f"the {name} run (N={size:.3g}) at {k} of {len(front)} budgets (C={cs.min():.3g}–{cs.max():.3g})"
            )
    if edges:
        msg = (
            f"envelope: {label}: the envelope is attained by {' and by '.join(edges)}, more than the median "
            f"interior size ({typical:g} budgets): the optimal size there likely lies outside the sampled sizes, "
            "which biases a towards 0; add smaller/larger models or trim the curves' ends"
        )
        warnings.warn(EnvelopeWarning(msg), stacklevel=3)
    if len(counts) < 3:
        shown = ", ".join(f"{v:.3g}" for v in sorted(counts.index))
        msg = f"envelope: {label}: only {len(counts)} size(s) attain the envelope ({shown}): a is ill-determined"
        warnings.warn(EnvelopeWarning(msg), stacklevel=3)


@checks.renamed(n_boot="n_resamples")
def envelope(
    curves: pd.DataFrame | str | os.PathLike,
    *,
    run: str | Sequence[str] = "run",
    N: str = "params",
    tokens: str = "tokens",
    loss: str = "loss",
    flops: str | None = None,
    flops_per_token: float = 6.0,
    n_budgets: int = 50,
    by: str | Sequence[str] | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Approach 1 of Hoffmann et al. (2022): the lower envelope of loss vs compute, then N_opt ∝ C^a.

    Args:
        curves: a DataFrame or a CSV/Parquet/JSON/JSONL file, one row per checkpoint.
        run, N, tokens, loss: the columns holding the run id (or a list of columns whose values
            together identify a run, e.g. ``["model", "lr"]``; the frontier's ``run`` is then a
            tuple), its parameter count (fixed per run), the tokens seen at the checkpoint and
            the loss there.
        flops: a column holding each checkpoint's compute; by default C = flops_per_token · N ·
            tokens (``tokens`` is then not needed). flops_per_token also gives D_opt = C /
            (flops_per_token · N_opt).
        n_budgets: points of the log-spaced budget grid (see the module docstring for its range).
        by: a column or list of columns: one analysis per group, all groups padded into one call.
        n_resamples: cluster-bootstrap resamples over runs (0: no intervals); level: of the percentile
            intervals; seed: PRNG seed.

    Returns:
        A DataFrame, one row per group (one row without ``by``), as :func:`jaxscale.isoflop`
        gives: the ``by`` columns, ``a``, ``a_lower``, ``a_upper``, ``b``, ``b_lower``,
        ``b_upper``, ``n_runs``, ``n_budgets`` and ``result`` (the group's
        :class:`EnvelopeResult`, with its frontier and draws). ``attrs`` holds ``by``,
        ``n_resamples``, ``level`` and ``seed``.

    Raises:
        ValueError: naming the column and rows of missing columns or run ids, NaN/inf/non-positive
            values, a run whose N changes between checkpoints, duplicate checkpoints of a run, a
            group with fewer than 2 runs or with no compute range covered by 2 runs.

    Warns:
        EnvelopeWarning: the smallest or largest run attains the envelope at many budgets, or
            fewer than 3 distinct sizes do.
    """
    by_cols = shared.check_options(by, level=level, n_resamples=n_resamples, flops_per_token=flops_per_token)
    if n_budgets < 2:
        raise ValueError(f"n_budgets must be at least 2 to fit a slope; got {n_budgets}")
    df = curves if isinstance(curves, pd.DataFrame) else read_table(curves)
    cols = {"run": run, "N": N, "loss": loss, "flops": flops, "tokens": tokens}
    data, per_run, keys = _prepare(df, cols, by_cols, flops_per_token, n_budgets)
    chunk = shared.boot_chunk(n_resamples, data.grid.size * data.log_n.shape[1])  # a resample's masked table [G, K, R]
    with jax.enable_x64(True):
        args = (jax.tree.map(jnp.asarray, data), jax.random.key(seed), jnp.log(jnp.float64(flops_per_token)))
        out = _kernel(*args, n_resamples=n_resamples, chunk=chunk, grouped=bool(by_cols))
        point, boot = jax.tree.map(np.asarray, out)
    tails = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    results = []
    for g, key in enumerate(keys):
        mine = per_run[per_run["g"] == g].set_index("r")
        ok = point["ok"][g]
        best, compute = point["best"][g][ok], np.exp(data.grid[g][ok])
        n_opt = mine["n"][best].to_numpy()
        front = pd.DataFrame({"compute": compute, "N_opt": n_opt, "D_opt": compute / (flops_per_token * n_opt)})
        front["loss"], front["run"] = np.exp(point["log_loss"][g][ok]), mine["run"][best].to_numpy()
        _warn(shared.group_label(by_cols, key), front, mine["n"].to_numpy())
        draws = {q: boot[q][g] if n_resamples else np.zeros(0) for q in "ab"}
        ci = {q: (np.nan, np.nan) for q in "ab"}
        if n_resamples and not np.isnan(draws["a"]).all():  # all-NaN draws leave the interval NaN
            ci = {q: tuple(float(v) for v in np.nanpercentile(d, tails)) for q, d in draws.items()}
        res = EnvelopeResult(
            a=float(point["a"][g]),
            a_ci=ci["a"],
            b=float(point["b"][g]),
            b_ci=ci["b"],
            level=level,
            frontier=front,
            n_runs=int(data.n_runs[g]),
            n_budgets=len(front),
            a_draws=draws["a"],
            n_resamples=n_resamples,
            seed=seed,
            failed_fraction=float(np.isnan(draws["a"]).mean()) if n_resamples else 0.0,
            group=dict(zip(by_cols, key, strict=True)),
        )
        results.append(res)
    bounds = lambda r: dict(zip(["a_lower", "a_upper", "b_lower", "b_upper"], (*r.a_ci, *r.b_ci), strict=True))  # noqa: E731
    rows = [{**r.group, "a": r.a, "b": r.b, **bounds(r), "n_runs": r.n_runs, "n_budgets": r.n_budgets} for r in results]
    table = pd.DataFrame(rows).assign(result=results)
    table.attrs = {"by": by_cols, "n_resamples": n_resamples, "level": level, "seed": seed}
    return table
