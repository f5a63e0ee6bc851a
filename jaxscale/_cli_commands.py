"""The command line's commands: each reads its arguments, calls the library, prints and writes.

:mod:`jaxscale.cli` parses the arguments and imports this module only then, so that ``--help``
and argument errors never wait for JAX. This module imports no JAX either: a command reads and
checks its input first (pandas only), so that a missing file, a wrong column or a bad ``--where``
is said at once, and only then loads the law and the fitting code (:func:`_law`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from collections.abc import Callable

from . import _cli_output as out
from . import datasets
from ._progress import progress_bar

# What the installed command does before JAX's first use (one CPU device per core, the compilation
# cache); jaxscale.cli.main puts it here when it owns the process, and jax_ready runs it once: at
# the start of a command, or, for those in READS_FIRST, once their input is read (in _law).
BEFORE_JAX: list[Callable[[], None]] = []
READS_FIRST = {"fit", "frontier", "validate", "multiplier", "rollout"}


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


def _check_resamples(args: argparse.Namespace) -> None:
    if args.resamples < 0 or args.resamples == 1:
        raise ValueError(f"--resamples takes 0 (none) or at least 2; got {args.resamples}")
    if not 0 < args.level < 1:
        raise ValueError(f"--level must be between 0 and 1, e.g. 0.95; got {args.level}")


def _fit_or_bootstrap(args: argparse.Namespace, runs):
    """``(fit result, bootstrap result or None)``; the bootstrap's bar shows only on a terminal."""
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
            **_objective(args),
        )
        return boot.point, boot
    return fit(runs, law=law, starts=args.starts, fixed=_fixed(args), **_objective(args)), None


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
    doc = out.fit_doc(result, boot, args.level)
    print(out.dumps(doc) if args.json else _report(result, boot, args.level))
    out.write_out(out_path, doc, out.fit_row(result, boot, args.level), force=args.force)
    if plot_path is not None:
        out.save_fit_plot(plot_path, result, runs, boot, args.level, force=args.force)
    return 0 if result.converged else 1


def _fit_groups(args: argparse.Namespace, out_path) -> int:
    runs = _read(args, group=args.by)
    law = _law(args)
    from .groups import fit_groups

    label = "fit + bootstrap" if args.resamples else "fit"
    table = fit_groups(
        runs, args.by, law, loss=args.loss, starts=args.starts, n_resamples=args.resamples, level=args.level,
        seed=args.seed, where=args.where, fixed=_fixed(args), small=args.small, progress=progress_bar(label, "groups"),
        **_columns(args), **_objective(args),
    )  # fmt: skip
    options = {"n_resamples": args.resamples, "level": args.level}
    docs = out.group_docs(table, args.by, law, seed=args.seed, **options)
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
    runs = _read(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same rows again: what they warn about was said once above
        train = _read(args, where=args.train)
    mask = np.isin(runs.rows, train.rows)
    law = _law(args)
    from .validate import validate

    table = validate(runs, law, train=mask, starts=args.starts, fixed=_fixed(args), **_objective(args))
    summary = table.attrs["summary"]
    plain = {k: out.json_safe(v) for k, v in summary.items()}
    params = {k: out.json_safe(v) for k, v in table.attrs["params"].items()}
    doc = {"train": args.train, "summary": plain, "params": params, "runs": out.records(table, "row")}
    if args.json:
        print(out.dumps(doc))
    else:
        held = table[table["split"] == "held_out"].drop(columns=["split", "abs_rel_error"]).rename_axis("row")
        s = summary
        print(
            f"{s['law']} law fitted on the {s['n_train']} runs with {args.train}, predicting the "
            f"{s['n_held_out']} others ({s['status']}, objective {s['objective']:.6g})\n"
            f"  held-out |relative error|: mean {s['mean_abs_rel_error']:.3%}, max {s['max_abs_rel_error']:.3%} "
            f"(train mean {s['train_mean_abs_rel_error']:.3%})\n"
            "  params: " + ", ".join(f"{k} {v:.4g}" for k, v in table.attrs["params"].items())
        )
        print(held.to_string(float_format=lambda v: f"{v:.4g}"))
    out.write_out(out_path, doc, table.rename_axis("row").reset_index(), force=args.force)
    return 0 if summary["converged"] else 1


def _isoflop(args: argparse.Namespace) -> int:
    from .isoflop import isoflop, isoflop_to_dicts
    from .isoflop_report import extrapolate

    if args.noise is not None and len(args.noise) not in (1, 4):
        raise ValueError("--noise takes a standard deviation, or LOSS1 SD1 LOSS2 SD2 (log-linear between)")
    noise = None
    if args.noise is not None:  # a standard deviation, or two (loss, standard deviation) anchors
        noise = (
            args.noise[0] if len(args.noise) == 1 else ((args.noise[0], args.noise[1]), (args.noise[2], args.noise[3]))
        )
    start = time.perf_counter()
    table = isoflop(
        args.data, flops=args.flops, N=args.N or (None if args.D else "params"), D=args.D, loss=args.loss,
        by=args.by, where=args.where, budget=args.budget, budget_rtol=args.budget_rtol,
        bins_per_decade=args.bins_per_decade, budget_range=args.budget_range, window=args.window,
        method=args.method, resample="noise" if noise is not None else "runs", noise=noise,
        observation=args.observation, weighted=args.weighted, n_resamples=args.resamples, level=args.level,
        seed=args.seed,
    )  # fmt: skip
    took = time.perf_counter() - start
    front = extrapolate(table, args.compute, level=args.level) if args.compute else None
    if args.json:
        docs = isoflop_to_dicts(table)
        if front is not None:  # extrapolate() gives each row's budgets in turn
            m = len(args.compute)
            for i, doc in enumerate(docs):
                doc["frontier"] = out.records(front.iloc[i * m : (i + 1) * m].drop(columns=table.attrs["by"]))
        print(out.dumps(docs if args.by else docs[0]))
        return 0
    shown = table.drop(columns=["budgets", "draws", "interval_warning"])  # doubts go to stderr as warnings
    kind = "noise replicates" if noise is not None else "resamples"
    print(
        f"isoFLOP profiles (Approach 2, {args.method}): N* = k_N C^a, D* = k_D C^b; "
        f"{args.resamples} {kind}, {args.level:.0%} intervals; budgets: {table.attrs['binning']['method']}"
    )
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if front is not None:
        print("extrapolated (bands over the resamples):")
        print(front.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"  ({took:.2f} s including compilation)")
    return 0


def _envelope(args: argparse.Namespace) -> int:
    from .envelope import envelope

    start = time.perf_counter()
    table = envelope(
        args.data, run=args.run[0] if len(args.run) == 1 else args.run, N=args.N, tokens=args.tokens,
        loss=args.loss, flops=args.flops, by=args.by, n_budgets=args.budgets, n_resamples=args.resamples,
        level=args.level, seed=args.seed,
    )  # fmt: skip
    took = time.perf_counter() - start
    if args.json:
        docs = [r.to_dict() for r in table["result"]]
        print(out.dumps(docs if args.by else docs[0]))
        return 0
    print(
        f"lower envelope of the training curves (Approach 1): N* ~ C^a, D* ~ C^b; {args.resamples} resamples "
        f"over runs, {args.level:.0%} intervals"
    )
    print(table.drop(columns="result").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"  ({took:.2f} s including compilation)")
    return 0


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
    "isoflop": _isoflop,
    "envelope": _envelope,
    "multiplier": _multiplier,
    "rollout": _rollout,
    "example": _example,
}


