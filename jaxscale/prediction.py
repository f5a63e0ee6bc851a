"""Prediction intervals for new runs: the mean curve's uncertainty plus run-to-run noise.

A bootstrap's bands (:meth:`jaxscale.BootstrapResult.ci`, :func:`jaxscale.frontier`) cover the
*mean* curve: where the law is, given the runs. A new run's loss also scatters around that curve
(seeds, data order, evaluation noise), so an interval for it must add that scatter. Here the
noise is Gaussian in log loss with standard deviation σ, either

* estimated from the fit's residuals (``noise="residuals"``: σ² = Σ r² / (n − p) over the runs
  fitted, r the log residuals), or
* given (``noise=0.01``: e.g. measured from repeated seeds).

With a :class:`~jaxscale.FitResult`, the interval is ``log L̂ ± z σ`` (parameter uncertainty
ignored: fine where the runs are many and the point is inside them); with a
:class:`~jaxscale.BootstrapResult`, noise draws are added to every resample's prediction and
the interval is their percentiles (both sources).

Example:
    >>> import jaxscale as js
    >>> runs = js.datasets.chinchilla()
    >>> table = prediction_interval(js.fit(runs), runs, N=[1e9], D=[2e10])
    >>> row = table.iloc[0]
    >>> bool(row["lower"] < row["predicted"] < row["upper"]), table.attrs["noise_source"]
    (True, 'residuals')
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import jax
import numpy as np
import pandas as pd

from .fit import as_runs, match_inputs
from .results import BootstrapResult, FitResult
from .runs import Runs

NOISE_DRAWS = 4000  # noise draws in all (spread over a bootstrap's resamples)


def residual_sigma(result: FitResult, runs: Runs) -> float:
    """σ of the log residuals of ``result`` on ``runs``, with n − p degrees of freedom."""
    law = result.law
    with jax.enable_x64(True):
        log_pred = np.asarray(law.log_predict(result.theta, match_inputs(runs, law)))
    r = log_pred - runs.log_loss()
    dof = runs.n_points - (law.n_params - len(result.fixed))
    if dof <= 0:
        raise ValueError(f"{runs.n_points} runs leave no degrees of freedom to estimate the noise: give noise=σ")
    return float(np.sqrt(np.sum(r**2) / dof))


def prediction_interval(
    result: FitResult | BootstrapResult,
    runs: Runs | None = None,
    *,
    noise: str | float = "residuals",
    level: float = 0.95,
    seed: int = 0,
    **inputs: Sequence[float],
) -> pd.DataFrame:
    """Intervals for the loss of new runs at ``inputs`` (e.g. ``N=[...], D=[...]``).

    Args:
        result: a fit or a bootstrap.
        runs: the runs fitted (for ``noise="residuals"``).
        noise: ``"residuals"`` or σ, the run-to-run standard deviation of log loss.
        level: of the intervals; seed: of the noise draws (bootstrap only).

    Returns:
        One row per point: the inputs, ``predicted``, ``lower``, ``upper`` (a new run's loss)
        and, for a bootstrap, ``mean_lower``/``mean_upper`` (the mean curve alone). ``attrs``:
        ``noise_sigma`` and ``noise_source`` (``"residuals"`` or ``"given"``).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95); got {level}")
    point = result.point if isinstance(result, BootstrapResult) else result
    if not isinstance(point, FitResult):
        raise TypeError(f"expected a FitResult or a BootstrapResult; got {type(result).__name__}")
    law = point.law
    missing = [n for n in law.inputs if n not in inputs]
    if missing:
        raise ValueError(f"prediction_interval needs the law's inputs {list(law.inputs)}; missing {missing}")
    if isinstance(noise, str):
        if noise != "residuals":
            raise ValueError(f"noise is 'residuals' or a standard deviation of log loss (e.g. 0.01); got {noise!r}")
        if runs is None:
            raise ValueError("noise='residuals' needs the runs fitted: prediction_interval(result, runs, ...)")
        sigma, source = residual_sigma(point, as_runs(runs)), "residuals"
    else:
        if not (isinstance(noise, int | float) and noise >= 0):
            raise ValueError(f"noise must be a standard deviation of log loss >= 0; got {noise!r}")
        sigma, source = float(noise), "given"
    cols = {n: np.atleast_1d(np.asarray(inputs[n], dtype=np.float64)) for n in law.inputs}
    log_x = np.log(np.stack([cols[n] for n in law.inputs], axis=-1))
    with jax.enable_x64(True):
        log_pred = np.asarray(law.log_predict(point.theta, log_x))
    table = pd.DataFrame({**cols, "predicted": np.exp(log_pred)})
    tail = (1 - level) / 2
    if isinstance(result, BootstrapResult):
        draws = np.asarray(law.to_fitted(result.draws[result.ok]))
        if len(draws) == 0:
            raise ValueError("no bootstrap resample converged: no interval can be computed")
        with jax.enable_x64(True):
            curves = np.asarray(jax.vmap(lambda t: law.log_predict(t, log_x))(draws))  # [n, K]
        per = max(1, NOISE_DRAWS // len(draws))
        z = np.random.default_rng(seed).standard_normal((len(draws), per, log_x.shape[0]))
        noisy = (curves[:, None, :] + sigma * z).reshape(-1, log_x.shape[0])
        table["lower"], table["upper"] = np.exp(np.percentile(noisy, [100 * tail, 100 * (1 - tail)], axis=0))
        mean_lo, mean_hi = np.percentile(curves, [100 * tail, 100 * (1 - tail)], axis=0)
        table["mean_lower"], table["mean_upper"] = np.exp(mean_lo), np.exp(mean_hi)
    else:
        half = NormalDist().inv_cdf(1 - tail) * sigma
        table["lower"], table["upper"] = np.exp(log_pred - half), np.exp(log_pred + half)
    table.attrs = {"noise_sigma": sigma, "noise_source": source, "level": level}
    return table
