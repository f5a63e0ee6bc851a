"""The ``jaxscale`` command line.

Examples::

    jaxscale example chinchilla
    jaxscale fit runs.csv --N params --D tokens --loss loss --json
    jaxscale fit runs.csv --by dataset --resamples 1000 --out fits.csv
    jaxscale frontier runs.csv --compute 1e21 1e22 1e23 --resamples 1000
    jaxscale validate runs.csv --train "N < 1e9"
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

EPILOG = """examples:
  jaxscale example chinchilla                     fit Chinchilla's law to the bundled points
  jaxscale fit runs.csv --N params --D tokens     fit your own runs
  jaxscale fit runs.csv --json                    one JSON document on stdout
  jaxscale fit runs.csv --resamples 4000 --level 0.9   percentile intervals from 4,000 resamples
  jaxscale fit runs.csv --by dataset --out fits.csv    one fit per dataset, written as a table
  jaxscale frontier runs.csv --compute 1e21 1e23  compute-optimal N, D and loss at those budgets
  jaxscale validate runs.csv --train "N < 1e9"    fit the small models, predict the large ones
  jaxscale isoflop runs.csv --by dataset --json   Approach 2 (isoFLOP parabolas): N* ~ C^a per dataset
  jaxscale envelope curves.csv --run run          Approach 1 (envelope of training curves)

