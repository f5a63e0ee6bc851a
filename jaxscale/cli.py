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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
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
