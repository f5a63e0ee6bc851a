"""Synthetic run archives for the fit_groups benchmarks: many groups, each its own Chinchilla law."""

import numpy as np
import pandas as pd


def make_archive(n_groups: int, *, min_points: int = 20, max_points: int = 300, noise: float = 0.01, seed: int = 0):
    """``n_groups`` groups of ``min_points..max_points`` runs (uniform), one Chinchilla law per
    group with its own parameters drawn around Epoch AI's fit (E 1.5-2.2, A 200-1000,
    B 1000-4000, alpha and beta 0.28-0.42), N in 5e7-5e10 and D in 1e9-1e12 (log-uniform),
    and multiplicative noise of ``noise`` on the loss. Returns (DataFrame, truths)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(min_points, max_points + 1, n_groups)
    truths = pd.DataFrame(
        {
            "E": rng.uniform(1.5, 2.2, n_groups),
            "A": np.exp(rng.uniform(np.log(200), np.log(1000), n_groups)),
            "B": np.exp(rng.uniform(np.log(1000), np.log(4000), n_groups)),
            "alpha": rng.uniform(0.28, 0.42, n_groups),
            "beta": rng.uniform(0.28, 0.42, n_groups),
        }
    )
    group = np.repeat(np.arange(n_groups), sizes)
    total = int(sizes.sum())
    n = np.exp(rng.uniform(np.log(5e7), np.log(5e10), total))
    d = np.exp(rng.uniform(np.log(1e9), np.log(1e12), total))
    t = truths.iloc[group]
    loss = (
        t["E"].to_numpy()
        + t["A"].to_numpy() / n ** t["alpha"].to_numpy()
        + t["B"].to_numpy() / d ** t["beta"].to_numpy()
    )
    loss = loss * np.exp(noise * rng.normal(size=total))
    return pd.DataFrame({"group": group, "N": n, "D": d, "loss": loss}), truths
