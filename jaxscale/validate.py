"""``validate``: fit a law on some runs, predict the others, report the prediction errors.

The held-out runs get weight 0 in the fit (the same compiled objective as any fit), so a
validation is one :func:`jaxscale.fit` call plus a prediction.

Example:
    >>> import jaxscale as js
    >>> runs = js.datasets.chinchilla()
    >>> table = js.validate(runs, law="chinchilla", train=runs.x[:, 0] < 5e9)
    >>> table.attrs["summary"]["converged"], table.attrs["summary"]["n_held_out"]
    (True, 17)
    >>> bool(table.attrs["summary"]["max_abs_rel_error"] < 0.05)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import pandas as pd

from .fit import as_runs, fit, match_inputs
from .laws import Law, get_law
from .runs import Runs, describe_rows


def validate(
    runs: Runs | Any,
    law: str | Law = "chinchilla",
    *,
    train: Sequence[bool] | np.ndarray | Callable[[Runs], Sequence[bool]],
    holdout: Sequence[bool] | np.ndarray | Callable[[Runs], Sequence[bool]] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Fit ``law`` on the ``train`` runs and predict every run; one row per run.

    Args:
        runs: a :class:`Runs` (see :func:`jaxscale.read_runs`) or what :func:`jaxscale.fit` accepts.
        law: a law name or a :class:`Law`.
        train: a boolean mask over the runs (True = used in the fit), or a function of the
            :class:`Runs` returning one, e.g. ``lambda r: r.x[:, r.inputs.index("N")] < 1e9``.
        holdout: the runs the errors are summarised over (a mask or a function, as ``train``;
            default: every run not in ``train``). Runs in neither are predicted but marked
            ``"unused"`` and left out of the summary (e.g. small runs that are not the target).
        **options: passed to :func:`jaxscale.fit` (``loss_fn``, ``delta``, ``starts``, ``fixed``, ...;
            not ``weights``, which the split sets).

    Returns:
        DataFrame indexed like the runs, with the law's inputs, ``loss``, ``predicted``,
        ``rel_error`` (predicted / loss - 1), ``abs_rel_error`` and ``split`` ("train" or
        "held_out"). ``attrs["summary"]`` holds plain numbers: ``n_train``, ``n_held_out``,
        ``mean_abs_rel_error`` / ``max_abs_rel_error`` over the held-out runs,
        ``train_mean_abs_rel_error``, and the fit's ``status``, ``converged`` and
        ``objective``; ``attrs["params"]`` the fitted natural parameters; ``attrs["fit"]``
        the :class:`~jaxscale.FitResult` itself.
    """
    if "weights" in options:
        raise ValueError("validate sets the fit's weights from train=; pass the split through train= only")
    law = get_law(law)
    runs = as_runs(runs)
    mask = _train_mask(train(runs) if callable(train) else train, runs.n_points)
    held_mask = ~mask
    if holdout is not None:
        held_mask = _mask("holdout", holdout(runs) if callable(holdout) else holdout, runs.n_points)
        both = held_mask & mask
        if both.any():
            raise ValueError(
                f"{int(both.sum())} runs are in both train and holdout ({describe_rows(runs.rows, both)}): "
                "a run the law was fitted on cannot test it"
            )
        if not held_mask.any():
            raise ValueError("holdout selects no run: there is nothing to validate on")
    res = fit(runs, law, weights=mask.astype(np.float64), **options)
    log_x = match_inputs(runs, law)
    with jax.enable_x64(True):
        predicted = np.asarray(law.predict(res.theta, log_x))
    rel = predicted / runs.y - 1.0
    columns = {name: np.exp(log_x[:, j]) for j, name in enumerate(law.inputs)}
    table = pd.DataFrame(
        {
            **columns,
            "loss": runs.y,
            "predicted": predicted,
            "rel_error": rel,
            "abs_rel_error": np.abs(rel),
            "split": np.where(mask, "train", np.where(held_mask, "held_out", "unused")),
        },
        index=runs.rows,
    )
    held = np.abs(rel[held_mask])
    table.attrs["summary"] = {
        "law": law.name,
        "n_train": int(mask.sum()),
        "n_held_out": int(held_mask.sum()),
        "n_unused": int((~mask & ~held_mask).sum()),
        "mean_abs_rel_error": float(np.mean(held)),
        "max_abs_rel_error": float(np.max(held)),
        "train_mean_abs_rel_error": float(np.mean(np.abs(rel[mask]))),
        "status": res.status,
        "converged": res.converged,
        "objective": res.objective,
    }
    table.attrs["params"] = dict(res.params)
    table.attrs["fit"] = res
    return table


def _mask(name: str, given, n_points: int) -> np.ndarray:
    mask = np.asarray(given)
    if mask.shape != (n_points,) or mask.dtype != np.bool_:
        raise ValueError(
            f"{name} must be {n_points} booleans (one per run) or a function of the runs "
            f"returning them; got dtype {mask.dtype}, shape {mask.shape}"
        )
    return mask


def _train_mask(train, n_points: int) -> np.ndarray:
    mask = _mask("train", train, n_points)
    if mask.all():
        raise ValueError("train selects every run: nothing is held out to validate on")
    if not mask.any():
        raise ValueError("train selects no run: there is nothing to fit on")
    return mask
