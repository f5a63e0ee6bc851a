"""The problem spec: one validated family of problems, as every job hands it to the runner.

:func:`make_spec` checks the options (loss_fn, solver, dtype, held-fixed values, starts) and
fixes what the runner needs to solve: the kernel's static configuration, the candidate starts
and how many of them each problem refines. :func:`make_data` builds the kernel's arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import numpy as np

from . import backends, objective, problem
from .laws import Law

# Starts refined after screening the grid: a single fit affords many; each of many problems
# (resamples, groups) a few, which already reach the full grid's optimum on the data measured
# (benchmarks/RESULTS.md, "Refined starts"); a warm start refines the point estimate and the
# best grid start.
N_REFINE_ONE = 64
N_REFINE_MANY = 8
N_REFINE_WARM = 2
# Many problems refine this many of their screened starts first, and all ``n_refine`` only
# where that first pass leaves doubt (refinement.in_doubt, decided within the kernel call: engine._staged).
N_REFINE_FIRST = 3
DTYPES = ("float64", "float32")
STARTS = ("screen", "grid")


class Spec(NamedTuple):
    """One validated problem family: the kernel's configuration and how to run it."""

    cfg: problem.Config  # law, loss_fn, delta, free parameters, budget, tolerance, method
    theta_fixed: np.ndarray  # [p] held-fixed values in fitted coordinates (others 0)
    fixed: tuple[str, ...]  # names of the held-fixed natural parameters
    candidates: np.ndarray  # [S, p] candidate starts, fitted coordinates
    n_refine: int  # starts refined per problem (all S when the starts are not screened)
    first_refine: int  # starts refined in a first pass (n_refine: no first pass; engine._staged)
    lanes: int
    chunk_size: int
    devices: int
    dtype: str  # "float64", or "float32" for a float32 search finished in float64
    retry: bool  # solve again the problems whose term vanished (see retry)
    retry_failed: bool  # ... and those that did not converge
    reduction: str = "sum"  # the objective reported: the minimised sum, or its mean (jaxscale.objective)


def make_spec(
    law: Law,
    *,
    loss_fn: str = "huber",
    delta: float = 1e-3,
    scale: str = "log",
    reduction: str = "sum",
    overestimate_penalty: float = 1.0,
    fixed: Mapping[str, float] | None = None,
    max_steps: int = 1000,
    gtol: float = 1e-10,
    solver: str = "bfgs",
    starts: str | np.ndarray | Sequence[Mapping[str, float]] = "screen",
    n_refine: int = N_REFINE_MANY,
    lanes: int | None = None,
    chunk_size: int | None = None,
    devices: int | None = None,
    dtype: str = "float64",
    retry: bool = True,
    retry_failed: bool = False,
    staged: bool = False,
) -> Spec:
    """Check the options and build a :class:`Spec` (``devices=None``: every local device;
    ``lanes``, ``chunk_size`` ``None``: the backend's, :func:`jaxscale.backends.sizes`).

    ``staged``: screened problems refine :data:`N_REFINE_FIRST` starts first and all
    ``n_refine`` only where the first pass leaves doubt (:func:`jaxscale.refinement.in_doubt`),
    within the same kernel call.
    """
    objective.check(loss_fn=loss_fn, delta=delta, scale=scale, reduction=reduction, penalty=overestimate_penalty)
    if solver not in problem.METHODS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {problem.METHODS}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'float64' or 'float32'; got {dtype!r}")
    fixed = dict(fixed or {})
    free = free_indices(law, fixed)
    theta_fixed = np.zeros(law.n_params)
    if fixed:
        fixed_idx = [law.natural_index(n) for n in fixed]
        full = law.from_natural({**dict.fromkeys(law.natural, 1.0), **fixed})
        theta_fixed[fixed_idx] = full[fixed_idx]
    cfg = problem.Config(
        law, loss_fn, float(delta), free, int(max_steps), float(gtol), solver, scale, float(overestimate_penalty)
    )
    candidates = _candidates(law, starts, free)
    screened = isinstance(starts, str) and starts == "screen"
    n_devices = len(jax.local_devices()) if devices is None else int(devices)
    n_refine = int(n_refine) if screened else len(candidates)
    return Spec(
        cfg=cfg,
        theta_fixed=theta_fixed,
        fixed=tuple(fixed),
        candidates=candidates,
        n_refine=n_refine,
        first_refine=min(N_REFINE_FIRST, n_refine) if staged and screened else n_refine,
        lanes=backends.or_default("lanes", lanes),
        chunk_size=backends.or_default("chunk_size", chunk_size),
        devices=n_devices,
        dtype=dtype,
        retry=bool(retry),
        retry_failed=bool(retry_failed),
        reduction=reduction,
    )


