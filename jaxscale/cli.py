"""The ``jaxscale`` command line.

Examples::

    jaxscale example chinchilla
    jaxscale fit runs.csv --N params --D tokens --loss loss --json
    jaxscale fit runs.csv --by dataset --bootstrap 1000 --out fits.csv
    jaxscale frontier runs.csv --compute 1e21 1e22 1e23 --bootstrap 1000
    jaxscale validate runs.csv --train "N < 1e9"
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Sequence

from . import _cli_output as out
from . import datasets
from ._progress import progress_bar
from .bootstrap import bootstrap
from .fit import fit

EPILOG = """examples:
  jaxscale example chinchilla                     fit Chinchilla's law to the bundled points
  jaxscale fit runs.csv --N params --D tokens     fit your own runs
  jaxscale fit runs.csv --json                    one JSON document on stdout
  jaxscale fit runs.csv --bootstrap 4000 --level 0.9   percentile intervals from 4,000 resamples
  jaxscale fit runs.csv --by dataset --out fits.csv    one fit per dataset, written as a table
  jaxscale frontier runs.csv --compute 1e21 1e23  compute-optimal N, D and loss at those budgets
  jaxscale validate runs.csv --train "N < 1e9"    fit the small models, predict the large ones
  jaxscale isoflop runs.csv --by dataset --json   Approach 2 (isoFLOP parabolas): N* ~ C^a per dataset

errors go to stderr as "jaxscale: error: ..." with exit status 2; a fit that did not converge exits 1;
Ctrl-C stops with "jaxscale: interrupted" and exit status 130. --out and --plot files are written whole
(a temporary file renamed into place), never over the input, and over an existing file only with --force.
"""

FIT_EPILOG = """examples:
  jaxscale fit runs.csv --N params --D tokens --loss loss
  jaxscale fit runs.csv --bootstrap 1000 --level 0.9 --seed 1 --json
  jaxscale fit runs.csv --by dataset --json                one JSON object per dataset, with "group"
  jaxscale fit runs.csv --by dataset model --bootstrap 200 --out fits.csv
  jaxscale fit runs.csv --where "tokens > 1e9" --bootstrap 500 --plot fit.png
  jaxscale fit runs.csv --law power --x compute            a one-input law
"""

FRONTIER_EPILOG = """examples:
  jaxscale frontier runs.csv --compute 1e21 1e22 1e23
  jaxscale frontier runs.csv --compute 1e21 1e23 --bootstrap 1000 --level 0.9 --json
  jaxscale frontier runs.csv --compute 1e20 1e21 1e22 1e23 1e24 --out frontier.csv --plot frontier.png
"""

VALIDATE_EPILOG = """examples:
  jaxscale validate runs.csv --train "N < 1e9"                 fit below 1B parameters, predict the rest
  jaxscale validate runs.csv --train "N * D * 6 < 1e21" --json
  jaxscale validate runs.csv --N params --D tokens --train "params < 1e9" --out errors.csv

--train is a pandas query over the file's columns (names as in the file, e.g. params, not N).
"""

ISOFLOP_EPILOG = """examples:
  jaxscale isoflop runs.csv --flops C --N params --loss loss
  jaxscale isoflop runs.csv --by dataset --bootstrap 2000 --json
