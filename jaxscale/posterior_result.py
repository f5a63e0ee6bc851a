"""What :func:`jaxscale.posterior` returns: the chains' draws, their diagnostics and a status.

Diagnostics (Vehtari et al. 2021, as blackjax computes them): rank-normalised split R-hat and
bulk and tail effective sample sizes per sampled coordinate, divergent transitions, and draws
whose NUTS tree reached its depth limit. :data:`THRESHOLDS` says when chains are not to be
trusted; ``status`` names every failed check, and is ``"ok"`` only when none failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import checks
from .laws import Law
from .results import FitResult, derived_quantities

LIKELIHOODS = ("gaussian", "student_t", "huber")  # of log-loss residuals; see jaxscale.posterior
# R-hat below 1.01, bulk and tail ESS of at least 100 per chain, no divergent transition, and
# under 1% of draws at the tree-depth limit (Vehtari et al. 2021; Stan's defaults).
THRESHOLDS = {"rhat": 1.01, "ess_per_chain": 100, "divergences": 0, "treedepth_fraction": 0.01}


class PosteriorResult(NamedTuple):
    """Posterior draws of a law's parameters (``theta [chains, draws, p]`` in fitted coordinates,
    held-fixed ones at their value), the noise scale ``sigma [chains, draws]``, and diagnostics."""

    law: Law
    point: FitResult  # the multi-start fit whose optimum the chains started around
    theta: np.ndarray
    sigma: np.ndarray
    likelihood: str
    prior: Any  # jaxscale.priors.Prior
    seed: int
    diagnostics: dict
    nu: float = 4.0  # Student-t's degrees of freedom (likelihood "student_t")
    delta: float = 1.345  # Huber's threshold in units of sigma (likelihood "huber")

    @property
    def draws(self) -> np.ndarray:
        """All draws of the natural parameters ``[chains * draws, p]`` (law.natural order)."""
        return np.asarray(self.law.to_natural(self.theta.reshape(-1, self.law.n_params)))

    @property
    def ok(self) -> np.ndarray:
        """Every draw counts (unlike a bootstrap's failed resamples); ``status`` says whether the
        chains as a whole are to be trusted."""
        return np.ones(self.draws.shape[0], bool)

    @property
    def status(self) -> str:
        return self.diagnostics["status"]

    @property
    def converged(self) -> bool:
        return self.status == "ok"

    @property
    def samples(self) -> dict[str, np.ndarray]:
        draws = self.draws
        out = {name: draws[:, i] for i, name in enumerate(self.law.natural)}
        out["sigma"] = self.sigma.reshape(-1)
        return out

    def samples_frame(self, *, compute: Sequence[float] = (), at: Mapping[str, Sequence[float]] | None = None):
        """Draws as a DataFrame: ``chain``, ``draw`` and every quantity."""
        import pandas as pd

        chains, n = self.sigma.shape
        frame = pd.DataFrame({**self.samples, **derived_quantities(self.law, self.samples, compute=compute, at=at)})
        frame.insert(0, "chain", np.repeat(np.arange(chains), n))
        frame.insert(1, "draw", np.tile(np.arange(n), chains))
        return frame

    def ci(
        self, level: float = 0.95, *, compute: Sequence[float] = (), at: Mapping[str, Sequence[float]] | None = None
    ):
        """Equal-tailed credible intervals at ``level``: DataFrame indexed by quantity with
        ``mean``, ``median``, ``lower``, ``upper``, ``sd``, and, for sampled parameters, ``rhat``,
        ``ess_bulk`` and ``ess_tail``."""
        import pandas as pd

        checks.arguments(level=level)
        values = {**self.samples, **derived_quantities(self.law, self.samples, compute=compute, at=at)}
        tail = 100 * (1 - level) / 2
        per = self.diagnostics["per_parameter"]
        rows = {}
        for name, v in values.items():
            v = np.asarray(v, dtype=np.float64)
            lo, hi = np.percentile(v, [tail, 100 - tail])
            row = {"mean": v.mean(), "median": np.median(v), "lower": lo, "upper": hi, "sd": v.std(ddof=1)}
            row |= {k: per.get(name, {}).get(k, np.nan) for k in ("rhat", "ess_bulk", "ess_tail")}
            rows[name] = row
        return pd.DataFrame.from_dict(rows, orient="index")

    def predictive(self, level: float = 0.9, *, seed: int = 0, **inputs: Sequence[float]):
        """Posterior predictive intervals of the loss of new runs (``N=[...], D=[...]``): each draw's
        prediction with a noise draw from the likelihood at that draw's ``sigma``, so the interval
        covers a run's observed loss, not only the mean curve. DataFrame, one row per run:
        the inputs, ``mean`` (the curve's posterior mean), ``lower`` and ``upper`` at ``level``."""
        import jax
        import pandas as pd

        checks.arguments(level=level)
        at = checks.check_inputs("inputs", self.law, inputs, self.law.inputs)
        log_x = np.log(np.stack([np.asarray(at[n], dtype=np.float64) for n in self.law.inputs], axis=-1))
        theta = self.theta.reshape(-1, self.law.n_params)
        with jax.enable_x64(True):
            curve = np.asarray(jax.vmap(lambda t: self.law.log_predict(t, log_x))(theta))  # [S, Q] log loss
        noise = _noise(self.likelihood, self.nu, self.delta, np.random.default_rng(seed), curve.shape)
        observed = np.exp(curve + self.sigma.reshape(-1, 1) * noise)
        tail = 100 * (1 - level) / 2
        lo, hi = np.percentile(observed, [tail, 100 - tail], axis=0)
        return pd.DataFrame({**{n: np.exp(log_x[:, j]) for j, n in enumerate(self.law.inputs)},
                             "mean": np.exp(curve).mean(axis=0), "lower": lo, "upper": hi})  # fmt: skip

    def to_dict(self, level: float = 0.95, *, compute: Sequence[float] = ()) -> dict[str, Any]:
        """A JSON-ready summary: law, likelihood, seed, status, diagnostics, the prior's terms,
        the credible intervals at ``level`` and the fit the chains started from."""
        ci = self.ci(level, compute=compute)
        return {
            "law": self.law.name,
            "likelihood": self.likelihood,
            "seed": self.seed,
            "status": self.status,
            "converged": self.converged,
            "diagnostics": {k: v for k, v in self.diagnostics.items() if k != "status"},
            "prior": {
                name: {"lognormal": {"median": float(np.exp(a)), "sd_log": float(b)}}
                if kind
                else {"normal": {"mean": float(a), "sd": float(b)}}
                for name, kind, a, b in zip(self.prior.names, self.prior.kind, self.prior.a, self.prior.b, strict=True)
            },
            "level": level,
            "intervals": {name: {k: _json_number(v) for k, v in row.items()} for name, row in ci.iterrows()},
            "start": {"params": dict(self.point.params), "objective": self.point.objective},
        }

    def __str__(self) -> str:
        d = self.diagnostics
        return (
            f"posterior of law {self.law.name!r} ({self.likelihood} likelihood): {d['chains']} chains x "
            f"{d['draws']} draws, status {self.status!r}; max R-hat {d['max_rhat']:.4f}, min bulk ESS "
            f"{d['min_ess_bulk']:.0f}, min tail ESS {d['min_ess_tail']:.0f}, {d['divergences']} divergent, "
            f"{d['treedepth_fraction']:.1%} at the tree-depth limit"
        )


def _noise(likelihood: str, nu: float, delta: float, rng, shape) -> np.ndarray:
    """Standardised residuals drawn from the likelihood (``sigma`` = 1)."""
    if likelihood == "gaussian":
        return rng.standard_normal(shape)
    if likelihood == "student_t":
        return rng.standard_t(nu, shape)
    # Huber's density: a normal core on [-delta, delta] and exponential tails beyond, in
    # proportion to their masses sqrt(2 pi) (2 Phi(delta) - 1) and 2 exp(-delta^2 / 2) / delta.
    from scipy import stats

    core = np.sqrt(2 * np.pi) * (2 * stats.norm.cdf(delta) - 1)
    tails = 2 * np.exp(-(delta**2) / 2) / delta
    in_core = rng.random(shape) < core / (core + tails)
    u = rng.uniform(stats.norm.cdf(-delta), stats.norm.cdf(delta), shape)
    tail = (delta + rng.exponential(1 / delta, shape)) * rng.choice([-1.0, 1.0], shape)
    return np.where(in_core, stats.norm.ppf(u), tail)


def _json_number(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def diagnose(law: Law, theta, free, log_sigma, info: dict, max_doublings: int) -> dict:
    """Diagnostics of chains ``theta [chains, draws, p]`` (sampled coordinates ``free``) and
    ``log_sigma [chains, draws]``, with NUTS's per-draw ``info``; ``status`` from :data:`THRESHOLDS`."""
    from blackjax.diagnostics import ess_bulk, ess_tail, rhat

    chains, n = log_sigma.shape
    coords = {law.natural[i]: theta[..., i] for i in free} | {"sigma": log_sigma}
    per = {}
    for name, x in coords.items():
        x = np.asarray(x, dtype=np.float64)
        per[name] = {k: float(f(x)) for k, f in (("rhat", rhat), ("ess_bulk", ess_bulk), ("ess_tail", ess_tail))}
    divergences = int(np.sum(info["divergent"]))
    saturated = float(np.mean(np.asarray(info["doublings"]) >= max_doublings))
    out = {
        "chains": chains,
        "draws": n,
        "per_parameter": per,
        "max_rhat": max(p["rhat"] for p in per.values()),
        "min_ess_bulk": min(p["ess_bulk"] for p in per.values()),
        "min_ess_tail": min(p["ess_tail"] for p in per.values()),
        "divergences": divergences,
        "treedepth_fraction": saturated,
        "mean_acceptance": float(np.mean(info["acceptance"])),
    }
    failed = []
    if not out["max_rhat"] < THRESHOLDS["rhat"]:
        failed.append(f"R-hat {out['max_rhat']:.3f} >= {THRESHOLDS['rhat']}")
    least = THRESHOLDS["ess_per_chain"] * chains
    if not min(out["min_ess_bulk"], out["min_ess_tail"]) >= least:
        failed.append(f"ESS {min(out['min_ess_bulk'], out['min_ess_tail']):.0f} < {least}")
    if divergences > THRESHOLDS["divergences"]:
        failed.append(f"{divergences} divergent transitions")
    if saturated > THRESHOLDS["treedepth_fraction"]:
        failed.append(f"{saturated:.1%} of draws at the tree-depth limit")
    out["failed"] = failed
    out["status"] = "ok" if not failed else "not_converged: " + "; ".join(failed)
    return out
