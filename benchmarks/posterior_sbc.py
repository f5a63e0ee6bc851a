"""Simulation-based calibration of js.posterior (Talts et al. 2018) on synthetic Chinchilla data.

Each repetition draws the parameters and the noise scale from a prior, simulates 40 runs
(N, D log-uniform, log-normal noise), and samples the posterior under that same prior and the
Gaussian likelihood. All repetitions run as groups of one ``posterior(..., by=...)`` call.
Calibrated inference makes the rank of the true value among (thinned) posterior draws uniform
and puts the truth inside a 90% credible interval 90% of the time.

Prints, per parameter: a chi-squared test of the rank histogram (20 bins; uniform at 1% if
p > 0.01), the 90% interval's coverage (issue 25 asks 90 ± 3%), and the repetitions whose
chains failed their diagnostics (kept: dropping them would bias the check).

Usage: python benchmarks/posterior_sbc.py [repetitions=500] [draws=500] [chunk=50]
(repetitions run in chunks of ``chunk`` groups; the running summary prints after each chunk)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from scipy import stats

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jaxscale as js  # noqa: E402
from jaxscale import priors  # noqa: E402

N_RUNS, BINS, THIN_TO = 40, 20, 100
PRIOR = {
    "E": priors.lognormal(1.8, 0.1),
    "A": priors.lognormal(400.0, 0.3),
    "B": priors.lognormal(2000.0, 0.3),
    "alpha": priors.normal(0.34, 0.03),
    "beta": priors.normal(0.37, 0.03),
    "sigma": priors.lognormal(0.01, 0.3),
}


def draw(term: priors.Term, rng, n: int) -> np.ndarray:
    if term.kind == priors.LOGNORMAL:
        return np.exp(rng.normal(term.a, term.b, n))
    return rng.normal(term.a, term.b, n)


def simulate(reps: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    truth = pd.DataFrame({name: draw(term, rng, reps) for name, term in PRIOR.items()})
    g = np.repeat(np.arange(reps), N_RUNS)
    n = np.exp(rng.uniform(np.log(5e7), np.log(5e10), g.size))
    d = np.exp(rng.uniform(np.log(1e9), np.log(1e12), g.size))
    col = {name: truth[name].to_numpy()[g] for name in PRIOR}
    loss = col["E"] + col["A"] / n ** col["alpha"] + col["B"] / d ** col["beta"]
    loss = loss * np.exp(col["sigma"] * rng.normal(size=g.size))
    return pd.DataFrame({"rep": g, "N": n, "D": d, "loss": loss}), truth


def summarise(ranks: dict, covered: dict, done: int, draws: int) -> list[str]:
    """One line per parameter: the rank histogram's chi-squared test and the 90% coverage."""
    top = 4 * len(range(0, draws, max(1, 4 * draws // THIN_TO)))
    lines = []
    for name in PRIOR:
        hist, _ = np.histogram(ranks[name], bins=BINS, range=(0, top + 1))
        p = stats.chisquare(hist).pvalue
        lines.append(f"  {name:>6}: rank chi2 p = {p:.3f} ({'uniform' if p > 0.01 else 'NOT uniform'} at 1%), "
                     f"90% coverage {covered[name] / done:.3f}")  # fmt: skip
    return lines


def main(reps: int, draws: int, chunk: int = 50) -> None:
    """Runs the repetitions in chunks of ``chunk`` groups, printing the running summary after each."""
    df, truth = simulate(reps)
    names = list(PRIOR)
    ranks = {n: [] for n in names}
    covered = {n: 0 for n in names}
    failed, took = 0, 0.0
    for lo in range(0, reps, chunk):
        part = df[(df["rep"] >= lo) & (df["rep"] < lo + chunk)]
        start = time.perf_counter()
        posts = js.posterior(part, by="rep", prior=PRIOR, chains=4, draws=draws, warmup=draws, seed=1 + lo)
        took += time.perf_counter() - start
        for r in range(lo, min(lo + chunk, reps)):
            post = posts[(r,)]
            failed += post.status != "ok"
            samples = post.samples
            for name in names:
                s = samples[name].reshape(4, draws)[:, :: max(1, 4 * draws // THIN_TO)].reshape(-1)
                ranks[name].append(int(np.sum(s < truth.loc[r, name])))
                q5, q95 = np.percentile(samples[name], [5, 95])
                covered[name] += q5 < truth.loc[r, name] < q95
        done = min(lo + chunk, reps)
        print(f"{done} of {reps} repetitions x 4 chains x {draws} draws (+{draws} warmup), {N_RUNS} runs each: "
              f"{took:.1f} s; chains failing a diagnostic: {failed}", flush=True)  # fmt: skip
        print("\n".join(summarise(ranks, covered, done, draws)), flush=True)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args or [500, 500]))
