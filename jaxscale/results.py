"""Presentation of results: text reports, JSON-safe dicts and DataFrames (pandas imported lazily)."""

from __future__ import annotations

import math
from typing import Any


def _num(v: float) -> float | None:
    """JSON has no NaN/inf: report them as null rather than emit invalid JSON."""
    return float(v) if math.isfinite(v) else None


def fit_to_dict(res) -> dict[str, Any]:
    return {
        "law": res.law.name,
        "n_points": res.n_points,
        "objective": _num(res.objective),
        "converged": res.converged,
        "status": res.status,
        "params": {k: _num(v) for k, v in res.params.items()},
        "derived": {k: _num(v) for k, v in res.derived.items()},
        "fixed": list(res.fixed),
        "unidentified": list(res.unidentified),
        "unidentified_reason": res.unidentified_reason,
        "diagnostics": {
            "loss": res.loss,
            "delta": res.delta,
            "steps": res.steps,
            "grad_norm": _num(res.grad_norm),
            "n_starts": res.n_starts,
            "n_candidates": res.n_candidates,
            "n_at_optimum": res.n_at_optimum,
            "at_bound": list(res.at_bound),
            "min_curvature": _num(res.min_curvature),
            "condition": _num(res.condition),
        },
    }


def fit_summary(res):
    import pandas as pd

    return pd.DataFrame(
        {
            "param": list(res.params),
            "value": list(res.params.values()),
            "fixed": [n in res.fixed for n in res.params],
        }
    ).set_index("param")


def fit_report(res) -> str:
    width = max(len(n) for n in (*res.params, *res.derived))
    loss = f"Huber (delta={res.delta:g})" if res.loss == "huber" else "squared"
    if res.converged:
        verdict = f"converged in {res.steps} steps (max|grad| {res.grad_norm:.1e})"
    elif res.status == "unidentified":
        verdict = (
            f"UNIDENTIFIED: the solver stopped after {res.steps} steps (max|grad| {res.grad_norm:.1e}), but "
            f"the runs do not determine {', '.join(res.unidentified)}; the values below are one point of many "
            "that fit as well, not estimates"
        )
    else:
        verdict = (
            f"NOT CONVERGED: {res.status} after {res.steps} steps (max|grad| {res.grad_norm:.1e}); "
            "the parameters below are the best point reached, not an optimum"
        )
    lines = [
        f"{res.law.name}: {res.law.formula}",
        f"  {res.n_points} runs, {loss} loss on log residuals, summed",
        f"  objective {res.objective:.10g}, {verdict}",
        f"  starts: {res.n_starts} refined of {res.n_candidates}; {res.n_at_optimum} reached the best optimum",
        "  parameters:",
    ]
    if res.at_bound:
        lines.insert(
            -1,
            f"  note: the term of {', '.join(res.at_bound)} vanished (it ran to 0, or moves no prediction "
            "by 1e-6): the runs do not determine it; hold it fixed (fixed={...}) or add runs that vary more",
        )
    if res.unidentified:
        lines.insert(
            -1,
            f"  why: {res.unidentified_reason}. Add runs that vary the inputs more (or more runs), or hold "
            "parameters fixed (fixed={...})",
        )
    for name, value in res.params.items():
        tag = "  (fixed)" if name in res.fixed else "  (unidentified)" if name in res.unidentified else ""
        lines.append(f"    {name:<{width}} = {value:.6g}{tag}")
    if res.derived:
        lines.append("  derived:")
        for name, value in res.derived.items():
            lines.append(f"    {name:<{width}} = {value:.6g}")
    return "\n".join(lines)
