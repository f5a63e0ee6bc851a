"""Issue 25's benchmark: ``posterior(by=...)`` on many synthetic groups in one compiled call
against the sampler run group by group in a Python loop, in the same process.

Each group: 20 runs of a Chinchilla law whose parameters vary by group, 1% log-normal noise. Both
paths fit each group first (the chains start at its optimum) and run ``chains`` chains of
``warmup`` + ``draws`` NUTS steps. The loop reuses the compiled sampler (js.posterior keeps it per
configuration), so after its first group it pays no compilation; it runs ``loop`` groups and is
extrapolated to all of them. Speed is compared as time per effective sample: wall time over the
sum, across groups, of each group's smallest bulk ESS (over the parameters and sigma).

Usage: python benchmarks/posterior_groups.py [groups=1000] [loop=8] [warmup=150] [draws=150]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jaxscale as js  # noqa: E402

RUNS, CHAINS = 20, 4


def archive(groups: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), RUNS)
    e, a, b = rng.uniform(1.6, 2.0, groups)[g], rng.uniform(300, 600, groups)[g], rng.uniform(1000, 3000, groups)[g]
    alpha, beta = rng.uniform(0.3, 0.38, groups)[g], rng.uniform(0.3, 0.4, groups)[g]
    n = np.exp(rng.uniform(np.log(5e7), np.log(5e10), g.size))
    d = np.exp(rng.uniform(np.log(1e9), np.log(1e12), g.size))
    loss = (e + a / n**alpha + b / d**beta) * np.exp(0.01 * rng.normal(size=g.size))
    return pd.DataFrame({"group": g, "N": n, "D": d, "loss": loss})


def least_ess(post) -> float:
    d = post.diagnostics
    return min(d["min_ess_bulk"], d["min_ess_tail"])


def main(groups: int, loop: int, warmup: int, draws: int) -> None:
    df = archive(groups)
    options = dict(chains=CHAINS, warmup=warmup, draws=draws, seed=0)
    print(f"{groups} groups x {RUNS} runs, {CHAINS} chains x ({warmup} warmup + {draws} draws); "
          f"{len(jax.local_devices())} device(s), {jax.devices()[0].device_kind}", flush=True)  # fmt: skip

    start = time.perf_counter()
    posts = js.posterior(df, by="group", **options)
    batched = time.perf_counter() - start
    ess = sum(least_ess(p) for p in posts.values())
    ok = sum(p.status == "ok" for p in posts.values())
    depth = np.mean([p.diagnostics["treedepth_fraction"] for p in posts.values()])
    print(f"by=, one call (compilation included): {batched:.1f} s, {batched / groups * 1e3:.1f} ms per group; "
          f"sum of least ESS {ess:.0f}: {batched / ess * 1e3:.2f} ms per effective sample; "
          f"{ok} of {groups} groups pass every diagnostic; {depth:.1%} of draws at the tree-depth limit",
          flush=True)  # fmt: skip

    times, loop_ess = [], 0.0
    for g in range(loop):
        start = time.perf_counter()
        post = js.posterior(df[df["group"] == g], **options)
        times.append(time.perf_counter() - start)
        loop_ess += least_ess(post)
    warm = float(np.mean(times[1:]))
    per_ess = warm * loop / loop_ess  # the warm loop's time per effective sample
    print(f"loop of {loop} groups: first (compiles) {times[0]:.1f} s, then {warm:.2f} s per group; "
          f"{per_ess * 1e3:.2f} ms per effective sample; {groups} groups extrapolated: "
          f"{times[0] + warm * (groups - 1):.0f} s", flush=True)  # fmt: skip
    print(
        f"by= against the loop: {per_ess / (batched / ess):.1f}x per effective sample, "
        f"{(times[0] + warm * (groups - 1)) / batched:.1f}x in wall time for {groups} groups"
    )


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args or [1000, 8, 150, 150]))
