"""The results of fits and bootstraps, and their JSON: plain data that presents itself.

:class:`FitResult` (one fit) and :class:`BootstrapResult` (a bootstrap's draws) are immutable
containers; ``str()`` gives a report (:mod:`jaxscale.reports`), ``to_dict()`` a JSON-safe
document, ``summary()`` / ``ci()`` DataFrames. :func:`fit_result` builds a :class:`FitResult`
from one problem the runner solved; :func:`json_safe` is the one rule for a number in JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import checks, identify, objective, refinement, reports, specs
from .allocation import chinchilla_allocation
from .laws import Law
from .solver import CONVERGED, NONFINITE, STATUS_NAMES

# An interval narrower than this, relative to its bounds, has zero width: every used resample
# gave the same value (Epoch's 95% intervals are 2-10% of their bounds wide).
ZERO_WIDTH_RTOL = 1e-9


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
    loss_fn: str
    delta: float
    inert: tuple[str, ...] = ()  # free parameters that move no prediction (see vanished)
    # The objective's other options (jaxscale.objective): residual scale, reported reduction,
    # the loss factor where the law over-predicts.
    scale: str = "log"
    reduction: str = "sum"
    overestimate_penalty: float = 1.0
    # Parameters the runs do not determine (status "unidentified"), why, and the smallest
    # eigenvalue and condition of the unit-diagonal Hessian at the optimum: see jaxscale.identify.
    unidentified: tuple[str, ...] = ()
    unidentified_reason: str = ""
    min_curvature: float = float("nan")
    condition: float = float("nan")

    @property
    def vanished(self) -> tuple[str, ...]:
        """Parameters whose term vanished from the law, so the runs do not determine them.

        A coefficient that ran to 0 (fitted log below -30, e.g. E traded against a near-zero
        exponent), or any free parameter that no longer moves a prediction (``inert``: e.g.
        A and alpha when ``A / N^alpha`` is 1e-8 of every run's loss).
        """
        return tuple(
            name
            for name, value, logged in zip(self.law.natural, self.theta, self.law.log_scale, strict=True)
            if (logged and value < refinement.VANISHED_LOG) or name in self.inert
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
        return reports.fit_summary(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (the ``--json`` document of the command line)."""
        return fit_to_dict(self)

    def __str__(self) -> str:
        return reports.fit_report(self)


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
    def n_resamples(self) -> int:
        return int(self.status.shape[0])

    @property
    def ok(self) -> np.ndarray:
        """Resamples whose best start converged to finite parameters the resample determines (the
        only ones used in intervals; an ``"unidentified"`` resample counts as failed: see
        :func:`jaxscale.runner.flag_flat`)."""
        return (self.status == CONVERGED) & np.all(np.isfinite(self.draws), axis=1)

    @property
    def n_failed(self) -> int:
        return int(np.sum(~self.ok))

    @property
    def n_unidentified(self) -> int:
        """Failed resamples that converged where their objective is flat (see :func:`jaxscale.runner.flag_flat`)."""
        return int(np.sum(self.status == identify.UNIDENTIFIED_CODE))

    @property
    def failed_fraction(self) -> float:
        return self.n_failed / self.n_resamples

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
        return derived_quantities(self.law, self.samples, compute=compute, at=at)

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
            raise ValueError(self.why_no_interval())
        point = {**self.point.params, **derived_quantities(self.law, self.point.params, compute=compute, at=at)}
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

    def why_no_interval(self) -> str:
        why = (
            f" ({self.n_unidentified} stopped where the resample does not determine the parameters)"
            if self.n_unidentified
            else ""
        )
        return f"none of the {self.n_resamples} resamples converged{why}: no interval can be computed"

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
        return reports.bootstrap_report(self)


def _spread(values: np.ndarray) -> float:
    """Standard deviation of the draws; inf (not an overflow error) when a parameter is not
    identified and some draws run off to ~1e300 along a flat direction."""
    if values.size < 2:
        return float("nan")
    with np.errstate(over="ignore", invalid="ignore"):
        sd = float(np.std(values, ddof=1))
    return sd if np.isfinite(sd) else float("inf")


def derived_quantities(
    law: Law, params: Mapping, *, compute: Sequence[float] = (), at: Mapping | None = None
) -> dict[str, np.ndarray]:
    """The law's derived quantities (a, b for Chinchilla) of ``params`` (natural values, or arrays
    of draws), tokens per parameter at each ``compute`` budget and the loss at each point of ``at``."""
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


def fit_result(
    spec: specs.Spec, solved: refinement.Solved, i: int, *, n_points: int, total_weight: float | None = None
) -> FitResult:
    """Problem ``i`` the runner solved under ``spec`` as a :class:`FitResult` (``n_points``:
    runs with non-zero weight; ``total_weight``: their weights' sum, default ``n_points``)."""
    law, cfg = spec.cfg.law, spec.cfg
    free = np.isin(np.arange(law.n_params), cfg.free)
    inert = tuple(
        name
        for name, sens, is_free in zip(law.natural, np.asarray(solved.sensitivity[i]), free, strict=True)
        if sens < refinement.INERT_TOL and is_free
    )
    theta = np.asarray(solved.theta[i])
    natural = np.asarray(law.to_natural(theta))
    status = int(solved.status[i])
    if status == CONVERGED and not np.all(np.isfinite(natural)):
        # e.g. a coefficient whose log ran past 709 along an unidentified direction (an input
        # that never varies): an optimum whose parameters cannot be represented is no result.
        status = NONFINITE
    return FitResult(
        law=law,
        params={n: float(v) for n, v in zip(law.natural, natural, strict=True)},
        theta=theta,
        objective=float(
            objective.reported(solved.value[i], n_points if total_weight is None else total_weight, spec.reduction)
        ),
        status=STATUS_NAMES[status],
        steps=int(solved.steps[i]),
        grad_norm=float(solved.grad_norm[i]),
        n_points=n_points,
        n_starts=int(solved.n_starts[i]),
        n_candidates=len(spec.candidates),
        n_at_optimum=int(solved.n_at_optimum[i]),
        fixed=spec.fixed,
        loss_fn=cfg.loss_fn,
        delta=cfg.delta,
        inert=inert,
        scale=cfg.scale,
        reduction=spec.reduction,
        overestimate_penalty=cfg.penalty,
    )


def json_safe(v: Any) -> Any:
    """A JSON-safe scalar: numpy scalars as Python ones, and NaN and infinities (which JSON
    lacks) as null rather than invalid JSON. The one rule for every ``to_dict`` and ``--json``.

    Example:
        >>> import numpy as np
        >>> [json_safe(v) for v in (np.float64(0.5), float("nan"), np.int64(3), "a")]
        [0.5, None, 3, 'a']
    """
    if isinstance(v, np.generic):
        v = v.item()
    return None if isinstance(v, float) and not math.isfinite(v) else v


def fit_to_dict(res) -> dict[str, Any]:
    return {
        "law": res.law.name,
        "n_points": res.n_points,
        "objective": json_safe(res.objective),
        "converged": res.converged,
        "status": res.status,
        "params": {k: json_safe(v) for k, v in res.params.items()},
        "derived": {k: json_safe(v) for k, v in res.derived.items()},
        "fixed": list(res.fixed),
        "unidentified": list(res.unidentified),
        "unidentified_reason": res.unidentified_reason,
        "diagnostics": {
            "loss_fn": res.loss_fn,
            "delta": res.delta,
            "scale": res.scale,
            "reduction": res.reduction,
            "overestimate_penalty": res.overestimate_penalty,
            "steps": res.steps,
            "grad_norm": json_safe(res.grad_norm),
            "n_starts": res.n_starts,
            "n_candidates": res.n_candidates,
            "n_at_optimum": res.n_at_optimum,
            "vanished": list(res.vanished),
            "min_curvature": json_safe(res.min_curvature),
            "condition": json_safe(res.condition),
        },
    }
