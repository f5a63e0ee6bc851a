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
    runs = read(args, **({"group": args.by} if args.by else {}))
    law = law_of(args)
    from .posterior import posterior

    post = posterior(
        runs, law, likelihood=args.likelihood, fixed=fixed(args), chains=args.chains, draws=args.draws,
        warmup=args.warmup, seed=args.seed, by=args.by,
    )  # fmt: skip
    if args.by:
        return _groups(args, post, out_path)
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


def _groups(args: argparse.Namespace, posts: dict, out_path) -> int:
    """``--by``: one summary line per group (or one JSON object, with ``group``); ``--out`` CSV
    has the group columns, then each quantity's interval. Exit 1 when any group's chains failed."""
    import pandas as pd

    docs, tables, lines = [], [], []
    for key, post in posts.items():
        group = {col: _plain(v) for col, v in zip(args.by, key if isinstance(key, tuple) else (key,), strict=True)}
        table = post.ci(args.level, compute=args.compute or ())
        docs.append({"group": group, **post.to_dict(args.level, compute=args.compute or ())})
        tables.append(table.reset_index(names="quantity").assign(**group)[[*args.by, "quantity", *table.columns]])
        d, middle = post.diagnostics, table["median"]
        lines.append({**group, "alpha": middle.get("alpha"), "beta": middle.get("beta"),
                      "max_rhat": d["max_rhat"], "min_ess": min(d["min_ess_bulk"], d["min_ess_tail"]),
                      "divergent": d["divergences"], "status": post.status})  # fmt: skip
    failed = sum(not post.converged for post in posts.values())
    if args.json:
        print(out.dumps(docs))
    else:
        print(
            f"posterior of law {args.law!r} per group of {args.by} ({args.likelihood} likelihood): medians, diagnostics"
        )
        summary = pd.DataFrame(lines).dropna(axis=1, how="all")
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
        if failed:
            print(f"  NOT CONVERGED in {failed} of {len(posts)} groups: run longer (--draws, --warmup) or more chains")
    out.write_out(out_path, docs, pd.concat(tables, ignore_index=True), force=args.force)
    return 1 if failed else 0


def _plain(value):
    """A group value as JSON takes it (numpy scalars to Python's)."""
    return value.item() if hasattr(value, "item") else value
