"""``fit``: a multi-start fit of a scaling law, every start solved in one batched kernel.

An adapter over :mod:`jaxscale.runner`: it reads the runs, builds one problem spec, solves it
(:func:`jaxscale.runner.solve_one`), and checks that the runs determine what it reports
(:mod:`jaxscale.identify`).

Example:
    >>> import jaxscale as js
    >>> res = js.fit(js.datasets.chinchilla(), law="chinchilla")
    >>> res.converged, round(res.params["alpha"], 3), round(res.params["beta"], 3)
    (True, 0.347, 0.367)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from . import checks, identify, runner, specs
from .laws import Law, get_law
from .results import FitResult, fit_result
from .runs import Runs


def as_runs(runs: Runs | Any) -> Runs:
    if isinstance(runs, Runs):
        return runs
    from .io import read_runs  # pandas stays at the edge: imported only when needed

    return read_runs(runs)


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


@checks.renamed(loss="loss_fn")
def fit(
    runs: Runs | Any,
    law: str | Law = "chinchilla",
    *,
    loss_fn: str = "huber",
    delta: float = 1e-3,
    scale: str = "log",
    reduction: str = "sum",
    overestimate_penalty: float = 1.0,
    starts: str | np.ndarray | Sequence[Mapping[str, float]] = "screen",
    n_refine: int = specs.N_REFINE_ONE,
    fixed: Mapping[str, float] | None = None,
    weights: Sequence[float] | None = None,
    max_steps: int = 1000,
    gtol: float = 1e-10,
    lanes: int | None = None,
    solver: str = "bfgs",
) -> FitResult:
    """Fit ``law`` to ``runs`` by minimising the summed, weighted loss of residuals (:mod:`jaxscale.objective`).

    Args:
        runs: a :class:`Runs` (see :func:`jaxscale.read_runs`), or a DataFrame / CSV path with
            columns ``N``, ``D``, ``loss``.
        law: a law name (``"chinchilla"``, ``"power"``) or a :class:`Law`.
        loss_fn: ``"huber"`` (Hoffmann et al.'s choice) or ``"squared"``.
        delta: Huber threshold on residuals (1e-3 on log residuals as in Hoffmann et al.).
        scale: ``"log"`` (residuals of log loss, the default) or ``"natural"`` (of the loss itself,
            as ``scipy.optimize.curve_fit`` fits: Gadre et al.'s error laws).
        reduction: ``"sum"`` or ``"mean"`` (Brandfonbrener et al.): the same optimum; the
            reported ``objective`` is the sum, or the sum over the runs' total weight.
        overestimate_penalty: the loss of runs the law over-predicts is multiplied by this
            (OLMo-core's option; > 1 fits the lower envelope of under-tuned runs; 1: symmetric).
        starts: ``"screen"`` evaluates the law's start grid and refines the ``n_refine`` starts
            with the lowest initial objective; ``"grid"`` refines every grid point (Epoch AI's
            4,500 for Chinchilla); or explicit starts (``[S, p]`` fitted parameters, or a list
            of dicts of natural parameters).
        fixed: natural parameters held at given values, e.g. ``{"E": 1.69}``.
        weights: per-run weights (default 1; 0 leaves a run out).
        max_steps, gtol: solver budget and gradient tolerance (see :mod:`jaxscale.solver`).
        lanes: number of starts iterated side by side (finished ones are replaced by the next;
            default: the backend's, :func:`jaxscale.backends.sizes`).
        solver: ``"bfgs"`` (default), the lockstep dense BFGS with lane refill, fast for laws
            with few parameters; ``"bfgs_hessian"``, the same with each start's inverse Hessian
            seeded from the exact Hessian there (fewer steps on the Epoch data, but more
            plateaus on noisy data: benchmarks/RESULTS.md, "Solvers"); ``"newton"``, the same
            lanes stepping an exact-Hessian Newton
            (:mod:`jaxscale.newton`: fewer, dearer iterations); ``"bfgs_mixed"``, the BFGS
            evaluating the objective in float32 until float32 can go no further, then in
            float64 to the same tolerance (:mod:`jaxscale.mixed`: the same optima, each step
            of the search cheaper on a CPU); ``"lbfgs"``, optax's L-BFGS
            with its zoom line search, for laws with many parameters (``steps`` then counts
            L-BFGS iterations, ``max_steps`` bounds them, and ``lanes`` is unused).

    Returns:
        :class:`FitResult`; ``converged`` is False if the best start did not converge.
    """
    law = get_law(law)
    checks.arguments(law, delta=delta, n_refine=n_refine, fixed=fixed, max_steps=max_steps, gtol=gtol, lanes=lanes)
    runs = as_runs(runs)
    spec = specs.make_spec(
        law,
        loss_fn=loss_fn,
        delta=delta,
        scale=scale,
        reduction=reduction,
        overestimate_penalty=overestimate_penalty,
        fixed=fixed,
        max_steps=max_steps,
        gtol=gtol,
        solver=solver,
        starts=starts,
        n_refine=n_refine,
        lanes=lanes,
        devices=1,
    )
    with jax.enable_x64(True):
        data = specs.make_data(spec, match_inputs(runs, law), runs.log_loss())
        w = checks.run_weights(weights, runs.n_points, spec.cfg)
        solved, padded, w_padded = runner.solve_one(spec, data, w)
        res = fit_result(spec, solved, 0, n_points=int(np.count_nonzero(w)), total_weight=float(np.sum(w)))
        return identify.assess(res, spec.cfg, padded, w_padded)