"""


def _sub(sub, name: str, help: str, epilog: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name, help=help, description=help, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def _data_args(p: argparse.ArgumentParser, *, where: bool = True) -> None:
    p.add_argument("data", help="CSV, Parquet, JSON or JSONL file with one row per run")
    p.add_argument("--law", default="chinchilla", help="law name (default: chinchilla)")
    p.add_argument("--N", default="N", help="column with parameter counts (default: N)")
    p.add_argument("--D", default="D", help="column with training tokens (default: D)")
    p.add_argument("--x", default=None, help="input column for one-variable laws (law 'power')")
    p.add_argument("--U", default=None, help="column with unique tokens (law data_constrained)")
    p.add_argument("--M", default=None, help="column with tokens per parameter (law overtraining; else D / N)")
    p.add_argument("--loss", default="loss", help="column with losses in nats (default: loss)")
    p.add_argument("--starts", default="screen", choices=["screen", "grid"], help="start strategy")
    p.add_argument(
        "--fix",
        nargs="+",
        type=_assignment,
        default=[],
        metavar="NAME=VALUE",
        help="hold parameters fixed, e.g. E=1.69",
    )
    if where:
        p.add_argument("--where", default=None, metavar="QUERY", help='use only these rows, e.g. "tokens > 1e9"')


def _assignment(text: str) -> tuple[str, float]:
    name, eq, value = text.partition("=")
    try:
        if not (eq and name.strip()):
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with a number, e.g. E=1.69; got {text!r}") from None


def _boot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", type=int, default=0, metavar="B", help="bootstrap with B resamples")
    p.add_argument("--level", type=float, default=0.95, help="interval level for --bootstrap (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed for --bootstrap (default 0)")


def _out_args(p: argparse.ArgumentParser, *, plot: bool) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a report")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the result: FILE.json or FILE.csv")
    if plot:
        p.add_argument("--plot", default=None, metavar="FILE.png", help="draw a figure (.png, .pdf or .svg)")
    files = "--out/--plot" if plot else "--out"
    p.add_argument(
        "--force",
        action="store_true",
        help=f"replace {files} files that exist (without it they are refused; the input file never is)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxscale",
        description="Fit neural scaling laws fast, on JAX.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_fit = _sub(sub, "fit", "fit a law to runs in a CSV/Parquet/JSON file", FIT_EPILOG)
    _data_args(p_fit)
    p_fit.add_argument("--by", nargs="+", default=None, metavar="COL", help="one fit per group of these columns")
    p_fit.add_argument(
        "--small",
        default="error",
        choices=["error", "report"],
        help="with --by, a group with too few runs stops the command (error) or is listed unfitted (report)",
    )
    _boot_args(p_fit)
    _out_args(p_fit, plot=True)

    p_front = _sub(sub, "frontier", "compute-optimal N, D and loss at given budgets (C = 6ND)", FRONTIER_EPILOG)
    _data_args(p_front)
    p_front.add_argument("--compute", type=float, nargs="+", required=True, metavar="C", help="budgets in FLOPs")
    _boot_args(p_front)
    _out_args(p_front, plot=True)

    p_val = _sub(sub, "validate", "fit on some runs, report the errors predicting the others", VALIDATE_EPILOG)
    _data_args(p_val, where=False)
    p_val.add_argument("--train", required=True, metavar="QUERY", help='rows to fit on, e.g. "N < 1e9"')
    _out_args(p_val, plot=False)

    p_iso = _sub(sub, "isoflop", "Approach 2: a parabola per isoFLOP budget, then N* ~ C^a, D* ~ C^b", ISOFLOP_EPILOG)
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

    p_ex = _sub(sub, "example", "run a bundled example", "examples:\n  jaxscale example chinchilla --json\n")
    p_ex.add_argument("name", choices=["chinchilla"], help="which example")
    p_ex.add_argument("--json", action="store_true", help="print one JSON document instead of a report")
    return parser


def _columns(args: argparse.Namespace) -> dict[str, str]:
    if args.x:
        return {"x": args.x}
    extra = {k: getattr(args, k) for k in ("U", "M") if getattr(args, k, None)}
    return {"N": args.N, **({} if "M" in extra else {"D": args.D}), **extra}


def _fixed(args: argparse.Namespace) -> dict[str, float] | None:
    return dict(args.fix) or None


def _targets(args: argparse.Namespace, *options: str) -> list:
    """Check the output paths before any work: extension, folder, not the input, not existing without --force."""
    formats = {"out": out.OUT_FORMATS, "plot": out.PLOT_FORMATS}
    return [
        out.check_path(getattr(args, o, None), formats[o], f"--{o}", force=args.force, inputs=[args.data])
        for o in options
    ]


def _read(args: argparse.Namespace):
    from .io import read_runs

    return read_runs(args.data, loss=args.loss, where=getattr(args, "where", None), **_columns(args))


def _check_bootstrap(args: argparse.Namespace) -> None:
    if args.bootstrap < 0 or args.bootstrap == 1:
        raise ValueError(f"--bootstrap takes 0 (none) or at least 2 resamples; got {args.bootstrap}")
    if not 0 < args.level < 1:
        raise ValueError(f"--level must be between 0 and 1, e.g. 0.95; got {args.level}")


def _fit_or_bootstrap(args: argparse.Namespace, runs):
    """``(fit result, bootstrap result or None)``; the bootstrap's bar shows only on a terminal."""
    if args.bootstrap:
        boot = bootstrap(runs, law=args.law, n=args.bootstrap, seed=args.seed, starts=args.starts, fixed=_fixed(args))
        return boot.point, boot
    return fit(runs, law=args.law, starts=args.starts, fixed=_fixed(args)), None


def _report(result, boot=None, level: float = 0.95) -> str:
    lines = [cli_words(str(result))]
    if boot is not None:
        ci = boot.ci(level)
        table = ci[["lower", "upper", "se"] + (["warning"] if (ci["warning"] != "").any() else [])]
        lines.append(
            f"  bootstrap: {boot.n} resamples (seed {boot.seed}), {level:.0%} percentile intervals; "
            f"{boot.n_failed} failed (did not converge, or unidentified: {boot.n_unidentified}) and are excluded"
        )
        lines.extend("    " + line for line in table.to_string().splitlines())
    return "\n".join(lines)


def _fit(args: argparse.Namespace) -> int:
    _check_bootstrap(args)
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
    from .groups import fit_groups
    from .laws import get_law

    law = get_law(args.law)
    label = "fit + bootstrap" if args.bootstrap else "fit"
    table = fit_groups(
        args.data, args.by, law, loss=args.loss, starts=args.starts, bootstrap=args.bootstrap, level=args.level,
        seed=args.seed, where=args.where, fixed=_fixed(args), small=args.small, progress=progress_bar(label, "groups"),
        **_columns(args),
    )  # fmt: skip
    options = {"bootstrap": args.bootstrap, "level": args.level}
    docs = out.group_docs(table, args.by, law, seed=args.seed, **options)
    print(out.dumps(docs) if args.json else out.groups_text(table, args.by, law, **options))
    out.write_out(out_path, docs, table, force=args.force)
    return 0 if table["converged"].all() else 1


