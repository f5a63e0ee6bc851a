"""The ``jaxscale`` command line.

Examples::

    jaxscale example chinchilla
    jaxscale fit runs.csv --N params --D tokens --loss loss --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from . import datasets
from .bootstrap import bootstrap
from .fit import fit

EPILOG = """examples:
  jaxscale example chinchilla                     fit Chinchilla's law to the bundled points
  jaxscale fit runs.csv --N params --D tokens     fit your own runs
  jaxscale fit runs.csv --json                    one JSON document on stdout
  jaxscale fit runs.csv --bootstrap 4000 --level 0.9   percentile intervals from 4,000 resamples
  jaxscale isoflop runs.csv --by dataset --json   Approach 2 (isoFLOP parabolas): N* ~ C^a per dataset
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxscale",
        description="Fit neural scaling laws fast, on JAX.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_fit = sub.add_parser("fit", help="fit a law to runs in a CSV/Parquet/JSON file")
    p_fit.add_argument("data", help="CSV, Parquet, JSON or JSONL file with one row per run")
    p_fit.add_argument("--law", default="chinchilla", help="law name (default: chinchilla)")
    p_fit.add_argument("--N", default="N", help="column with parameter counts (default: N)")
    p_fit.add_argument("--D", default="D", help="column with training tokens (default: D)")
    p_fit.add_argument("--x", default=None, help="input column for one-variable laws (law 'power')")
    p_fit.add_argument("--loss", default="loss", help="column with losses (default: loss)")
    p_fit.add_argument("--starts", default="screen", choices=["screen", "grid"], help="start strategy")
    p_fit.add_argument("--bootstrap", type=int, default=0, metavar="B", help="bootstrap with B resamples")
    p_fit.add_argument("--level", type=float, default=0.95, help="interval level for --bootstrap (default 0.95)")
    p_fit.add_argument("--seed", type=int, default=0, help="PRNG seed for --bootstrap (default 0)")
    p_fit.add_argument("--json", action="store_true", help="print one JSON document instead of a report")

    p_iso = sub.add_parser("isoflop", help="Approach 2: a parabola per isoFLOP budget, then N* ~ C^a, D* ~ C^b")
    p_iso.add_argument("data", help="CSV, Parquet, JSON or JSONL file with one row per (budget, model) run")
    p_iso.add_argument("--flops", default="flops", help="column with the compute budget C (default: flops)")
    p_iso.add_argument("--N", default="params", help="column with parameter counts (default: params)")
    p_iso.add_argument("--loss", default="loss", help="column with losses (default: loss)")
    p_iso.add_argument("--by", nargs="+", default=None, metavar="COL", help="one result per group of these columns")
    p_iso.add_argument("--window", type=float, default=None, help="keep runs within this distance in ln N of the best")
    p_iso.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="resamples (default 1000; 0: none)")
    p_iso.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p_iso.add_argument("--seed", type=int, default=0, help="PRNG seed for the bootstrap (default 0)")
    p_iso.add_argument("--json", action="store_true", help="print one JSON document instead of a table")

    p_ex = sub.add_parser("example", help="run a bundled example")
    p_ex.add_argument("name", choices=["chinchilla"], help="which example")
    p_ex.add_argument("--json", action="store_true", help="print one JSON document instead of a report")
    return parser


def _bootstrap_dict(boot, level: float) -> dict:
    table = boot.ci(level)
    return {
        "n": boot.n,
        "level": level,
        "seed": boot.seed,
        "failed_fraction": boot.failed_fraction,
        "ci": {name: [float(row.lower), float(row.upper)] for name, row in table.iterrows()},
        "se": {name: float(row.se) for name, row in table.iterrows()},
    }


def _emit(result, as_json: bool, extra: str = "", boot=None, level: float = 0.95) -> None:
    if as_json:
        doc = result.to_dict()
        if boot is not None:
            doc["bootstrap"] = _bootstrap_dict(boot, level)
        print(json.dumps(doc))
    else:
        print(result)
        if boot is not None:
            table = boot.ci(level)[["lower", "upper", "se"]]
            print(
                f"  bootstrap: {boot.n} resamples (seed {boot.seed}), {level:.0%} percentile intervals; "
                f"{boot.n_failed} failed to converge and are excluded"
            )
            print("\n".join("    " + line for line in table.to_string().splitlines()))
        if extra:
            print(extra)


def _isoflop(args: argparse.Namespace) -> int:
    import warnings

    from .isoflop import isoflop, isoflop_to_dicts

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        table = isoflop(
            args.data, flops=args.flops, N=args.N, loss=args.loss, by=args.by, window=args.window,
            n_boot=args.bootstrap, level=args.level, seed=args.seed,
        )  # fmt: skip
        took = time.perf_counter() - start
    for w in caught:  # the data's problems, said once each, without a Python source line
        print(f"jaxscale: warning: {w.message}", file=sys.stderr)
    if args.json:
        docs = isoflop_to_dicts(table)
        print(json.dumps(docs if args.by else docs[0]))
        return 0
    shown = table.drop(columns=["budgets", "k_N", "k_D"])
    print(f"isoFLOP profiles (Approach 2): N* ~ C^a, D* ~ C^b; {args.bootstrap} resamples, {args.level:.0%} intervals")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"  ({took:.2f} s including compilation)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "isoflop":
            return _isoflop(args)
        if args.command == "example":
            start = time.perf_counter()
            result = fit(datasets.chinchilla(), law="chinchilla")
            took = time.perf_counter() - start
            _emit(result, args.json, f"  ({took:.2f} s including compilation)\n  data: {datasets.CITATION}")
        else:
            from .io import read_runs

            cols = {"x": args.x} if args.x else {"N": args.N, "D": args.D}
            runs = read_runs(args.data, loss=args.loss, **cols)
            boot = None
            if args.bootstrap:
                boot = bootstrap(runs, law=args.law, n=args.bootstrap, seed=args.seed, starts=args.starts)
                result = boot.point
            else:
                result = fit(runs, law=args.law, starts=args.starts)
            _emit(result, args.json, boot=boot, level=args.level)
    except (ValueError, FileNotFoundError) as err:
        print(f"jaxscale: error: {err}", file=sys.stderr)
        return 2
    return 0 if result.converged else 1


if __name__ == "__main__":
    sys.exit(main())
