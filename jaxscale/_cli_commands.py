"""The command line's commands: each reads its arguments, calls the library, prints and writes.

:mod:`jaxscale.cli` parses the arguments and imports this module only then, so that ``--help``
and argument errors never wait for JAX. This module imports no JAX either: a command reads and
checks its input first (pandas only), so that a missing file, a wrong column or a bad ``--where``
is said at once, and only then loads the law and the fitting code (:func:`_law`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable

from . import _cli_approaches as approaches
from . import _cli_output as out
from . import _cli_posterior, datasets
from ._cli_words import cli_words
from ._progress import progress_bar

# What the installed command does before JAX's first use (one CPU device per core, the compilation
# cache); jaxscale.cli.main puts it here when it owns the process, and jax_ready runs it once: at
# the start of a command, or, for those in READS_FIRST, once their input is read (in _law).
BEFORE_JAX: list[Callable[[], None]] = []
READS_FIRST = {"fit", "frontier", "validate", "multiplier", "rollout", "posterior"}


def jax_ready() -> None:
    while BEFORE_JAX:
        BEFORE_JAX.pop(0)()


def _law(args: argparse.Namespace):
    """``--law`` as a Law, once the input is read: a registered name, or ``module:function`` or
    ``file.py:function`` (a module in the working directory imports, as under ``python -m``)."""
    jax_ready()  # before the user's module runs: it may compute with JAX
    from .laws import get_law

    if ":" not in args.law or os.getcwd() in sys.path:
        return get_law(args.law)
    sys.path.insert(0, os.getcwd())
    try:
        return get_law(args.law)
    finally:
        sys.path.remove(os.getcwd())


def _columns(args: argparse.Namespace) -> dict[str, str]:
    if args.x:
        return {"x": args.x}
    extra = {k: getattr(args, k) for k in ("U", "M") if getattr(args, k, None)}
    return {"N": args.N, **({} if "M" in extra else {"D": args.D}), **extra}


def _objective(args: argparse.Namespace) -> dict:
    """The objective's options (jaxscale.objective) from their flags."""
    return {
        "loss_fn": args.loss_fn,
        "delta": args.delta,
        "scale": args.scale,
        "reduction": args.reduction,
        "overestimate_penalty": args.overestimate_penalty,
    }


def _fixed(args: argparse.Namespace) -> dict[str, float] | None:
    return dict(args.fix) or None


def _targets(args: argparse.Namespace, *options: str) -> list:
    """Check the output paths before any work: extension, folder, not the input, not existing without --force."""
    formats = {"out": out.OUT_FORMATS, "plot": out.PLOT_FORMATS}
    return [
        out.check_path(getattr(args, o, None), formats[o], f"--{o}", force=args.force, inputs=[args.data])
        for o in options
    ]


def _read(args: argparse.Namespace, **options):
    from .io import read_runs

    options = {"where": getattr(args, "where", None), **options}
    return read_runs(args.data, loss=args.loss, check_duplicates=args.duplicate_check, **options, **_columns(args))


def _weights(args: argparse.Namespace):
    """``--weights``: the column's values for the rows read, or None."""
    from .io import read_weights

    column = getattr(args, "weights", None)  # fit and frontier have --weights
    return None if column is None else read_weights(args.data, column, where=args.where)


def _check_resamples(args: argparse.Namespace) -> None:
    if args.resamples < 0 or args.resamples == 1:
        raise ValueError(f"--resamples takes 0 (none) or at least 2; got {args.resamples}")
    if not 0 < args.level < 1:
        raise ValueError(f"--level must be between 0 and 1, e.g. 0.95; got {args.level}")


def _fit_or_bootstrap(args: argparse.Namespace, runs):
    """``(fit result, bootstrap result or None)``; the bootstrap's bar shows only on a terminal."""
    weights = _weights(args)
    law = _law(args)
    from .bootstrap import bootstrap
    from .fit import fit

    if args.resamples:
        boot = bootstrap(
            runs,
            law=law,
            n_resamples=args.resamples,
            seed=args.seed,
            starts=args.starts,
            fixed=_fixed(args),
            weights=weights,
            **_objective(args),
        )
        return boot.point, boot
    return fit(runs, law=law, starts=args.starts, fixed=_fixed(args), weights=weights, **_objective(args)), None


def _report(result, boot=None, level: float = 0.95) -> str:
    lines = [cli_words(str(result))]
    if boot is not None:
        ci = boot.ci(level)
        table = ci[["lower", "upper", "se"] + (["warning"] if (ci["warning"] != "").any() else [])]
        lines.append(
            f"  bootstrap: {boot.n_resamples} resamples (seed {boot.seed}), {level:.0%} percentile intervals; "
            f"{boot.n_failed} failed (did not converge, or unidentified: {boot.n_unidentified}) and are excluded"
        )
        lines.extend("    " + line for line in table.to_string().splitlines())
    return "\n".join(lines)


