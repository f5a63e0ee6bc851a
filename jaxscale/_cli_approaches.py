"""The command line's Approach 1 and 2 commands (``jaxscale envelope``, ``jaxscale isoflop``):
each reads its file, calls the library and prints; :mod:`jaxscale._cli_commands` dispatches.
"""

from __future__ import annotations

import argparse
import time

from . import _cli_output as out


def isoflop_command(args: argparse.Namespace) -> int:
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


def envelope_command(args: argparse.Namespace) -> int:
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
