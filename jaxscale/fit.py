"""``fit``: a multi-start fit of a scaling law, every start solved in one batched kernel.

Example:
    >>> import jaxscale as js
    >>> res = js.fit(js.datasets.chinchilla(), law="chinchilla")
    >>> res.converged, round(res.params["alpha"], 3), round(res.params["beta"], 3)
    (True, 0.347, 0.367)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from . import batches, checks, identify, problem
from .laws import Law, get_law
from .objective import LOSSES
from .results import fit_report, fit_summary, fit_to_dict
from .runs import Runs
from .solver import CONVERGED, NONFINITE, STATUS_NAMES

DEFAULT_N_REFINE = 64
# Two starts "reach the optimum" when their objectives agree to this relative tolerance.
SAME_OPTIMUM_RTOL = 1e-9
# A coefficient fitted as a log that fell below this (natural value < 1e-13) has gone to 0.
VANISHED_LOG = -30.0
# A free parameter whose change by 1 moves no run's predicted log-loss by more than this has
# dropped out of the law with its term (|d log L / d theta| is ~0.01-10 at a real optimum).
INERT_TOL = 1e-6
# A best start whose term vanished is refitted from this many times more screened starts: a
# few best starts can all stop on the same plateau where a term vanishes, reported converged
# at a worse objective (benchmarks/RESULTS.md, "Refined starts"), and more starts escape it.
RETRY_FACTOR = 8


class FitResult(NamedTuple):
    """Outcome of :func:`fit`. Plain data; ``summary()``, ``str()`` and ``to_dict()`` present it."""

    law: Law
    params: dict[str, float]  # natural parameters by name
    theta: np.ndarray  # the law's fitted parameters (e.g. log E, log A, log B, alpha, beta)
    objective: float
    status: str  # "converged", "unidentified", "max_steps", "nonfinite" or "stalled"
    steps: int
    grad_norm: float
    n_points: int
    n_starts: int  # starts refined by the solver
    n_candidates: int  # starts considered (screened) before refining
    n_at_optimum: int  # refined starts whose objective matches the best one
    fixed: tuple[str, ...]
    loss: str
    delta: float
    inert: tuple[str, ...] = ()  # free parameters that move no prediction (see at_bound)
    # Parameters the runs do not determine (status "unidentified"), why, and the smallest
    # eigenvalue and condition of the unit-diagonal Hessian at the optimum: see jaxscale.identify.
    unidentified: tuple[str, ...] = ()
    unidentified_reason: str = ""
    min_curvature: float = float("nan")
    condition: float = float("nan")

    @property
    def at_bound(self) -> tuple[str, ...]:
        """Parameters whose term vanished from the law, so the runs do not determine them.

        A coefficient that ran to 0 (fitted log below -30, e.g. E traded against a near-zero
        exponent), or any free parameter that no longer moves a prediction (``inert``: e.g.
        A and alpha when ``A / N^alpha`` is 1e-8 of every run's loss).
        """
        return tuple(
            name
            for name, value, logged in zip(self.law.natural, self.theta, self.law.log_scale, strict=True)
            if (logged and value < VANISHED_LOG) or name in self.inert
        )

    @property
    def converged(self) -> bool:
        return self.status == STATUS_NAMES[CONVERGED]

    @property
    def derived(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.law.derive(self.params).items()}

    def predict(self, **inputs: Sequence[float]) -> np.ndarray:
        """Predicted loss at the given inputs, e.g. ``predict(N=[7e10], D=[1.4e12])``."""
        missing = [n for n in self.law.inputs if n not in inputs]
        if missing:
            raise ValueError(f"predict needs {list(self.law.inputs)}; missing {missing}")
        log_x = np.log(np.stack([np.asarray(inputs[n], dtype=np.float64) for n in self.law.inputs], axis=-1))
        with jax.enable_x64(True):
            return np.asarray(self.law.predict(self.theta, log_x))

    def summary(self):
        """One row per natural parameter (pandas DataFrame)."""
        return fit_summary(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (the ``--json`` document of the command line)."""
        return fit_to_dict(self)

    def __str__(self) -> str:
        return fit_report(self)


def resolve_starts(law: Law, starts: str | np.ndarray | Sequence[Mapping[str, float]]) -> np.ndarray:
    """A start specification -> ``[S, p]`` fitted parameters."""
    if isinstance(starts, str):
        if starts not in ("screen", "grid"):
            raise ValueError(f"starts must be 'screen', 'grid' or an array of starts; got {starts!r}")
        return law.grid_points()
    if len(starts) and isinstance(starts[0], Mapping):
        return np.stack([law.from_natural(s) for s in starts])
    arr = np.asarray(starts, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != law.n_params:
        raise ValueError(
            f"starts must have shape [S, {law.n_params}] (fitted parameters {law.params}); got {arr.shape}"
        )
    return arr


def candidate_starts(law: Law, cfg: problem.Config, starts, n_refine: int) -> tuple[np.ndarray, int]:
    """The candidate starts ``[S, p]`` and how many of them each problem refines."""
    candidates = resolve_starts(law, starts)
    if isinstance(starts, str) and len(cfg.free) < law.n_params:
        # The grid over held-fixed parameters collapses: keep one start per free combination.
        _, keep = np.unique(candidates[:, list(cfg.free)], axis=0, return_index=True)
        candidates = candidates[np.sort(keep)]
    screened = isinstance(starts, str) and starts == "screen"
    return candidates, (n_refine if screened else len(candidates))


def match_inputs(runs: Runs, law: Law) -> np.ndarray:
    """The columns of ``runs.x`` in the order of ``law.inputs`` (log scale).

    Tokens per parameter ``M`` (the over-training law's input) is derived as ``D / N`` when
    the runs have ``N`` and ``D`` but no ``M`` column.
    """
    if len(law.inputs) == 1 and len(runs.inputs) == 1:
        return runs.log_inputs()
    log_x = dict(zip(runs.inputs, runs.log_inputs().T, strict=True))
    if "M" in law.inputs and "M" not in log_x and {"N", "D"} <= set(log_x):
        log_x["M"] = log_x["D"] - log_x["N"]  # tokens per parameter, M = D / N
    missing = [n for n in law.inputs if n not in log_x]
    if missing:
        raise ValueError(
            f"law {law.name!r} needs inputs {list(law.inputs)} but the runs have {list(runs.inputs)}; "
            f"map them in read_runs, e.g. read_runs(df, {missing[0]}='your_column', ...)"
        )
    return np.stack([log_x[n] for n in law.inputs], axis=-1)


def make_config(
    law: Law,
    *,
    loss: str,
    delta: float,
    fixed: Mapping[str, float] | None,
    max_steps: int,
    gtol: float,
    solver: str = "bfgs",
) -> tuple[problem.Config, np.ndarray]:
    """Validate the fit options: the kernel's static config and the held-fixed parameter values."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    if solver not in problem.METHODS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {problem.METHODS}")
    if not delta > 0:
        raise ValueError(f"delta must be > 0; got {delta}")
    fixed = dict(fixed or {})
    fixed_idx = [law.natural_index(n) for n in fixed]
    theta_fixed = np.zeros(law.n_params)
    if fixed:
        full = law.from_natural({**dict.fromkeys(law.natural, 1.0), **fixed})
        theta_fixed[fixed_idx] = full[fixed_idx]
    free = tuple(i for i in range(law.n_params) if i not in fixed_idx)
    if not free:
        raise ValueError("every parameter is fixed: nothing to fit")
    return problem.Config(law, loss, float(delta), free, int(max_steps), float(gtol), solver), theta_fixed


def too_few_runs(n_points: int, cfg: problem.Config) -> str | None:
    """Why ``n_points`` runs cannot determine the free parameters (None if they can)."""
    if n_points > len(cfg.free):
        return None
    return (
        f"{n_points} runs cannot determine {len(cfg.free)} free parameters of law {cfg.law.name!r}: "
        f"need at least {len(cfg.free) + 1} runs (or fix some parameters with fixed={{...}})"
    )


def prepare(
    runs: Runs,
    law: Law,
    *,
    loss: str,
    delta: float,
    fixed: Mapping[str, float] | None,
    max_steps: int,
    gtol: float,
    solver: str = "bfgs",
) -> tuple[problem.Config, problem.Data]:
    """Validate the fit options and build the kernel's static config and shared arrays."""
    cfg, theta_fixed = make_config(
        law, loss=loss, delta=delta, fixed=fixed, max_steps=max_steps, gtol=gtol, solver=solver
    )
    reason = too_few_runs(runs.n_points, cfg)
    if reason:
        raise ValueError(reason)
    data = problem.make_data(law, match_inputs(runs, law), runs.log_loss(), theta_fixed, cfg.free)
    return cfg, data


def as_runs(runs: Runs | Any) -> Runs:
    if isinstance(runs, Runs):
        return runs
    from .io import read_runs  # pandas stays at the edge: imported only when needed

    return read_runs(runs)


def fit(
    runs: Runs | Any,
    law: str | Law = "chinchilla",
    *,
    loss: str = "huber",
    delta: float = 1e-3,
    starts: str | np.ndarray | Sequence[Mapping[str, float]] = "screen",
    n_refine: int = DEFAULT_N_REFINE,
    fixed: Mapping[str, float] | None = None,
    weights: Sequence[float] | None = None,
    max_steps: int = 1000,
    gtol: float = 1e-10,
    lanes: int = 512,
    solver: str = "bfgs",
) -> FitResult:
    """Fit ``law`` to ``runs`` by minimising the summed, weighted loss of log residuals.

    Args:
        runs: a :class:`Runs` (see :func:`jaxscale.read_runs`), or a DataFrame / CSV path with
            columns ``N``, ``D``, ``loss``.
        law: a law name (``"chinchilla"``, ``"power"``) or a :class:`Law`.
        loss: ``"huber"`` (Hoffmann et al.'s choice) or ``"squared"``.
        delta: Huber threshold on log residuals (1e-3 as in Hoffmann et al.).
        starts: ``"screen"`` evaluates the law's start grid and refines the ``n_refine`` starts
            with the lowest initial objective; ``"grid"`` refines every grid point (Epoch AI's
            4,500 for Chinchilla); or explicit starts (``[S, p]`` fitted parameters, or a list
            of dicts of natural parameters).
        fixed: natural parameters held at given values, e.g. ``{"E": 1.69}``.
        weights: per-run weights (default 1; 0 leaves a run out).
        max_steps, gtol: solver budget and gradient tolerance (see :mod:`jaxscale.solver`).
        lanes: number of starts iterated side by side (finished ones are replaced by the next).
        solver: ``"bfgs"`` (default), the lockstep dense BFGS with lane refill, fast for laws
            with few parameters; ``"lbfgs"``, optax's L-BFGS with its zoom line search, for
            laws with many parameters (``steps`` then counts L-BFGS iterations, ``max_steps``
            bounds them, and ``lanes`` is unused).

    Returns:
        :class:`FitResult`; ``converged`` is False if the best start did not converge.
    """
    law = get_law(law)
    checks.arguments(law, delta=delta, n_refine=n_refine, fixed=fixed, max_steps=max_steps, gtol=gtol, lanes=lanes)
    runs = as_runs(runs)
    with jax.enable_x64(True):
        cfg, data = prepare(
            runs, law, loss=loss, delta=delta, fixed=fixed, max_steps=max_steps, gtol=gtol, solver=solver
        )
        w = checks.run_weights(weights, runs.n_points, cfg)
        candidates, n_refine_eff = candidate_starts(law, cfg, starts, n_refine)
        n_points = int(np.count_nonzero(w))
        # Padded to a bucket size, so that fits of many run counts share a few compiled kernels.
        data, w_padded = batches.pad_points(data, w, batches.bucket_size(runs.n_points))

        def solve(k: int) -> FitResult:
            # One problem: no more lanes than starts (cross-chunk bit-identity is moot here).
            best = batches.solve(cfg, data, candidates, w_padded[None], n_refine=k, chunk_size=1, lanes=min(lanes, k))
            return result_from_best(
                law, best, 0, n_candidates=len(candidates), n_points=n_points, fixed=fixed, loss=loss, delta=delta
            )

        res = solve(n_refine_eff)
        if res.at_bound and n_refine_eff < len(candidates):
            # A vanished term is a real outcome (the runs do not need it) or a plateau that the
            # solver took for an optimum (see problem.sensitivity): more starts tell them apart.
            res = better(res, solve(min(len(candidates), RETRY_FACTOR * n_refine_eff)))
        res = identify.assess(res, cfg, data, w_padded)
    return res


def better(first: FitResult, second: FitResult) -> FitResult:
    """``second`` (a retry from more starts, which include ``first``'s) unless ``first`` is
    strictly better: the same start can end in different last bits when lanes differ."""
    return second if second.objective <= first.objective * (1 + SAME_OPTIMUM_RTOL) else first


def needs_retry(res: FitResult) -> bool:
    """A best start that did not converge, or whose term vanished: refit it from more starts."""
    return not res.converged or bool(res.at_bound)


def result_from_best(
    law: Law,
    best: problem.Best,
    i: int,
    *,
    n_candidates: int,
    n_points: int,
    fixed: Mapping[str, float] | None,
    loss: str,
    delta: float,
) -> FitResult:
    """Problem ``i`` of an engine outcome as a :class:`FitResult`."""
    value = float(best.value[i])
    inert = tuple(
        name
        for name, sens in zip(law.natural, np.asarray(best.sensitivity[i]), strict=True)
        if sens < INERT_TOL and name not in (fixed or {})
    )
    finite = best.start_values[i][np.isfinite(best.start_values[i])]
    theta = np.asarray(best.theta[i])
    natural = np.asarray(law.to_natural(theta))
    status = int(best.status[i])
    if status == CONVERGED and not np.all(np.isfinite(natural)):
        # e.g. a coefficient whose log ran past 709 along an unidentified direction (an input
        # that never varies): an optimum whose parameters cannot be represented is no result.
        status = NONFINITE
    return FitResult(
        law=law,
        params={n: float(v) for n, v in zip(law.natural, natural, strict=True)},
        theta=theta,
        objective=value,
        status=STATUS_NAMES[status],
        steps=int(best.steps[i]),
        grad_norm=float(best.grad_norm[i]),
        n_points=n_points,
        n_starts=int(best.start_values.shape[1]),
        n_candidates=n_candidates,
        n_at_optimum=int(np.sum(finite <= value + SAME_OPTIMUM_RTOL * max(abs(value), 1e-300))),
        fixed=tuple(fixed or {}),
        loss=loss,
        delta=float(delta),
        inert=inert,
    )