errors go to stderr as "jaxscale: error: ..." with exit status 2; a fit that did not converge exits 1;
Ctrl-C stops with "jaxscale: interrupted" and exit status 130. --out and --plot files are written whole
(a temporary file renamed into place), never over the input, and over an existing file only with --force.
"""

FIT_EPILOG = """examples:
  jaxscale fit runs.csv --N params --D tokens --loss loss
  jaxscale fit runs.csv --resamples 1000 --level 0.9 --seed 1 --json
  jaxscale fit runs.csv --by dataset --json                one JSON object per dataset, with "group"
  jaxscale fit runs.csv --by dataset model --resamples 200 --out fits.csv
  jaxscale fit runs.csv --where "tokens > 1e9" --resamples 500 --plot fit.png
  jaxscale fit runs.csv --law power --x compute            a one-input law
  jaxscale fit runs.csv --law my_laws.py:my_law            your own law: a jaxscale.Law or a function returning one
  jaxscale fit li.csv --law chinchilla_tied --no-duplicate-check   keep rows that repeat (a published fit's own)
"""

FRONTIER_EPILOG = """examples:
  jaxscale frontier runs.csv --compute 1e21 1e22 1e23
  jaxscale frontier runs.csv --compute 1e21 1e23 --resamples 1000 --level 0.9 --json
  jaxscale frontier runs.csv --compute 1e20 1e21 1e22 1e23 1e24 --out frontier.csv --plot frontier.png
"""

VALIDATE_EPILOG = """examples:
  jaxscale validate runs.csv --train "N < 1e9"                 fit below 1B parameters, predict the rest
  jaxscale validate runs.csv --train "N * D * 6 < 1e21" --json
  jaxscale validate runs.csv --N params --D tokens --train "params < 1e9" --out errors.csv

--train is a pandas query over the file's columns (names as in the file, e.g. params, not N).
"""

ROLLOUT_EPILOG = """examples:
  jaxscale rollout runs.csv --rung N --rungs-per-decade 4 --resamples 100 --plot rollout.png
  jaxscale rollout runs.csv --rung C --min-rungs 3 --json
"""

MULTIPLIER_EPILOG = """examples:
  jaxscale multiplier baseline.csv variant.csv --compute 1e21 1e23 --resamples 500
  (> 1: the variant reaches the baseline's compute-optimal loss with that many times less compute)
"""

POSTERIOR_EPILOG = """examples:
  jaxscale posterior runs.csv --N params --D tokens --chains 4 --draws 1000
  jaxscale posterior runs.csv --likelihood student_t --compute 1e24 --json
  jaxscale posterior runs.csv --by dataset --draws 500 --out posteriors.csv
  (exit status 1 when the chains fail their diagnostics: R-hat, ESS, divergences, tree depth)
"""

ENVELOPE_EPILOG = """examples:
  jaxscale envelope curves.csv --run run --N params --tokens tokens --loss loss
  jaxscale envelope li2025.csv --run model total_steps peak_lr sweep --N N --tokens D --json
"""

ISOFLOP_EPILOG = """examples:
  jaxscale isoflop runs.csv --flops C --N params --loss loss
  jaxscale isoflop runs.csv --by dataset --resamples 2000 --json
  jaxscale isoflop runs.csv --N params --D tokens --budget-rtol 0.2     fit D* on the tokens too; bin logged compute
  jaxscale isoflop llama3.csv --D training_tokens --compute 3.8e25      D* fitted, N* = C/(6 D*); extrapolated
  Porian et al.'s procedure, on their RefinedWeb runs:
  jaxscale isoflop porian.csv --where "dataset == 'rw'" --by dataset experiment --N params --D tokens \\
      --method akima --noise 0.002 --observation median --weighted
"""


def _sub(sub, name: str, help: str, epilog: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name, help=help, description=help, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def _data_args(p: argparse.ArgumentParser, *, where: bool = True, objective: bool = True, starts: bool = True) -> None:
    p.add_argument("data", help="CSV, Parquet, JSON or JSONL file with one row per run")
    p.add_argument(
        "--law", default="chinchilla",
        help="law name (default: chinchilla), or your own: module:function or path/to/file.py:function "
        "(a jaxscale.Law, or a function of no arguments returning one)",
    )  # fmt: skip
    p.add_argument("--N", default="N", help="column with parameter counts (default: N)")
    p.add_argument("--D", default="D", help="column with training tokens (default: D)")
    p.add_argument("--x", default=None, help="input column for one-variable laws (law 'power')")
    p.add_argument("--U", default=None, help="column with unique tokens (law data_constrained)")
    p.add_argument("--M", default=None, help="column with tokens per parameter (law overtraining; else D / N)")
    p.add_argument("--loss", default="loss", help="column with losses in nats (default: loss)")
    if starts:
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
    p.add_argument(
        "--no-duplicate-check", dest="duplicate_check", action="store_false",
        help="keep rows that repeat another in every column used (refused by default, as a likely copy-paste slip)",
    )  # fmt: skip
    if objective:
        _objective_args(p)


def _weights_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights", default=None, metavar="COL",
        help="column with a weight per run (default 1 each; 0 leaves a run out); multiplies resamples' counts",
    )  # fmt: skip


def _objective_args(p: argparse.ArgumentParser) -> None:
    """The fit's objective (jaxscale.objective)."""
    p.add_argument("--loss-fn", default="huber", choices=["huber", "squared"], help="loss of residuals (default huber)")
    p.add_argument("--delta", type=float, default=1e-3, help="Huber threshold on residuals (default 1e-3)")
    p.add_argument(
        "--scale", default="log", choices=["log", "natural"], help="residuals of log loss (default) or of the loss"
    )
    p.add_argument("--reduction", default="sum", choices=["sum", "mean"], help="objective reported as a sum or mean")
    p.add_argument(
        "--overestimate-penalty", type=float, default=1.0, metavar="X",
        help="loss factor where the law over-predicts (default 1; > 1 fits the lower envelope)",
    )  # fmt: skip


def _assignment(text: str) -> tuple[str, float]:
    name, eq, value = text.partition("=")
    try:
        if not (eq and name.strip()):
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with a number, e.g. E=1.69; got {text!r}") from None


class _Renamed(argparse.Action):
    """An old spelling of a flag: stores into the new flag's value and says the new name on stderr."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        new = "--" + self.dest.replace("_", "-")
        print(f"jaxscale: warning: {option_string} is now {new}; the old name will be removed", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _resample_args(p: argparse.ArgumentParser, *, default: int, help: str) -> None:
    p.add_argument("--resamples", type=int, default=default, metavar="B", help=help)
    p.add_argument("--bootstrap", type=int, dest="resamples", action=_Renamed, help=argparse.SUPPRESS)


def _boot_args(p: argparse.ArgumentParser) -> None:
    _resample_args(p, default=0, help="bootstrap with B resamples (default 0: none)")
    p.add_argument("--level", type=float, default=0.95, help="interval level for --resamples (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed for --resamples (default 0)")


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
    _weights_arg(p_fit)
    _boot_args(p_fit)
    _out_args(p_fit, plot=True)

    p_front = _sub(sub, "frontier", "compute-optimal N, D and loss at given budgets (C = 6ND)", FRONTIER_EPILOG)
    _data_args(p_front)
    p_front.add_argument("--compute", type=float, nargs="+", required=True, metavar="C", help="budgets in FLOPs")
    _weights_arg(p_front)
    _boot_args(p_front)
    _out_args(p_front, plot=True)

    p_val = _sub(sub, "validate", "fit on some runs, report the errors predicting the others", VALIDATE_EPILOG)
    _data_args(p_val)
    p_val.add_argument("--train", required=True, metavar="QUERY", help='rows to fit on, e.g. "N < 1e9"')
    p_val.add_argument("--holdout", default=None, metavar="QUERY", help="rows to score (default: all not in --train)")
    p_val.add_argument("--by", nargs="+", default=None, metavar="COL", help="validate each group of these columns")
    _out_args(p_val, plot=False)

    p_iso = _sub(sub, "isoflop", "Approach 2: a parabola per isoFLOP budget, then N* ~ C^a, D* ~ C^b", ISOFLOP_EPILOG)
    p_iso.add_argument("data", help="CSV, Parquet, JSON or JSONL file with one row per (budget, model) run")
    p_iso.add_argument("--flops", default="flops", help="column with the compute budget C (default: flops)")
    p_iso.add_argument("--N", default=None, help="column with parameter counts (default: params, unless --D is given)")
    p_iso.add_argument("--D", default=None, help="column with token counts: D* fitted on them (N* too, with --N)")
    p_iso.add_argument("--loss", default="loss", help="column with losses (default: loss)")
    p_iso.add_argument("--by", nargs="+", default=None, metavar="COL", help="one result per group of these columns")
    p_iso.add_argument("--where", default=None, metavar="QUERY", help="rows to use, e.g. \"dataset == 'rw'\"")
    budgets = p_iso.add_mutually_exclusive_group()
    budgets.add_argument(
        "--budget-rtol", type=float, default=None, help="runs within this relative compute share a budget"
    )
    budgets.add_argument("--bins-per-decade", type=float, default=None, help="log-spaced budget bins per factor of 10")
    budgets.add_argument("--budget", default=None, metavar="COL", help="column naming each run's budget")
    p_iso.add_argument("--budget-range", type=float, nargs=2, default=None, metavar=("LO", "HI"), help="budgets fitted")
    p_iso.add_argument("--window", type=float, default=None, help="keep runs within this distance in ln N of the best")
    p_iso.add_argument("--method", choices=["parabola", "akima"], default="parabola", help="each budget's optimum")
    p_iso.add_argument(
        "--noise", type=float, nargs="+", default=None, metavar="X",
        help="seed-noise intervals instead of resampling runs: a standard deviation, or LOSS1 SD1 LOSS2 SD2",
    )  # fmt: skip
    p_iso.add_argument(
        "--observation", choices=["point", "median"], default="point", help="median: of noise replicates"
    )
    p_iso.add_argument("--weighted", action="store_true", help="weight the power laws by 1/spread² (with --noise)")
    p_iso.add_argument("--compute", type=float, nargs="+", default=None, metavar="C", help="extrapolate to budgets")
    _resample_args(p_iso, default=1000, help="bootstrap resamples or noise replicates (default 1000; 0: none)")
    p_iso.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p_iso.add_argument("--seed", type=int, default=0, help="PRNG seed for the bootstrap (default 0)")
    p_iso.add_argument("--json", action="store_true", help="print one JSON document instead of a table")

    p_env = _sub(sub, "envelope", "Approach 1: the lower envelope of training curves, then N* ~ C^a", ENVELOPE_EPILOG)
    p_env.add_argument("data", help="CSV, Parquet, JSON or JSONL file with one row per checkpoint")
    p_env.add_argument(
        "--run", nargs="+", default=["run"], metavar="COL", help="column(s) identifying a run (default: run)"
    )
    p_env.add_argument("--N", default="params", help="column with parameter counts (default: params)")
    p_env.add_argument("--tokens", default="tokens", help="column with tokens seen (default: tokens)")
    p_env.add_argument("--loss", default="loss", help="column with losses (default: loss)")
    p_env.add_argument("--flops", default=None, help="column with each checkpoint's compute (default: 6 N tokens)")
    p_env.add_argument("--by", nargs="+", default=None, metavar="COL", help="one result per group of these columns")
    p_env.add_argument(
        "--budgets", type=int, default=50, metavar="K", help="log-spaced budgets on the grid (default 50)"
    )
    _resample_args(p_env, default=1000, help="cluster-bootstrap resamples over runs (default 1000; 0: none)")
    p_env.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p_env.add_argument("--seed", type=int, default=0, help="PRNG seed for the bootstrap (default 0)")
    p_env.add_argument("--json", action="store_true", help="print one JSON document instead of a table")

    p_roll = _sub(
        sub, "rollout", "fit on the smaller rungs of a ladder, predict the next, for every rung", ROLLOUT_EPILOG
    )
    _data_args(p_roll)
    p_roll.add_argument("--rung", default="N", help="the input whose values are the rungs, or C (6ND) (default N)")
    rung_bins = p_roll.add_mutually_exclusive_group()
    rung_bins.add_argument(
        "--rung-rtol", type=float, default=None, help="values within this relative tolerance share a rung"
    )
    rung_bins.add_argument("--rungs-per-decade", type=float, default=None, help="log-spaced rung bins per factor of 10")
    p_roll.add_argument("--min-rungs", type=int, default=2, help="the fewest rungs a fit uses (default 2)")
    _boot_args(p_roll)
    _out_args(p_roll, plot=True)

    p_mul = _sub(sub, "multiplier", "compute multiplier of a variant's runs over a baseline's", MULTIPLIER_EPILOG)
    _data_args(p_mul)
    p_mul.add_argument("variant", help="the variant's runs (same columns as the baseline's)")
    p_mul.add_argument("--compute", type=float, nargs="+", required=True, metavar="C", help="baseline budgets in FLOPs")
    _boot_args(p_mul)
    p_mul.add_argument("--json", action="store_true", help="print one JSON document instead of a table")

    p_post = _sub(
        sub, "posterior", "Bayesian posterior of a law's parameters (NUTS; jaxscale[bayes])", POSTERIOR_EPILOG
    )
    _data_args(p_post, objective=False, starts=False)
    p_post.add_argument(
        "--likelihood", default="gaussian", choices=["gaussian", "student_t", "huber"],
        help="of the log-loss residuals, with a sampled noise scale (default gaussian)",
    )  # fmt: skip
    for flag, default, what in (("chains", 4, "chains"), ("draws", 1000, "kept draws per chain")):
        p_post.add_argument(f"--{flag}", type=int, default=default, help=f"{what} (default {default})")
    p_post.add_argument("--warmup", type=int, default=1000, help="adaptation steps per chain (default 1000)")
    p_post.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    p_post.add_argument("--level", type=float, default=0.95, help="credible interval level (default 0.95)")
    p_post.add_argument("--compute", type=float, nargs="+", default=None, metavar="C", help="tokens/param at budgets")
    p_post.add_argument(
        "--by", nargs="+", default=None, metavar="COL", help="one posterior per group of these columns, in one call"
    )
    _out_args(p_post, plot=False)

    p_ex = _sub(sub, "example", "run a bundled example", "examples:\n  jaxscale example chinchilla --json\n")
    p_ex.add_argument("name", choices=["chinchilla"], help="which example")
    p_ex.add_argument("--json", action="store_true", help="print one JSON document instead of a report")
    return parser


def _compilation_cache() -> None:
    """Keep compiled kernels on disk, so that the next command with the same shapes skips most
    compilation (JAX's persistent cache): in ``$JAXSCALE_CACHE_DIR``, by default
    ``~/.cache/jaxscale`` (``$XDG_CACHE_HOME`` respected); ``JAXSCALE_CACHE_DIR=`` turns it off.
    JAX's own ``JAX_COMPILATION_CACHE_DIR``, where set, wins."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    default = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jaxscale")
    path = os.environ.get("JAXSCALE_CACHE_DIR", default)
    if path:
        import jax

        jax.config.update("jax_compilation_cache_dir", path)


def _own_jax() -> None:
    """One JAX device per core where that pays, and compiled kernels kept for the next command."""
    from .cpu import use_cpu_cores

    use_cpu_cores()
    _compilation_cache()


def _commands():
    """The commands' module, imported once the arguments parsed (it imports pandas; JAX comes later)."""
    from . import _cli_commands

    return _cli_commands


def _words():
    """The translation of the library's hints into flags (:mod:`jaxscale._cli_words`)."""
    from . import _cli_words

    return _cli_words


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """The data's problems, said once each, without a Python source line."""
    print(f"jaxscale: warning: {_words().cli_words(str(message))}", file=sys.stderr)


def _exit_on_interrupt() -> None:
    """Ctrl-C ends the process at once with one line and status 130, from a watcher thread.

    A KeyboardInterrupt raised inside JAX (its compiler, its callbacks) prints pages of traceback,
    is sometimes swallowed, and can abort the process. So the Python handler does nothing, and the
    signal's wake-up byte reaches a thread that removes any temporary output file, says
    "jaxscale: interrupted" and calls os._exit(130): no output file is ever half-written.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return  # started with Ctrl-C ignored (a script's background job): it stays ignored, as Python leaves it
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch() -> None:
        while signal.SIGINT not in os.read(read_fd, 64):
            pass
        # Not imported yet, or still importing: nothing is being written.
        discard = getattr(sys.modules.get("jaxscale._cli_output"), "discard_pending", None)
        if discard is not None:
            discard()
        os.write(2, ("\n" if sys.stderr.isatty() else "").encode() + b"jaxscale: interrupted\n")
        os._exit(130)

    threading.Thread(target=watch, name="jaxscale-interrupt", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line. ``main()`` (the installed command) owns the process: Ctrl-C exits it with
    status 130. ``main(argv)`` from Python returns 130 on KeyboardInterrupt instead."""
    if argv is None:
        _exit_on_interrupt()  # before anything imports JAX (jaxscale's package imports it only when used)
    try:
        args = _parser().parse_args(argv)
        if argv is None:  # the command owns the process: JAX is set up before its first use, and
            commands = _commands()  # commands that read their input first do so without JAX
            commands.BEFORE_JAX[:] = [_own_jax]
            if args.command not in commands.READS_FIRST:
                commands.jax_ready()
        select = "--train" if args.command == "validate" else "--where"
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            # The data's warnings are shown, never raised, even where the caller's filters (-W error) would raise.
            warnings.filterwarnings("default", module=r"jaxscale(\.|$)")
            try:
                return _commands().COMMANDS[args.command](args)
            except BrokenPipeError:  # e.g. piped into head: stop quietly, as other command-line tools do
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 1
            except (ValueError, OSError) as err:
                print(f"jaxscale: error: {_words().cli_words(str(err), select)}", file=sys.stderr)
                return 2
    except KeyboardInterrupt:
        print("jaxscale: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