def _fit(args: argparse.Namespace) -> int:
    _check_resamples(args)
    if args.small != "error" and not args.by:
        raise ValueError("--small decides what happens to groups with too few runs: it needs --by")
    out_path, plot_path = _targets(args, "out", "plot")
    if plot_path is not None:
        if args.by:
            raise ValueError(
                "--plot draws one fit; with --by, plot a group at a time: drop --by and pick its rows "
                "with --where, e.g. --where \"dataset == 'c4'\""
            )
        out.check_plotting()
    if args.by:
        return _fit_groups(args, out_path)
    runs = _read(args)
    result, boot = _fit_or_bootstrap(args, runs)
    doc = out.fit_doc(result, boot, args.level) | ({"weights": args.weights} if args.weights else {})
    weighted = f"\n  runs weighted by column {args.weights!r}" if args.weights else ""
    print(out.dumps(doc) if args.json else _report(result, boot, args.level) + weighted)
    out.write_out(out_path, doc, out.fit_row(result, boot, args.level), force=args.force)
    if plot_path is not None:
        out.save_fit_plot(plot_path, result, runs, boot, args.level, force=args.force)
    return 0 if result.converged else 1


def _fit_groups(args: argparse.Namespace, out_path) -> int:
    runs = _read(args, group=args.by)
    weights = _weights(args)
    law = _law(args)
    from .groups import fit_groups

    label = "fit + bootstrap" if args.resamples else "fit"
    table = fit_groups(
        runs, args.by, law, loss=args.loss, starts=args.starts, n_resamples=args.resamples, level=args.level,
        seed=args.seed, where=args.where, fixed=_fixed(args), small=args.small, progress=progress_bar(label, "groups"),
        weights=weights,
        **_columns(args), **_objective(args),
    )  # fmt: skip
    options = {"n_resamples": args.resamples, "level": args.level}
    docs = out.group_docs(table, args.by, law, seed=args.seed, **options)
    docs = [doc | {"weights": args.weights} for doc in docs] if args.weights else docs
    print(out.dumps(docs) if args.json else out.groups_text(table, args.by, law, **options))
    out.write_out(out_path, docs, table, force=args.force)
    return 0 if table["converged"].all() else 1


def _frontier(args: argparse.Namespace) -> int:
    _check_resamples(args)
    out_path, plot_path = _targets(args, "out", "plot")
    if plot_path is not None:
        out.check_plotting()
    result, boot = _fit_or_bootstrap(args, _read(args))
    from .frontier import frontier

    table = frontier(boot if boot is not None else result, args.compute, level=args.level)
    doc = {"fit": out.fit_doc(result, boot, args.level), "frontier": out.records(table)}
    if args.json:
        print(out.dumps(doc))
    else:
        print(f"{_report(result)}\n\ncompute-optimal allocation (C = 6ND):")
        if boot is not None:
            print(f"  _lower/_upper: {args.level:.0%} percentile intervals over {int(boot.ok.sum())} resamples")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    out.write_out(out_path, doc, table, force=args.force)
    if plot_path is not None:
        out.save_frontier_plot(plot_path, table, force=args.force)
    # A fit that is not converged (e.g. unidentified) or a budget with no optimum (status column).
    return 0 if result.converged and (table["status"] == "ok").all() else 1


