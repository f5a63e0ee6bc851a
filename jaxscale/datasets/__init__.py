"""Bundled real data.

Example:
    >>> from jaxscale import datasets
    >>> datasets.chinchilla().n_points
    240
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from ..runs import Runs

CITATION = (
    "Hoffmann et al. (2022), Training Compute-Optimal Large Language Models; points extracted by "
    "Epoch AI: Besiroglu et al. (2024), Chinchilla Scaling: A replication attempt (arXiv:2404.10102)"
)


def chinchilla_table() -> np.ndarray:
    """All 245 rows as a structured array (columns as in ``ATTRIBUTION.md``)."""
    with resources.files(__package__).joinpath("chinchilla_epoch.csv").open("rb") as fh:
        return np.genfromtxt(fh, delimiter=",", names=True, dtype=np.float64)


def chinchilla(*, all_points: bool = False) -> Runs:
    """The Chinchilla Approach-3 runs (N, D, loss).

    By default the 240 points Epoch AI fits on (the 5 highest-loss runs dropped);
    ``all_points=True`` keeps all 245.
    """
    t = chinchilla_table()
    keep = np.ones(len(t), bool) if all_points else t["in_epoch_fit_set"] == 1
    return Runs.from_arrays(
        {"N": t["params_N"][keep], "D": t["tokens_D"][keep]},
        t["loss"][keep],
        rows=np.flatnonzero(keep),
        columns={"N": "params_N", "D": "tokens_D"},
    )
