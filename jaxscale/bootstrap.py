"""``bootstrap``: thousands of resamples, each refitted from the screened start grid.

Each resample is a vector of multinomial **weights** on the runs (how often each run was
drawn), so shapes never change and one compiled kernel serves every resample. A cluster
bootstrap draws whole clusters (e.g. all runs of one model size) and gives every run the
count of its cluster. Resample ``i`` is drawn from ``fold_in(key(seed), i)``: it is the same
whatever the chunk size or device count.

Every resample screens the law's whole start grid by its own objective and refines the best
``n_refine`` starts — an honest multi-start refit, not a warm start from the point estimate
(which would understate the spread whenever a resample's optimum moves to another basin).

Example:
    >>> import jaxscale as js
    >>> boot = js.bootstrap(js.datasets.chinchilla(), law="chinchilla", n=8, seed=0)
    >>> boot.n_failed, list(boot.ci(0.9).columns)[:3]
    (0, ['estimate', 'lower', 'upper'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import batches, checks, identify, problem
from ._progress import progress_bar
from .fit import (
    INERT_TOL,
    RETRY_FACTOR,
    SAME_OPTIMUM_RTOL,
    VANISHED_LOG,
    FitResult,
    as_runs,
    candidate_starts,
    fit,
    prepare,
)
from .frontier import chinchilla_allocation
from .laws import Law, get_law
from .polish import polish
from .runs import Runs
from .solver import CONVERGED

# Starts refined per resample after screening the whole grid. On the Epoch points the best 4
# screened starts already reach the full grid's optimum (benchmarks/RESULTS.md, "Refined
# starts"), so 8 keeps a 2x margin; benchmarks/ re-checks 20 resamples against the full grid.
DEFAULT_N_REFINE = 8
WARM_N_REFINE = 2
# An interval narrower than this, relative to its bounds, has zero width: every used resample
# gave the same value (Epoch's 95% intervals are 2-10% of their bounds wide).
ZERO_WIDTH_RTOL = 1e-9


def resample_weights(key: jax.Array, lo: int, hi: int, n_points: int, clusters: np.ndarray | None = None) -> np.ndarray:
    """Multinomial weights ``[hi - lo, n_points]`` for resamples ``lo..hi-1`` of ``key``.

    ``clusters`` (integer cluster id per point, 0..C-1) switches to a cluster bootstrap:
    C clusters drawn with replacement, each point weighted by its cluster's count.

    Always drawn with x64 on: ``randint`` draws other integers with x64 off (its int32 path),
    so a float32 bootstrap would otherwise solve other resamples than its seed names.
    """
    n_units = n_points if clusters is None else int(clusters.max()) + 1

    def one(i):
        draws = jax.random.randint(jax.random.fold_in(key, i), (n_units,), 0, n_units)
        return jnp.bincount(draws, length=n_units)

    with jax.enable_x64(True):
        counts = np.asarray(jax.vmap(one)(jnp.arange(lo, hi)), dtype=np.float64)
    return counts if clusters is None else counts[:, clusters]


def refit_vanished(best: problem.Best, free, k: int, n_candidates: int, solve_rows) -> problem.Best:
    """Re-solve, from ``RETRY_FACTOR * k`` screened starts, each problem whose best start
    "converged" where a term of the law vanished (see :func:`jaxscale.fit`'s retry).

    ``solve_rows(rows, n_refine) -> Best`` solves those problems again. A retry replaces the
    first result unless the first is strictly better; ``start_values`` stay the first pass's.
    On 1,000 resamples of a 30-run synthetic group, 170 stopped on such a plateau (A and alpha
    inert, alpha still at its grid start) and would have counted as converged draws.
    """
    if k >= n_candidates:
        return best
    inert = np.asarray(best.sensitivity)[:, list(free)] < INERT_TOL
    rows = np.flatnonzero((np.asarray(best.status) == CONVERGED) & inert.any(axis=1))
    if rows.size == 0:
        return best
    again = solve_rows(rows, min(n_candidates, RETRY_FACTOR * k))
    take = np.asarray(again.value) <= np.asarray(best.value)[rows] * (1 + SAME_OPTIMUM_RTOL)
    fields = ("theta", "value", "status", "steps", "grad_norm", "sensitivity")
    return batches.with_rows(best, rows[take], jax.tree.map(lambda a: np.asarray(a)[take], again), fields)


def mark_flat(cfg: problem.Config, data, best: problem.Best, weights_of, **grouped) -> problem.Best:
    """``best`` with the status ``"unidentified"`` for each converged problem whose optimum lies on a
    flat direction of its objective (:func:`jaxscale.identify.flat_problems`); terms that vanished
    (as in ``FitResult.at_bound``) are left out of the check, as in :func:`jaxscale.fit`.

    Such a resample counts as failed (``BootstrapResult.ok`` is False): its reported parameters
    are one point of a valley the resample does not pin down, so its draw is not a draw of an
    estimate. Signs and the design are not checked per resample: a resample whose exponent
    crosses 0 is still a draw of the estimator, and dropping it would narrow the interval.
    On 512 resamples of Epoch's 240 points none was flagged (smallest scaled Hessian
    eigenvalue 2.7e-4, against the threshold 1e-6).
    """
    status = np.array(best.status)
    rows = np.flatnonzero(status == CONVERGED)
    if rows.size == 0:
        return best
    free = list(cfg.free)
    theta = np.asarray(best.theta, dtype=np.float64)
    vanished = np.asarray(cfg.law.log_scale) & (theta < VANISHED_LOG)
    skip = (vanished | (np.asarray(best.sensitivity) < INERT_TOL))[:, free]
    flat = identify.flat_problems(cfg, data, best, rows, weights_of, skip, **grouped)
    status[rows[flat]] = identify.UNIDENTIFIED_CODE
    return best._replace(status=status)


class BootstrapResult(NamedTuple):
    """Draws of every natural parameter, one per resample, with each resample's status."""

    law: Law
    point: FitResult  # the fit to all runs
    draws: np.ndarray  # [n, p] natural parameters, in law.natural order
    objective: np.ndarray  # [n]
    status: np.ndarray  # [n] status codes (0 = converged; identify.RESAMPLE_STATUS_NAMES)
    seed: int
    cluster_count: int | None  # number of clusters for a cluster bootstrap, else None

    @staticmethod
    def merge(parts: Sequence[BootstrapResult]) -> BootstrapResult:
        """Concatenate bootstraps of the same runs, seed and law drawn with consecutive ``offset``s."""
        parts = list(parts)
        if not parts:
            raise ValueError("merge needs at least one BootstrapResult")
        first = parts[0]
        for p in parts[1:]:
            if p.law is not first.law or p.seed != first.seed or p.point.params != first.point.params:
                raise ValueError("merge only bootstraps of the same runs, law and seed (drawn with different offsets)")
        return first._replace(
            draws=np.concatenate([p.draws for p in parts]),
            objective=np.concatenate([p.objective for p in parts]),
            status=np.concatenate([p.status for p in parts]),
        )

    @property
    def n(self) -> int:
        return int(self.status.shape[0])

    @property
    def ok(self) -> np.ndarray:
        """Resamples whose best start converged to finite parameters the resample determines (the only
        ones used in intervals; an ``"unidentified"`` resample counts as failed: see :func:`mark_flat`)."""
        return (self.status == CONVERGED) & np.all(np.isfinite(self.draws), axis=1)

    @property
    def n_failed(self) -> int:
        return int(np.sum(~self.ok))

    @property
    def n_unidentified(self) -> int:
        """Failed resamples that converged where their objective is flat (see :func:`mark_flat`)."""
        return int(np.sum(self.status == identify.UNIDENTIFIED_CODE))

    @property
    def failed_fraction(self) -> float:
        return self.n_failed / self.n

    @property
    def samples(self) -> dict[str, np.ndarray]:
        """All draws by natural parameter name (failed resamples included; see ``ok``)."""
        return {name: self.draws[:, i] for i, name in enumerate(self.law.natural)}

    def derived_samples(
        self, *, compute: Sequence[float] = (), at: Mapping[str, Sequence[float]] | None = None
    ) -> dict[str, np.ndarray]:
        """Derived quantities per draw: the law's own (a, b for Chinchilla), the optimal
        tokens per parameter at each ``compute`` budget (Chinchilla, C = 6ND), and the
        predicted loss at each point of ``at`` (e.g. ``{"N": [7e10], "D": [1.4e12]}``)."""
        return _derived(self.law, self.samples, compute=compute, at=at)

    def samples_frame(self, *, compute: Sequence[float] = (), at: Mapping[str, Sequence[float]] | None = None):
        """Draws as a DataFrame: one row per resample, its status and every quantity."""
        import pandas as pd

        frame = pd.DataFrame({**self.samples, **self.derived_samples(compute=compute, at=at)})
        frame.insert(0, "status", [identify.RESAMPLE_STATUS_NAMES[int(s)] for s in self.status])
        frame.insert(1, "objective", self.objective)
        return frame

    def ci(
        self, level: float = 0.95, *, compute: Sequence[float] = (), at: Mapping[str, Sequence[float]] | None = None
    ):
        """Percentile intervals at ``level`` (DataFrame indexed by quantity).

        Columns: ``estimate`` (the fit to all runs), ``lower``, ``upper``, ``se`` (standard
        deviation of the draws), ``n_used`` (converged resamples), ``n_failed`` and ``warning``:
        empty, or why the interval is not to be trusted as it stands ("zero width": every used
        resample gave the same value; "estimate outside interval": the fit to all runs lies
        outside its own interval; "estimate unidentified": the runs do not determine it).
        """
        import pandas as pd

        checks.arguments(level=level)
        if not self.ok.any():
            raise ValueError(self._no_interval())
        point = {**self.point.params, **_derived(self.law, self.point.params, compute=compute, at=at)}
        draws = {**self.samples, **self.derived_samples(compute=compute, at=at)}
        tail = 100 * (1 - level) / 2
        rows = {}
        for name, values in draws.items():
            used = np.asarray(values)[self.ok]
            lo, hi = np.percentile(used, [tail, 100 - tail])
            estimate = float(np.asarray(point[name]))
            rows[name] = {
                "estimate": estimate,
                "lower": lo,
                "upper": hi,
                "se": _spread(used),
                "n_used": int(used.size),
                "n_failed": self.n_failed,
                "warning": self._warning(name, estimate, lo, hi),
            }
        return pd.DataFrame.from_dict(rows, orient="index")

    def _no_interval(self) -> str:
        why = (
            f" ({self.n_unidentified} stopped where the resample does not determine the parameters)"
            if self.n_unidentified
            else ""
        )
        return f"none of the {self.n} resamples converged{why}: no interval can be computed"

    def _warning(self, name: str, estimate: float, lo: float, hi: float) -> str:
        """What is wrong with the interval ``[lo, hi]`` of quantity ``name`` (see :meth:`ci`)."""
        notes = []
        if name in self.point.unidentified:
            notes.append("estimate unidentified")
        # A held-fixed parameter (and, with one fixed, a derived quantity) may have zero width.
        may_be_constant = name in self.point.fixed or (name not in self.law.natural and self.point.fixed)
        if not may_be_constant and not hi - lo > ZERO_WIDTH_RTOL * max(abs(lo), abs(hi)):
            notes.append("zero width")
        if estimate < lo or estimate > hi:
            notes.append("estimate outside interval")
        return "; ".join(notes)

    def __str__(self) -> str:
        kind = f"cluster bootstrap ({self.cluster_count} clusters)" if self.cluster_count else "bootstrap"
        if not self.ok.any():
            return f"{self.law.name} {kind}: {self.n} resamples, seed {self.seed}; {self._no_interval()}"
        ci = self.ci(0.95)
        table = ci[["estimate", "lower", "upper", "se"] + (["warning"] if (ci["warning"] != "").any() else [])]
        failed = f"{self.n_failed} of {self.n} resamples failed ({100 * self.failed_fraction:.2f}%"
        if self.n_unidentified:
            failed += f"; {self.n_unidentified} converged where the resample does not determine the parameters"
        head = f"{self.law.name} {kind}: {self.n} resamples, seed {self.seed}; {failed}), excluded"
        if self.point.status == identify.UNIDENTIFIED:
            head += (
                f"\nWARNING: the fit to all runs is unidentified ({self.point.unidentified_reason}): "
                "its 'estimate' of those parameters is one point of many"
            )
        elif not self.point.converged:
            head += (
                f"\nWARNING: the fit to all runs did not converge ({self.point.status}): 'estimate' is not an optimum"
            )
        return f"{head}\n{table.to_string()}"