def _validate(args: argparse.Namespace) -> int:
    import numpy as np

    (out_path,) = _targets(args, "out")
    runs = _read(args, **({"group": args.by} if args.by else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same rows again: what they warn about was said once above
        train = np.isin(runs.rows, _read(args, where=_both(args.where, args.train)).rows)
        held = (
            None
            if args.holdout is None
            else np.isin(runs.rows, _read(args, where=_both(args.where, args.holdout)).rows)
        )
    law = _law(args)
    from .validate import validate

    options = dict(starts=args.starts, fixed=_fixed(args), **_objective(args))
    if args.by:
        return _validate_groups(args, runs, law, train, held, options, out_path)
    table = validate(runs, law, train=train, holdout=held, **options)
    summary = table.attrs["summary"]
    plain = {k: out.json_safe(v) for k, v in summary.items()}
    params = {k: out.json_safe(v) for k, v in table.attrs["params"].items()}
    doc = {"train": args.train, "holdout": args.holdout, "summary": plain, "params": params}
    doc["runs"] = out.records(table, "row")
    if args.json:
        print(out.dumps(doc))
    else:
        shown = table[table["split"] == "held_out"].drop(columns=["split", "abs_rel_error"]).rename_axis("row")
        s = summary
        scored = f"the {s['n_held_out']} with {args.holdout}" if args.holdout else f"the {s['n_held_out']} others"
        print(
            f"{s['law']} law fitted on the {s['n_train']} runs with {args.train}, predicting "
            f"{scored} ({s['status']}, objective {s['objective']:.6g})\n"
            f"  held-out |relative error|: mean {s['mean_abs_rel_error']:.3%}, max {s['max_abs_rel_error']:.3%} "
            f"(train mean {s['train_mean_abs_rel_error']:.3%})\n"
            "  params: " + ", ".join(f"{k} {v:.4g}" for k, v in table.attrs["params"].items())
        )
        print(shown.to_string(float_format=lambda v: f"{v:.4g}"))
    out.write_out(out_path, doc, table.rename_axis("row").reset_index(), force=args.force)
    return 0 if summary["converged"] else 1


def _both(where: str | None, query: str) -> str:
    """``query`` within the rows ``--where`` keeps."""
    return query if where is None else f"({where}) and ({query})"


def _validate_groups(args, runs, law, train, held, options, out_path) -> int:
    """One validation per group of ``--by``: a summary row each."""
    import numpy as np
    import pandas as pd

    from .validate import validate

    keys = [tuple(k) for k in runs.groups]
    rows, docs = [], []
    for key in sorted(set(keys), key=repr):
        mine = np.array([k == key for k in keys])
        sub = runs._replace(x=runs.x[mine], y=runs.y[mine], rows=runs.rows[mine], groups=runs.groups[mine])
        table = validate(sub, law, train=train[mine], holdout=None if held is None else held[mine], **options)
        summary = {**dict(zip(args.by, key, strict=True)), **table.attrs["summary"]}
        rows.append(summary)
        docs.append(
            {
                "group": dict(zip(args.by, key, strict=True)),
                "summary": {k: out.json_safe(v) for k, v in summary.items()},
            }
        )
    frame = pd.DataFrame(rows)
    if args.json:
        print(out.dumps(docs))
    else:
        print(f"{law.name} law fitted per group of {args.by} on the runs with {args.train}")
        cols = [*args.by, "n_train", "n_held_out", "mean_abs_rel_error", "max_abs_rel_error", "status"]
        print(frame[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    out.write_out(out_path, docs, frame, force=args.force)
    return 0 if frame["converged"].all() else 1


def _rollout(args: argparse.Namespace) -> int:
    from .rollout import rollout

    _check_resamples(args)
    out_path, plot_path = _targets(args, "out", "plot")
    if plot_path is not None:
        out.check_plotting()
    runs = _read(args)
    table = rollout(
        runs, _law(args), rung=args.rung, rung_rtol=args.rung_rtol, rungs_per_decade=args.rungs_per_decade,
        min_rungs=args.min_rungs, n_resamples=args.resamples, level=args.level, seed=args.seed, fixed=_fixed(args),
        starts=args.starts, **_objective(args),
    )  # fmt: skip
    doc = {"rollout": out.records(table), **{k: out.json_safe(v) for k, v in table.attrs.items()}}
    if args.json:
        print(out.dumps(doc))
    else:
        print(
            f"rollout of the {table.attrs['law']} law over rungs of {args.rung}: fit on the smaller, predict the next"
        )
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    out.write_out(out_path, doc, table, force=args.force)
    if plot_path is not None:
        out.save_rollout_plot(plot_path, table, force=args.force)
    return 0 if table["status"].isin(["converged", "too_few_runs"]).all() else 1


def _multiplier(args: argparse.Namespace) -> int:
    from .io import read_runs
    from .multiplier import compute_multiplier

    _check_resamples(args)
    base_runs = _read(args)
    variant_runs = read_runs(
        args.variant, loss=args.loss, where=args.where, check_duplicates=args.duplicate_check, **_columns(args)
    )
    base, base_boot = _fit_or_bootstrap(args, base_runs)
    variant, variant_boot = _fit_or_bootstrap(args, variant_runs)
    for name, result in (("baseline", base), ("variant", variant)):
        if not result.converged:
            raise ValueError(f"the {name}'s fit is {result.status}: no multiplier from it")
    table = compute_multiplier(base_boot or base, variant_boot or variant, args.compute, level=args.level)
    if args.json:
        print(
            out.dumps(
                {"multiplier": out.records(table), "baseline": out.fit_doc(base), "variant": out.fit_doc(variant)}
            )
        )
        return 0
    print(f"compute multiplier of {args.variant} over {args.data} (> 1: the variant needs less compute)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def _example(args: argparse.Namespace) -> int:
    from .fit import fit

    start = time.perf_counter()
    result = fit(datasets.chinchilla(), law="chinchilla")
    took = time.perf_counter() - start
    if args.json:
        print(out.dumps(out.fit_doc(result)))
    else:
        print(f"{result}\n  ({took:.2f} s including compilation)\n  data: {datasets.CITATION}")
    return 0 if result.converged else 1


COMMANDS = {
    "fit": _fit,
    "frontier": _frontier,
    "validate": _validate,
    "isoflop": approaches.isoflop_command,
    "envelope": approaches.envelope_command,
    "multiplier": _multiplier,
    "rollout": _rollout,
    "posterior": lambda args: _cli_posterior.posterior_command(args, _read, _law, _fixed),
    "example": _example,
}