def _frontier(args: argparse.Namespace) -> int:
    from .frontier import frontier

    _check_bootstrap(args)
    out_path, plot_path = _targets(args, "out", "plot")
    if plot_path is not None:
        out.check_plotting()
    result, boot = _fit_or_bootstrap(args, _read(args))
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

    from .io import read_runs
    from .validate import validate

    (out_path,) = _targets(args, "out")
    runs = read_runs(args.data, loss=args.loss, **_columns(args))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same rows again: what they warn about was said once above
        train = read_runs(args.data, loss=args.loss, where=args.train, **_columns(args))
    mask = np.isin(runs.rows, train.rows)
    table = validate(runs, args.law, train=mask, starts=args.starts, fixed=_fixed(args))
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

    start = time.perf_counter()
    table = isoflop(
        args.data, flops=args.flops, N=args.N, loss=args.loss, by=args.by, window=args.window,
        n_boot=args.bootstrap, level=args.level, seed=args.seed,
    )  # fmt: skip
    took = time.perf_counter() - start
    if args.json:
        docs = isoflop_to_dicts(table)
        print(out.dumps(docs if args.by else docs[0]))
        return 0
    shown = table.drop(columns=["budgets", "k_N", "k_D"])
    print(f"isoFLOP profiles (Approach 2): N* ~ C^a, D* ~ C^b; {args.bootstrap} resamples, {args.level:.0%} intervals")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"  ({took:.2f} s including compilation)")
    return 0


def _example(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    result = fit(datasets.chinchilla(), law="chinchilla")
    took = time.perf_counter() - start
    if args.json:
        print(out.dumps(out.fit_doc(result)))
    else:
        print(f"{result}\n  ({took:.2f} s including compilation)\n  data: {datasets.CITATION}")
    return 0 if result.converged else 1


COMMANDS = {"fit": _fit, "frontier": _frontier, "validate": _validate, "isoflop": _isoflop, "example": _example}


# The library's messages suggest Python keywords; the command line says its own flags instead.
_CLI_WORDS = [
    (r"read_runs\(\.\.\., ((?:\w+=\.\.\.(?:, )?)+)\)", lambda m: _flags(re.findall(r"(\w+)=", m.group(1)))),
    (r"map them in read_runs, e.g. read_runs\(df, (\w+)='your_column', \.\.\.\)", r"name the column, e.g. --\1 COL"),
    (r"read_runs\(\.\.\., group='col' or \['col', \.\.\.\]\)", "--by COL [COL ...]"),
    (r"read_runs\(\.\.\., (\w+)='[^']*'\)", r"--\1 COL"),
    (r"isoflop\(\.\.\., flops=\.\.\., N=\.\.\., loss=\.\.\., by=\.\.\., weights=\.\.\.\)", "--flops --N --loss --by"),
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """The data's problems, said once each, without a Python source line."""
    print(f"jaxscale: warning: {cli_words(str(message))}", file=sys.stderr)


def _exit_on_interrupt() -> None:
    """Ctrl-C ends the process at once with one line and status 130, from a watcher thread.

    A KeyboardInterrupt raised inside JAX (its compiler, its callbacks) prints pages of traceback,
    is sometimes swallowed, and can abort the process. So the Python handler does nothing, and the
    signal's wake-up byte reaches a thread that removes any temporary output file, says
    "jaxscale: interrupted" and calls os._exit(130): no output file is ever half-written.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch() -> None:
        while signal.SIGINT not in os.read(read_fd, 64):
            pass
        out.discard_pending()
        os.write(2, ("\n" if sys.stderr.isatty() else "").encode() + b"jaxscale: interrupted\n")
        os._exit(130)

    threading.Thread(target=watch, name="jaxscale-interrupt", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line. ``main()`` (the installed command) owns the process: Ctrl-C exits it with
    status 130. ``main(argv)`` from Python returns 130 on KeyboardInterrupt instead."""
    if argv is None:
        _exit_on_interrupt()  # as early as this module allows: the jaxscale package imported JAX already
    try:
        args = _parser().parse_args(argv)
        select = "--train" if args.command == "validate" else "--where"
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            # The data's warnings are shown, never raised, even where the caller's filters (-W error) would raise.
            warnings.filterwarnings("default", module=r"jaxscale(\.|$)")
            try:
                return COMMANDS[args.command](args)
            except BrokenPipeError:  # e.g. piped into head: stop quietly, as other command-line tools do
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 1
            except (ValueError, OSError) as err:
                print(f"jaxscale: error: {cli_words(str(err), select)}", file=sys.stderr)
                return 2
    except KeyboardInterrupt:
        print("jaxscale: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