# The library's messages suggest Python keywords; the command line says its own flags instead.
_CLI_WORDS = [
    (r"read_runs\(\.\.\., ((?:\w+=\.\.\.(?:, )?)+)\)", lambda m: _flags(re.findall(r"(\w+)=", m.group(1)))),
    (r"map them in read_runs, e.g. read_runs\(df, (\w+)='your_column', \.\.\.\)", r"name the column, e.g. --\1 COL"),
    (r"read_runs\(\.\.\., check_duplicates=False\)", "--no-duplicate-check"),
    (r"read_runs\(\.\.\., group='col' or \['col', \.\.\.\]\)", "--by COL [COL ...]"),
    (r"read_runs\(\.\.\., (\w+)='[^']*'\)", r"--\1 COL"),
    (
        r"isoflop\(\.\.\., flops=\.\.\., N=\.\.\., D=\.\.\., loss=\.\.\., by=\.\.\., weights=\.\.\., budget=\.\.\.\)",
        "--flops --N --D --loss --by --budget",
    ),
    (
        r"budget_rtol=\.\.\., bins_per_decade=\.\.\. or budget=<column naming the budget>",
        "--budget-rtol R, --bins-per-decade K or --budget COL",
    ),  # fmt: skip
    (r"observation='median' and weighted=True", "--observation median and --weighted"),
    (r"add resample='noise', noise=\.\.\.", "add --noise SD"),
    (r"narrow them with window=\.\.\.", "narrow them with --window"),
    (r"use method='parabola'", "use --method parabola"),
    (
        r"envelope\(\.\.\., run=\.\.\., N=\.\.\., tokens=\.\.\., loss=\.\.\., flops=\.\.\., by=\.\.\.\)",
        "--run --N --tokens --loss --flops --by",
    ),
    (r"run=\[\.\.\.\] takes several columns", "--run takes several columns"),
    (r"fixed=\{\.\.\.\}", "--fix NAME=VALUE"),
    (r"small='report'", "--small report"),
    (r", or read it with pd\.read_csv\(path, sep=\.\.\.\) and pass the DataFrame", ""),
    (r"\(e\.g\. np\.log\(4\)\)", "(e.g. --window 1.39, that is ln 4)"),
    (
        r"pass them, e\.g\. frontier\(\.\.\., (\w+)=[^)]*\)",
        r"the command line cannot give \1; use js.frontier in Python",
    ),
]
_FLAGS = {"N": "--N", "D": "--D", "x": "--x", "U": "--U", "M": "--M", "loss": "--loss"}


def _flags(keys: list[str]) -> str:
    return " ".join(f"{_FLAGS[k]} COL" for k in keys if k in _FLAGS)


def cli_words(message: str, select: str = "--where") -> str:
    """``message`` with the library's Python hints (``fixed={...}``, ``where=...``) as this command's flags.

    ``select`` is the flag that picks rows (``--where``; ``--train`` for validate).
    """
    for pattern, replacement in _CLI_WORDS:
        message = re.sub(pattern, replacement, message)
    return re.sub(r"\bwhere=(?=['\"])", f"{select} ", message).replace("where=", select)
