"""Text reports and summary tables of results (pandas imported on use)."""

from __future__ import annotations

from . import identify


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
    loss = f"Huber (delta={res.delta:g})" if res.loss_fn == "huber" else "squared"
    loss += " loss on log residuals" if res.scale == "log" else " loss on residuals (natural scale)"
    if res.overestimate_penalty != 1.0:
        loss += f" (x{res.overestimate_penalty:g} where the law over-predicts)"
    loss += ", mean" if res.reduction == "mean" else ", summed"
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
        if res.status == "nonfinite":
            verdict += (
                ". The objective or a parameter stopped being finite: a law whose prediction is not "
                "positive (e.g. a negative base raised to a power) has no log there; keep its parameters "
                "in range (positive=..., fixed=...) or start elsewhere, or try solver='lbfgs'"
            )
    lines = [
        f"{res.law.name}: {res.law.formula}",
        f"  {res.n_points} runs, {loss}",
        f"  objective {res.objective:.10g}, {verdict}",
        f"  starts: {res.n_starts} refined of {res.n_candidates}; {res.n_at_optimum} reached the best optimum",
        "  parameters:",
    ]
    if res.vanished:
        lines.insert(
            -1,
            f"  note: the term of {', '.join(res.vanished)} vanished (it ran to 0, or moves no prediction "
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


def bootstrap_report(boot) -> str:
    """The text of ``str(BootstrapResult)``: the intervals at 95%, failures and warnings."""
    kind = f"cluster bootstrap ({boot.cluster_count} clusters)" if boot.cluster_count else "bootstrap"
    if not boot.ok.any():
        return f"{boot.law.name} {kind}: {boot.n_resamples} resamples, seed {boot.seed}; {boot.why_no_interval()}"
    ci = boot.ci(0.95)
    table = ci[["estimate", "lower", "upper", "se"] + (["warning"] if (ci["warning"] != "").any() else [])]
    failed = f"{boot.n_failed} of {boot.n_resamples} resamples failed ({100 * boot.failed_fraction:.2f}%"
    if boot.n_unidentified:
        failed += f"; {boot.n_unidentified} converged where the resample does not determine the parameters"
    head = f"{boot.law.name} {kind}: {boot.n_resamples} resamples, seed {boot.seed}; {failed}), excluded"
    if boot.point.status == identify.UNIDENTIFIED:
        head += (
            f"\nWARNING: the fit to all runs is unidentified ({boot.point.unidentified_reason}): "
            "its 'estimate' of those parameters is one point of many"
        )
    elif not boot.point.converged:
        head += f"\nWARNING: the fit to all runs did not converge ({boot.point.status}): 'estimate' is not an optimum"
    return f"{head}\n{table.to_string()}"