def _spread(values: np.ndarray) -> float:
    """Standard deviation of the draws; inf (not an overflow error) when a parameter is not
    identified and some draws run off to ~1e300 along a flat direction."""
    if values.size < 2:
        return float("nan")
    with np.errstate(over="ignore", invalid="ignore"):
        sd = float(np.std(values, ddof=1))
    return sd if np.isfinite(sd) else float("inf")


def _derived(law: Law, params: Mapping, *, compute: Sequence[float], at: Mapping | None) -> dict[str, np.ndarray]:
    compute = checks.check_budgets("compute", compute, required=False)
    at = checks.check_inputs("at", law, at, law.inputs) if at else at
    out = {k: np.asarray(v) for k, v in law.derive(params).items()}
    if len(compute):
        if law.name != "chinchilla":
            raise ValueError("tokens per parameter at a budget needs the chinchilla law (closed form under C = 6ND)")
        for c in compute:
            n_opt, d_opt = chinchilla_allocation(params, c)
            out[f"tokens_per_param@{c:.3g}"] = d_opt / n_opt
    if at:
        columns = [np.asarray(at[name], dtype=np.float64) for name in law.inputs]
        theta = law.to_fitted(np.stack([np.asarray(params[n], dtype=np.float64) for n in law.natural], axis=-1))
        log_x = np.log(np.stack(columns, axis=-1))  # [Q, k]
        with jax.enable_x64(True):
            pred = jax.vmap(lambda th: law.predict(th, log_x))(jnp.atleast_2d(theta))  # [n, Q]
        pred = np.asarray(pred).reshape(np.shape(theta)[:-1] + (log_x.shape[0],))
        for q, point in enumerate(log_x):
            label = ",".join(f"{name}={v:.3g}" for name, v in zip(law.inputs, np.exp(point), strict=True))
            out[f"loss@{label}"] = pred[..., q]
    return out


