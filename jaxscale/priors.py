"""Priors for :func:`jaxscale.posterior`: one independent term per natural parameter, and one for
the noise scale ``sigma`` of the log-loss residuals.

A term is :func:`normal` or :func:`lognormal` *on the natural value* (``E``, ``A``, ``alpha``,
...); the sampler works in the law's fitted coordinates (the log of a coefficient), and the
Jacobian of that change is added, so a prior means what it says whichever coordinates are used.

Defaults (:func:`default`), weakly informative and the same for every law: each fitted coordinate
``Normal(midpoint, span)`` of the law's start grid (Chinchilla: log E ~ N(0, 2), log A and log B ~
N(12.5, 25), alpha and beta ~ N(1, 2)), and ``sigma ~ LogNormal(median 0.03, 1.5)`` (log-loss
residuals of real runs are ~0.005-0.05). :func:`from_bootstrap` makes a prior from a published
fit with its intervals (e.g. Chinchilla's with Epoch AI's bootstrap).

Example:
    >>> import jaxscale as js
    >>> from jaxscale import priors
    >>> p = priors.resolve(js.get_law("chinchilla"), {"alpha": priors.normal(0.34, 0.05)}, [0, 1, 2, 3, 4])
    >>> [round(float(v), 2) for v in p.a]
    [0.0, 12.5, 12.5, 0.34, 1.0, -3.51]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from .laws import Law

NORMAL, LOGNORMAL = 0, 1
SIGMA_MEDIAN, SIGMA_SD_LOG = 0.03, 1.5


class Term(NamedTuple):
    """One parameter's prior: ``kind`` :data:`NORMAL` (``a`` mean, ``b`` sd) or :data:`LOGNORMAL`
    (``a`` log of the median, ``b`` sd of the log), on the natural value."""

    kind: int
    a: float
    b: float


class Prior(NamedTuple):
    """Terms for the sampled coordinates (the free parameters in law order, then ``sigma``), and
    whether each coordinate is the log of its natural value."""

    kind: np.ndarray  # [d]
    a: np.ndarray
    b: np.ndarray
    log_coordinate: np.ndarray  # [d] bool
    names: tuple[str, ...]


def normal(mean: float, sd: float) -> Term:
    """A normal prior on the natural value."""
    return _term(NORMAL, float(mean), sd)


def lognormal(median: float, sd_log: float) -> Term:
    """A log-normal prior on the natural value: its log is ``Normal(log median, sd_log)``."""
    if not (np.isfinite(median) and median > 0):
        raise ValueError(f"a log-normal prior's median must be a number > 0; got {median!r}")
    return _term(LOGNORMAL, float(np.log(median)), sd_log)


def _term(kind: int, a: float, sd) -> Term:
    if not (np.isfinite(a) and isinstance(sd, int | float | np.floating) and np.isfinite(sd) and sd > 0):
        raise ValueError(f"a prior needs a finite center and a spread > 0; got {a!r}, {sd!r}")
    return Term(kind, a, float(sd))


def default(law: Law) -> dict[str, Term]:
    """The default term of every natural parameter and of ``sigma`` (see the module's text)."""
    out = {}
    for name, values, is_log in zip(law.natural, law.grid, law.log_scale, strict=True):
        lo, hi = float(min(values)), float(max(values))
        mid, span = (lo + hi) / 2, max(hi - lo, 1.0)
        out[name] = Term(LOGNORMAL, mid, span) if is_log else Term(NORMAL, mid, span)
    out["sigma"] = Term(LOGNORMAL, float(np.log(SIGMA_MEDIAN)), SIGMA_SD_LOG)
    return out


def from_bootstrap(boot, widen: float = 1.0) -> dict[str, Term]:
    """Terms from a fit's bootstrap draws (a published fit with its uncertainty): log-normal for
    the law's log-scale parameters (median and spread of the logs), normal for the others;
    spreads multiplied by ``widen``."""
    out = {}
    ok = boot.draws[boot.ok]
    for j, (name, is_log) in enumerate(zip(boot.law.natural, boot.law.log_scale, strict=True)):
        if name in boot.point.fixed:
            continue
        v = ok[:, j]
        if is_log:
            out[name] = lognormal(float(np.exp(np.median(np.log(v)))), float(widen * np.std(np.log(v))))
        else:
            out[name] = normal(float(np.mean(v)), float(widen * np.std(v)))
    return out


def resolve(law: Law, prior: Prior | Mapping[str, Term] | None, free: Sequence[int]) -> Prior:
    """The prior of the sampled coordinates: ``prior``'s terms over :func:`default`'s."""
    if isinstance(prior, Prior):
        return prior
    terms = default(law)
    names = [law.natural[i] for i in free] + ["sigma"]
    for name, term in dict(prior or {}).items():
        if name not in terms:
            raise ValueError(f"prior for {name!r}: law {law.name!r} has parameters {list(law.natural)} and 'sigma'")
        if name not in names:
            raise ValueError(f"prior for {name!r}: it is held fixed (fixed=...); drop one or the other")
        if not isinstance(term, Term):
            raise TypeError(f"prior for {name!r} must be priors.normal(...) or priors.lognormal(...); got {term!r}")
        terms[name] = term
    is_log = [bool(law.log_scale[i]) for i in free] + [True]
    chosen = [terms[n] for n in names]
    return Prior(
        kind=np.array([t.kind for t in chosen]),
        a=np.array([t.a for t in chosen]),
        b=np.array([t.b for t in chosen]),
        log_coordinate=np.array(is_log),
        names=tuple(names),
    )


def log_density(prior: Prior, z):
    """The prior's log density at sampled coordinates ``z [d]`` (constants dropped)."""
    log_z = jnp.where(prior.log_coordinate, z, jnp.log(jnp.where(z > 0, z, 1.0)))  # log of the natural value
    natural = jnp.where(prior.log_coordinate, jnp.exp(z), z)
    # A log-normal term is a normal on log(value): in a log coordinate no Jacobian; in a natural one,
    # the density of the value is that normal's over the value (-log value), and none for value <= 0.
    lognormal_term = -0.5 * ((log_z - prior.a) / prior.b) ** 2 - jnp.where(prior.log_coordinate, 0.0, log_z)
    lognormal_term = jnp.where(prior.log_coordinate | (z > 0), lognormal_term, -jnp.inf)
    # A normal term on the value: in a log coordinate, the Jacobian d value / d z = value.
    normal_term = -0.5 * ((natural - prior.a) / prior.b) ** 2 + jnp.where(prior.log_coordinate, z, 0.0)
    return jnp.sum(jnp.where(prior.kind == LOGNORMAL, lognormal_term, normal_term))
