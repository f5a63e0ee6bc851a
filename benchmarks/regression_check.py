"""Do today's results equal another commit's? Save the reference outputs at one commit, compare
them at another: the refactor check of issue 20 ("agree with the current main to 1e-12
relative, or bit for bit").

The outputs: Epoch AI's full-grid fit (every one of the 4,500 starts refined), the default fit,
the 4,000-resample seed-0 bootstrap's draws, objectives and statuses, and fit_groups tables
(300 synthetic groups of benchmarks/groups_data.py, and Gadre et al.'s fixture by training set).

Usage (each run takes a few minutes on 2 cores):
    git worktree add /tmp/ref <commit> && (cd /tmp/ref && python benchmarks/regression_check.py save /tmp/ref.npz)
    python benchmarks/regression_check.py compare /tmp/ref.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's jaxscale and benchmarks

import jaxscale as js  # noqa: E402
from benchmarks.groups_data import make_archive  # noqa: E402

GADRE = Path(__file__).resolve().parents[1] / "tests/fixtures/gadre2024_overtraining/models_losses.csv"
PARAMS = ["E", "A", "B", "alpha", "beta", "objective"]


def outputs() -> dict[str, np.ndarray]:
    """Every compared number, by name (float64 arrays; statuses as their codes or names' hashes)."""
    runs = js.datasets.chinchilla()
    out = {}
    for name, res in (("grid_fit", js.fit(runs, starts="grid")), ("fit", js.fit(runs))):
        out[name] = np.array([*(res.params[p] for p in PARAMS[:-1]), res.objective])
    boot = js.bootstrap(runs, n_resamples=4000, seed=0)
    out |= {"boot_draws": boot.draws, "boot_objective": boot.objective, "boot_status": boot.status.astype(float)}
    archive, _ = make_archive(300, seed=0)
    gadre = pd.read_csv(GADRE)
    tables = {
        "groups_synthetic": js.fit_groups(archive, by="group"),
        "groups_gadre": js.fit_groups(gadre, by="train_dataset", N="params_N", D="tokens_D", loss="loss_c4_val"),
    }
    for name, table in tables.items():
        out[name] = table[PARAMS].to_numpy(dtype=float)
        out[name + "_converged"] = table["converged"].to_numpy(dtype=float)
    return out


def compare(reference: dict[str, np.ndarray], today: dict[str, np.ndarray]) -> bool:
    """Print, per output, whether it is bit-identical or its largest relative difference."""
    ok = True
    for name, ref in reference.items():
        new = today.get(name)
        if new is None or new.shape != ref.shape:
            print(f"{name}: shape {None if new is None else new.shape} against {ref.shape}")
            ok = False
            continue
        if np.array_equal(new, ref, equal_nan=True):
            print(f"{name}: bit-identical")
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.nanmax(np.abs(new - ref) / np.maximum(np.abs(ref), 1e-300))
        ok &= bool(rel <= 1e-12)
        print(f"{name}: max relative difference {rel:.3g}{'' if rel <= 1e-12 else '  > 1e-12'}")
    return ok


if __name__ == "__main__":
    action, path = sys.argv[1], sys.argv[2]
    if action == "save":
        np.savez(path, **outputs())
    elif action == "compare":
        with np.load(path) as ref:
            sys.exit(0 if compare(dict(ref), outputs()) else 1)
    else:
        sys.exit(f"usage: {sys.argv[0]} save|compare FILE.npz")