def _cluster_ids(runs: Runs, clusters: Sequence | np.ndarray | None) -> np.ndarray | None:
    if clusters is None:
        return None
    labels = np.asarray(clusters)
    if labels.shape != (runs.n_points,):
        raise ValueError(f"clusters must give one label per run ({runs.n_points}); got shape {labels.shape}")
    _, ids = np.unique(labels, return_inverse=True)
    if ids.max() < 1:
        raise ValueError("a cluster bootstrap needs at least 2 clusters; all runs share one label")
    return ids.astype(np.int64)


def bootstrap(
    runs: Runs | Any,
    law: str | Law = "chinchilla",
    *,
    n: int = 1000,
    seed: int = 0,
    offset: int = 0,
    clusters: Sequence | np.ndarray | None = None,
    loss: str = "huber",
    delta: float = 1e-3,
    starts: str | np.ndarray = "screen",
    n_refine: int = DEFAULT_N_REFINE,
    fixed: Mapping[str, float] | None = None,
    max_steps: int = 1000,
    gtol: float = 1e-10,
    chunk_size: int = 2048,
    lanes: int = 512,
    devices: int | None = None,
    progress: bool | None = None,
    solver: str = "bfgs",
    dtype: str = "float64",
) -> BootstrapResult:
    """Bootstrap a fit: ``n`` resamples of the runs, each refitted from the start grid.

    Args:
        runs, law, loss, delta, fixed, max_steps, gtol: as in :func:`jaxscale.fit`.
        n: number of resamples; seed: PRNG seed (same seed, same draws, any chunking).
        offset: draw resamples ``offset .. offset + n - 1`` of the seed's sequence, so that
            several processes (e.g. one per host) can each draw a disjoint share; merge the
            parts with :meth:`BootstrapResult.merge` to get exactly the one-process result.
        clusters: optional label per run for a cluster bootstrap (e.g. the model size).
        starts: ``"screen"`` (default): every resample screens the full start grid by its own
            objective and refines its best ``n_refine``; ``"grid"`` refines all of them;
            ``"warm"`` (faster: 2 starts, not ``n_refine``) refines only the point estimate
            and the best grid start. The default is the screened grid because a warm start can
            only find the basin the full-data fit found: a resample whose optimum moved
            elsewhere would be reported at a local optimum, narrowing the interval exactly
            where the data are least informative.
        chunk_size: resamples per kernel call (bounds memory, whatever ``n``: the call's
            screening table is ``chunk_size x 4,500`` floats, 74 MB). Each call ends waiting
            for its slowest start, so larger calls are faster (benchmarks/RESULTS.md, "Chunk
            size").
        lanes: starts iterated side by side; keep it fixed for bit-identical results.
        devices: local devices to shard chunks over (default: all of them).
        progress: progress bar on stderr (default: only when stderr is a terminal).
        solver: ``"bfgs"`` (default), the lockstep dense BFGS with lane refill, fast for laws
            with few parameters; ``"lbfgs"``, optax's L-BFGS, for laws with many parameters
            (used for the point fit and every resample).
        dtype: ``"float64"`` (default), or ``"float32"`` to search in single precision:
            every resample's screening and refinements run in float32 (faster: see
            benchmarks/RESULTS.md, "float32"), and each float32 optimum is then finished by a
            float64 BFGS (:mod:`jaxscale.polish`), since float32 alone stops short of the
            optimum along this objective's flat directions. On 512 Epoch resamples the draws
            were within 6.5e-5 (relative) of float64's and the 95% bounds moved by < 3e-7
            of their width (benchmarks/RESULTS.md); a resample whose float32
            optimum cannot be polished is solved again from the grid in float64.

    Returns:
        :class:`BootstrapResult`; ``ci(level)`` gives percentile intervals over the
        resamples that converged, and says how many failed.
    """
    law = get_law(law)
    checks.arguments(
        law,
        n=n,
        seed=seed,
        offset=offset,
        delta=delta,
        n_refine=n_refine,
        fixed=fixed,
        max_steps=max_steps,
        gtol=gtol,
        chunk_size=chunk_size,
        lanes=lanes,
        devices=devices,
        progress=progress,
    )
    runs = as_runs(runs)
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32'; got {dtype!r}")
    cluster_ids = _cluster_ids(runs, clusters)
    point_starts = "screen" if isinstance(starts, str) and starts == "warm" else starts
    point = fit(
        runs,
        law,
        loss=loss,
        delta=delta,
        starts=point_starts,
        fixed=fixed,
        max_steps=max_steps,
        gtol=gtol,
        solver=solver,
    )
    n_devices = len(jax.local_devices()) if devices is None else int(devices)
    with jax.enable_x64(True):
        cfg, data = prepare(
            runs, law, loss=loss, delta=delta, fixed=fixed, max_steps=max_steps, gtol=gtol, solver=solver
        )
        if isinstance(starts, str) and starts == "warm":
            # The point estimate and the grid compete in each resample's screening; the
            # point estimate nearly always ranks first, the best grid start second.
            grid, _ = candidate_starts(law, cfg, "screen", n_refine)
            candidates, k = np.vstack([point.theta[None], grid]), WARM_N_REFINE
        else:
            candidates, k = candidate_starts(law, cfg, starts, n_refine)
        key = jax.random.key(seed)
        first = int(offset)
        weights = lambda lo, hi: resample_weights(key, first + lo, first + hi, runs.n_points, cluster_ids)  # noqa: E731
    data64, weights64 = data, weights
    if dtype == "float32":
        # The search in single precision (data, starts and weights cast, x64 off), finished
        # in float64 below: see jaxscale/polish.py and benchmarks/RESULTS.md.
        data = problem.Data(*(np.asarray(a, dtype=np.float32) for a in data))
        weights = lambda lo, hi: weights64(lo, hi).astype(np.float32)  # noqa: E731
    with jax.enable_x64(dtype == "float64"):
        best = batches.solve(
            cfg,
            data,
            candidates.astype(data.log_y.dtype),
            weights,
            n_problems=n,
            n_refine=k,
            chunk_size=chunk_size,
            lanes=lanes,
            devices=n_devices,
            progress=progress_bar("bootstrap", "resamples", enabled=progress),
        )
    with jax.enable_x64(True):

        def solve_rows(rows: np.ndarray, more: int) -> problem.Best:
            w = batches.rows_of(weights64, rows, chunk_size)
            return batches.solve(
                cfg, data64, candidates, w, n_refine=more, chunk_size=chunk_size, lanes=lanes, devices=n_devices
            )

        if dtype == "float32":
            best = polish(cfg, data64, best, weights64, n)
            # A polish that fails (a float32 optimum that was not finite, say) is redone
            # from the grid in float64, as if dtype were float64.
            rows = np.flatnonzero(np.asarray(best.status) != CONVERGED)
            if rows.size:
                best = batches.with_rows(best, rows, solve_rows(rows, k))
        best = refit_vanished(best, cfg.free, k, len(candidates), solve_rows)
        best = mark_flat(cfg, data64, best, lambda rows: batches.rows_of(weights64, rows, chunk_size))
    return BootstrapResult(
        law=law,
        point=point,
        draws=np.asarray(law.to_natural(np.asarray(best.theta, dtype=np.float64))),
        objective=np.asarray(best.value, dtype=np.float64),
        status=np.asarray(best.status),
        seed=seed,
        cluster_count=None if cluster_ids is None else int(cluster_ids.max()) + 1,
    )