def free_indices(law: Law, fixed: Mapping[str, object] | None) -> tuple[int, ...]:
    """Indices of the parameters that are fitted (all but the held-fixed ones)."""
    fixed_idx = {law.natural_index(name) for name in (fixed or {})}
    free = tuple(i for i in range(law.n_params) if i not in fixed_idx)
    if not free:
        raise ValueError("every parameter is fixed: nothing to fit")
    return free


def grid_starts(law: Law, free: tuple[int, ...]) -> np.ndarray:
    """The law's start grid ``[S, p]``, collapsed over held-fixed parameters to one start per
    combination of the free ones ``free``.

    Example:
        >>> from jaxscale.laws import CHINCHILLA
        >>> grid_starts(CHINCHILLA, (0, 1, 2, 3, 4)).shape, grid_starts(CHINCHILLA, (1, 2, 3, 4)).shape
        ((4500, 5), (900, 5))
    """
    grid = law.grid_points()
    if len(free) == law.n_params:
        return grid
    _, keep = np.unique(grid[:, list(free)], axis=0, return_index=True)
    return grid[np.sort(keep)]


def _candidates(law: Law, starts, free: tuple[int, ...]) -> np.ndarray:
    """A start specification -> ``[S, p]`` fitted parameters (the grid collapsed over held-fixed ones)."""
    if isinstance(starts, str):
        if starts not in STARTS:
            raise ValueError(f"starts must be one of {STARTS} or an array of starts; got {starts!r}")
        return grid_starts(law, free)
    if len(starts) and isinstance(starts[0], Mapping):
        return np.stack([law.from_natural(s) for s in starts])
    arr = np.asarray(starts, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != law.n_params:
        raise ValueError(
            f"starts must have shape [S, {law.n_params}] (fitted parameters {law.params}); got {arr.shape}"
        )
    return arr


def too_few_runs(n_points: int, cfg: problem.Config) -> str | None:
    """Why ``n_points`` runs cannot determine the free parameters (None if they can)."""
    if n_points > len(cfg.free):
        return None
    return (
        f"{n_points} runs cannot determine {len(cfg.free)} free parameters of law {cfg.law.name!r}: "
        f"need at least {len(cfg.free) + 1} runs (or fix some parameters with fixed={{...}})"
    )


def check_zeros(log_y: np.ndarray, cfg: problem.Config) -> None:
    """Values of 0 (log -inf: accuracies, read with ``allow_zero=True``) only on the natural scale."""
    zeros = np.isneginf(np.asarray(log_y))
    if zeros.any() and cfg.scale == "log":
        raise ValueError(
            f"{int(zeros.sum())} runs have a fitted value of 0, which has no log: fit on the natural scale "
            "(scale='natural', e.g. with loss_fn='squared')"
        )


def make_data(spec: Spec, log_x: np.ndarray, log_y: np.ndarray) -> problem.Data:
    """The kernel's arrays for one data set (raises when it has too few runs, or zeros on a log scale)."""
    reason = too_few_runs(len(log_y), spec.cfg)
    if reason:
        raise ValueError(reason)
    check_zeros(log_y, spec.cfg)
    return problem.make_data(spec.cfg.law, log_x, log_y, spec.theta_fixed, spec.cfg.free)
