"""The command line's ``posterior`` command: NUTS chains for a law's parameters (jaxscale[bayes]).

Imported by :mod:`jaxscale._cli_commands` only; the input is read and checked before JAX loads.
"""

from __future__ import annotations

import argparse

from . import _cli_output as out


def posterior_command(args: argparse.Namespace, read, law_of, fixed) -> int:
    """Read the runs (``read``), sample, print the report or ``--json``; exit 1 when the chains'
    diagnostics failed (the status names which)."""
    for flag in ("chains", "draws", "warmup"):
        if getattr(args, flag) < (2 if flag == "chains" else 50):
            raise ValueError(f"--{flag} takes at least {2 if flag == 'chains' else 50}; got {getattr(args, flag)}")
    if not 0 < args.level < 1:
        raise ValueError(f"--level must be between 0 and 1, e.g. 0.95; got {args.level}")
    (out_path,) = [out.check_path(args.out, out.OUT_FORMATS, "--out", force=args.force, inputs=[args.data])]
    runs = read(args)
    law = law_of(args)
    from .posterior import posterior

    post = posterior(
        runs, law, likelihood=args.likelihood, fixed=fixed(args), chains=args.chains, draws=args.draws,
        warmup=args.warmup, seed=args.seed,
    )  # fmt: skip
    table = post.ci(args.level, compute=args.compute or ())
    doc = post.to_dict(args.level, compute=args.compute or ())
    if args.json:
        print(out.dumps(doc))
    else:
        print(post)
        print(f"  {args.level:.0%} equal-tailed credible intervals:")
        print("\n".join("    " + line for line in table.to_string(float_format=lambda v: f"{v:.5g}").splitlines()))
        if not post.converged:
            print("  NOT CONVERGED: the chains are not to be trusted; run longer (--draws, --warmup) or more chains")
    out.write_out(out_path, doc, table.reset_index(names="quantity"), force=args.force)
    return 0 if post.converged else 1
