"""``bootstrap``: thousands of resamples, each refitted from the screened start grid.

Each resample is a vector of multinomial **weights** on the runs (how often each run was
drawn), so shapes never change and one compiled kernel serves every resample. A cluster
bootstrap draws whole clusters (e.g. all runs of one model size) and gives every run the
count of its cluster. Resample ``i`` is drawn from ``fold_in(key(seed), i)``: it is the same
whatever the chunk size or device count.

Every resample screens the law's whole start grid, and the point estimate, by its own
objective. By default (``staged``) it refines its best 3 candidates first, nearly always the
point estimate and the best two grid starts, and, in the same kernel call, its best
``n_refine`` whenever those disagree, fail or lose a term (:func:`jaxscale.refinement.in_doubt`):
an honest multi-start refit wherever the resample's optimum may have moved to another basin,
at the cost of three starts where it has not. Data whose point fit ended in several basins
(fewer than half its starts at its optimum: :func:`jaxscale.refinement.may_stage`) are not
staged (benchmarks/RESULTS.md, "Refinement policy").

Example:
    >>> import jaxscale as js
    >>> boot = js.bootstrap(js.datasets.chinchilla(), law="chinchilla", n_resamples=8, seed=0)
    >>> boot.n_failed, list(boot.ci(0.9).columns)[:3]
    (0, ['estimate', 'lower', 'upper'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from . import checks, objective, refinement, runner, specs
from ._progress import progress_bar
from .fit import as_runs, fit, match_inputs
from .laws import Law, get_law
from .results import BootstrapResult
from .runs import Runs


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


@checks.renamed(n="n_resamples", loss="loss_fn")
def bootstrap(
    runs: Runs | Any,
    law: str | Law = "chinchilla",
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    offset: int = 0,
    clusters: Sequence | np.ndarray | None = None,
    loss_fn: str = "huber",
    delta: float = 1e-3,
    scale: str = "log",
    reduction: str = "sum",
    overestimate_penalty: float = 1.0,
    weights: Sequence[float] | None = None,
    starts: str | np.ndarray = "screen",
    n_refine: int = specs.N_REFINE_MANY,
    fixed: Mapping[str, float] | None = None,
    max_steps: int = 1000,
    gtol: float = 1e-10,
    chunk_size: int | None = None,
    lanes: int | None = None,
    devices: int | None = None,
    progress: bool | None = None,
    solver: str | None = None,
    dtype: str = "float64",
    staged: bool = True,
) -> BootstrapResult:
    """Bootstrap a fit: ``n_resamples`` resamples of the runs, each refitted from the start grid.

    Args:
        runs, law, loss_fn, delta, scale, reduction, overestimate_penalty, fixed, max_steps, gtol:
            as in :func:`jaxscale.fit`.
        weights: per-run weights (default 1), multiplied into every resample's counts; the point
            fit uses them as :func:`jaxscale.fit` does.
        n_resamples: number of resamples; seed: PRNG seed (same seed, same draws, any chunking).
        offset: draw resamples ``offset .. offset + n_resamples - 1`` of the seed's sequence, so that
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
        staged: with screened starts, refine the best 3 candidates (the point estimate is one)
            first and all ``n_refine`` only where they disagree, do not converge or a term
            vanishes (default; not where the point fit's starts spread over several basins,
            nor with ``dtype="float32"``);
            ``False``: every resample refines its best ``n_refine``.
        chunk_size: resamples per kernel call (bounds memory, whatever ``n_resamples``: the call's
            screening table is ``chunk_size x 4,500`` floats, 74 MB). Each call ends waiting
            for its slowest start, so larger calls are faster (benchmarks/RESULTS.md, "Chunk
            size"). Default: the backend's (:func:`jaxscale.backends.sizes`), 2,048 on a CPU.
        lanes: starts iterated side by side; keep it fixed for bit-identical results
            (default: the backend's, 512 on a CPU).
        devices: local devices to shard chunks over (default: all of them).
        progress: progress bar on stderr (default: only when stderr is a terminal).
        solver: None (default): ``"bfgs"``, and ``"bfgs_hessian"`` for staged resamples where
            the point fit shows one basin (:func:`jaxscale.refinement.with_point_estimate`);
            ``"bfgs"``, the lockstep dense BFGS with lane refill, fast for laws with few
            parameters; ``"bfgs_hessian"``, the same seeded with the exact Hessian at each start;
            ``"newton"``, exact-Hessian Newton on the same lanes (:mod:`jaxscale.newton`);
            ``"lbfgs"``, optax's L-BFGS, for laws with many parameters. A named solver is used
            for the point fit and every resample.
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
        staged=staged,
    )
    checks.check_resamples(n_resamples, none_allowed=False)
    runs = as_runs(runs)
    cluster_ids = _cluster_ids(runs, clusters)
    warm = isinstance(starts, str) and starts == "warm"
    named_solver = solver or "bfgs"  # None: "bfgs", seeded where with_point_estimate allows
    objective_options = dict(
        loss_fn=loss_fn, delta=delta, scale=scale, reduction=reduction, overestimate_penalty=overestimate_penalty
    )
    spec = specs.make_spec(
        law,
        **objective_options,
        fixed=fixed,
        max_steps=max_steps,
        gtol=gtol,
        solver=named_solver,
        starts="screen" if warm else starts,
        n_refine=n_refine,
        lanes=lanes,
        chunk_size=chunk_size,
        devices=devices,
        dtype=dtype,
        # A float32 search's refined starts agree only to float32's precision: not staged.
        staged=staged and not warm and dtype == "float64",
    )
    point = fit(
        runs,
        law,
        **objective_options,
        weights=weights,
        starts="screen" if warm else starts,
        fixed=fixed,
        max_steps=max_steps,
        gtol=gtol,
        solver=named_solver,
    )
    spec = refinement.with_point_estimate(
        spec,
        point.theta,
        point.n_at_optimum,
        point.n_starts,
        warm=warm,
        may_seed=solver is None,
        converged=point.converged,
    )
    key = jax.random.key(seed)
    with jax.enable_x64(True):
        data = specs.make_data(spec, match_inputs(runs, law), runs.log_loss())

    run_weights = None if weights is None else checks.run_weights(weights, runs.n_points, spec.cfg)

    def resample(lo: int, hi: int) -> np.ndarray:
        counts = runner.resample_weights(key, offset + lo, offset + hi, runs.n_points, cluster_ids)
        return counts if run_weights is None else counts * run_weights[None]

    bar = progress_bar("bootstrap", "resamples", enabled=progress)
    solved = runner.solve_resamples(spec, data, resample, n_resamples, progress=bar)
    # A mean is over each resample's total weight: its run count, times the runs' weights.
    total = runs.n_points if run_weights is None else float(np.sum(run_weights))
    return BootstrapResult(
        law=law,
        point=point,
        draws=np.asarray(law.to_natural(np.asarray(solved.theta, dtype=np.float64))),
        objective=objective.reported(np.asarray(solved.value, dtype=np.float64), total, spec.reduction),
        status=np.asarray(solved.status),
        seed=seed,
        cluster_count=None if cluster_ids is None else int(cluster_ids.max()) + 1,
    )
