"""The runner: one validated problem family in, solved problems out.

``fit``, ``bootstrap``, ``fit_groups`` and ``validate`` are adapters: each reads its input,
builds one :class:`~jaxscale.specs.Spec` (:func:`jaxscale.specs.make_spec`) and calls one
solve here:

* :func:`solve_one`: one weight vector over one data set (a fit);
* :func:`solve_resamples`: many weight vectors over one data set (bootstrap resamples), in
  float64, or searched in float32 and finished in float64 (:mod:`jaxscale.polish`);
* :func:`jaxscale.group_runner.solve_groups`: one problem per group of runs, ragged groups
  padded to buckets, and optionally resamples of every group (its own module).

Which problems are solved again from more starts, and which result is kept, is
:mod:`jaxscale.refinement`'s; the refinement counts are the spec's (:mod:`jaxscale.specs`).
Here: which converged resamples are flagged unidentified (:func:`flag_flat`), and how
resamples are drawn (:func:`resample_weights`). Padding and chunking over devices are in
:mod:`jaxscale.batches`, the compiled kernel in :mod:`jaxscale.engine`.

Example:
    >>> import jax, numpy as np
    >>> import jaxscale as js
    >>> from jaxscale import runner, specs
    >>> runs = js.datasets.chinchilla()
    >>> spec = specs.make_spec(js.get_law("chinchilla"), n_refine=specs.N_REFINE_ONE)
    >>> with jax.enable_x64(True):
    ...     data = specs.make_data(spec, runs.log_inputs(), runs.log_loss())
    ...     solved, _, _ = runner.solve_one(spec, data, np.ones(runs.n_points))
    >>> int(solved.status[0]), int(solved.n_starts[0])
    (0, 64)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import backends, batches, identify, polish, problem
from .refinement import Solved, first_pass, replace_rows, retry, solved_from, vanished
from .solver import CONVERGED
from .specs import Spec


def flag_flat(spec: Spec, data, solved: Solved, weights_of: Callable[[np.ndarray], np.ndarray], **grouped) -> Solved:
    """``solved`` with status :data:`jaxscale.identify.UNIDENTIFIED_CODE` for each converged
    problem whose optimum lies on a flat direction of its objective (the curvature check of
    :func:`jaxscale.identify.flat_problems`); parameters whose term vanished are left out.

    Such a resample counts as failed: its parameters are one point of a valley the resample
    does not pin down. Signs and the design are not checked per resample: a resample whose
    exponent crosses 0 is still a draw of the estimator, and dropping it would narrow the
    interval.
    """
    status = np.array(solved.status)
    rows = np.flatnonzero(status == CONVERGED)
    if rows.size == 0:
        return solved
    skip = vanished(spec, solved.theta, solved.sensitivity)[:, list(spec.cfg.free)]
    flat = identify.flat_problems(spec.cfg, data, solved, rows, weights_of, skip, **grouped)
    status[rows[flat]] = identify.UNIDENTIFIED_CODE
    return solved._replace(status=status)


def resample_weights(key: jax.Array, lo: int, hi: int, n_points: int, clusters: np.ndarray | None = None) -> np.ndarray:
    """Multinomial weights ``[hi - lo, n_points]`` for resamples ``lo..hi-1`` of ``key``:
    resample ``i`` is drawn from ``fold_in(key, i)``, whatever the chunking.

    ``clusters`` (integer cluster id per point, 0..C-1) switches to a cluster bootstrap:
    C clusters drawn with replacement, each point weighted by its cluster's count.

    Always drawn with x64 on: ``randint`` draws other integers with x64 off (its int32 path),
    so a float32 bootstrap would otherwise solve other resamples than its seed names.

    Example:
        >>> import jax, numpy as np
        >>> resample_weights(jax.random.key(0), 0, 2, 5).sum(axis=1).tolist()
        [5.0, 5.0]
    """
    n_units = n_points if clusters is None else int(clusters.max()) + 1

    def one(i):
        draws = jax.random.randint(jax.random.fold_in(key, i), (n_units,), 0, n_units)
        return jnp.bincount(draws, length=n_units)

    # Drawn for a power-of-two count and trimmed: these eager ops compile once per shape, and
    # callers ask for many counts (e.g. the rows a check needs), which would each compile anew.
    size = batches.power_of_two(hi - lo)
    with jax.enable_x64(True):
        counts = np.asarray(jax.vmap(one)(jnp.arange(lo, lo + size)), dtype=np.float64)[: hi - lo]
    return counts if clusters is None else counts[:, clusters]


def solve_one(spec: Spec, data: problem.Data, w: np.ndarray) -> tuple[Solved, problem.Data, np.ndarray]:
    """One problem (weights ``w [P]`` over ``data``), padded to a bucket size so that fits of
    many run counts share a few compiled kernels; retried as :func:`retry` says. Returns the
    solution and the padded data and weights (for checks at the optimum)."""
    data, w = batches.pad_points(data, w, batches.bucket_size(len(w)))

    def solve(rows: np.ndarray, k: int, cfg: problem.Config = spec.cfg) -> Solved:
        # One problem: no more lanes than starts (cross-chunk bit-identity is moot here).
        lanes = min(spec.lanes, k)
        return solved_from(batches.solve(cfg, data, spec.candidates, w[None], n_refine=k, chunk_size=1, lanes=lanes))

    solved = retry(spec, solve(np.arange(1), spec.n_refine), solve)
    return solved, data, w


def solve_resamples(
    spec: Spec,
    data: problem.Data,
    weights: batches.WeightSource,
    n: int,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Solved:
    """``n`` problems over one data set, problem ``i`` weighted by ``weights(i, i + 1)``
    (made chunk by chunk, so memory stays bounded); retried (:func:`retry`) and flagged
    (:func:`flag_flat`). With ``spec.dtype == "float32"`` every problem is searched in single
    precision, then finished by a float64 BFGS from its float32 optimum; one whose polish
    fails is solved again from the grid in float64."""
    cfg, k = spec.cfg, spec.n_refine
    search_data, search_weights = data, weights
    if spec.dtype == "float32":
        search_data = problem.Data(*(np.asarray(a, dtype=np.float32) for a in data))
        search_weights = lambda lo, hi: weights(lo, hi).astype(np.float32)  # noqa: E731
    with jax.enable_x64(spec.dtype == "float64"):
        best = batches.solve(
            cfg,
            search_data,
            spec.candidates.astype(search_data.log_y.dtype),
            search_weights,
            n_problems=n,
            n_refine=k,
            chunk_size=spec.chunk_size,
            lanes=spec.lanes,
            devices=spec.devices,
            progress=progress,
            first_refine=first_pass(spec),  # staged within each call (engine._staged)
            at_once=backends.sizes().calls_at_once,
        )
    with jax.enable_x64(True):

        def weights_of(rows: np.ndarray) -> np.ndarray:
            return batches.rows_of(weights, rows, spec.chunk_size)

        def solve_rows(rows: np.ndarray, more: int, cfg: problem.Config = cfg) -> Solved:
            best = batches.solve(
                cfg,
                data,
                spec.candidates,
                weights_of(rows),
                n_refine=more,
                chunk_size=spec.chunk_size,
                lanes=spec.lanes,
                devices=spec.devices,
                at_once=backends.sizes().calls_at_once,
            )
            return solved_from(best)

        if spec.dtype == "float32":
            solved = solved_from(polish.polish(cfg, data, best, weights, n))
            rows = np.flatnonzero(solved.status != CONVERGED)
            if rows.size:
                solved = replace_rows(solved, rows, solve_rows(rows, k))
        else:
            solved = solved_from(best)
        solved = retry(spec, solved, solve_rows)
        return flag_flat(spec, data, solved, weights_of)
