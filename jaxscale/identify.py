"""Identifiability: whether the runs determine the parameters a fit reports.

A fit can stop, with a zero gradient, at a point the data do not pin down: every run at one
``D`` (``E`` and ``B / D^beta`` are then one constant), inputs that barely vary, pure noise, or
a loss that *rises* with scale. Three checks, each naming the parameters concerned:

1. **Design** (before looking at the optimum): each input whose power term has a free
   coefficient and exponent needs :data:`MIN_DISTINCT` distinct values and to span a factor
   :data:`MIN_SPAN` over the runs of positive weight (for a law without ``center_pairs``, every
   free parameter is named), and the runs of positive weight (and their distinct input tuples)
   must outnumber the free parameters.
2. **Curvature** at the optimum, in the solver's free, centered coordinates
   (:func:`jaxscale.problem.objective`): the Hessian of the objective and the Gauss-Newton
   matrix ``J^T W J`` of the log-predictions (the Hessian's value were every residual inside
   the Huber threshold: the design's own information at the optimum). Each is first scaled to
   unit diagonal (``D^-1/2 M D^-1/2``), which makes its eigenvalues independent of the units
   of every parameter and input and of the number of runs; a direction whose eigenvalue is
   below :data:`CURVATURE_TOL` is flat: the parameters with a share of at least
   :data:`NAME_SHARE` in it are not determined.
3. **Signs**: parameters the law requires to be positive (``Law.positive``, e.g. Chinchilla's
   exponents) must be.

A fit that fails a check has status ``"unidentified"`` (``FitResult.converged`` is False).
Parameters whose term vanished (``FitResult.vanished``) are left out of the curvature check:
their flatness is already reported there, and the fit stays ``"converged"`` when the rest of
the law is determined (the runs need no such term; its parameters are limits, not estimates).

Example:
    >>> import numpy as np
    >>> from jaxscale.laws import CHINCHILLA
    >>> log_x = np.log([[1e8, 2e10], [1e9, 2e10], [1e10, 2e10], [3e10, 2e10], [5e10, 2e10], [7e10, 2e10]])
    >>> [names for names, reason in design_problems(CHINCHILLA, log_x, np.ones(6), (0, 1, 2, 3, 4))]
    [('B', 'beta')]
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import batches, problem
from .laws import Law
from .solver import STATUS_NAMES

UNIDENTIFIED = "unidentified"
# Status code of an unidentified resample in BootstrapResult.status (the solver's are 0..3).
UNIDENTIFIED_CODE = 4
RESAMPLE_STATUS_NAMES = {**STATUS_NAMES, UNIDENTIFIED_CODE: UNIDENTIFIED}

# Design. An input with 2 distinct values gives a power term two numbers, one of which its
# asymptote (E) absorbs: coefficient and exponent need 3. An input spanning less than a factor
# MIN_SPAN moves A / N^alpha by less than alpha * ln(MIN_SPAN) ~ 3% of itself: its exponent is
# then set by noise, not by the data. In the curvature check, synthetic Chinchilla designs
# with N spanning x1.5 and x10 had smallest scaled Hessian eigenvalues of 2.3e-5 and 5.3e-5
# (converged; see tests/test_trust_identify.py), and N and D spanning x1.0001 7.2e-7 (flagged).
MIN_DISTINCT = 3
MIN_SPAN = 1.1

# Curvature. Smallest eigenvalue of the unit-diagonal Hessian (H) and Gauss-Newton (GN)
# matrices, measured at converged optima that must stay "converged":
#   Epoch's 240 points (chinchilla)       H 1.4e-3  GN 2.9e-3
#   synthetic, 60 runs, noise 0.005       H 5.4e-3  GN 7.2e-3
#   synthetic, 30 runs, noise 0.02        H 4.4e-4  GN 6.7e-3
#   Gadre rpj, overtraining / chinchilla  H 5.4e-4 / 1.4e-3  GN 3.5e-4 / 3.0e-3
# and at the degenerate designs of issue 21 that must be flagged:
#   every run at one D                    H < 0 (-0.17)  GN -1.8e-17 (beta's diagonal 6e-29 of the largest)
#   N and D each spanning x1.0001         H 7.2e-7  GN 2.1e-13
#   pure-noise losses                     H 1.4e-5  GN 1.7e-10
# (a loss rising with N is well curved, H 6.9e-3: only the sign check catches it).
CURVATURE_TOL = 1e-6
# A diagonal entry below this fraction of the largest is a parameter with no curvature at all.
ZERO_CURVATURE = 1e-12
# A parameter with at least this share (|component| of the unit eigenvector) in a flat direction is named.
NAME_SHARE = 0.3


class Identification(NamedTuple):
    """Outcome of the checks for one fit: the parameters not determined (empty: all are) and why."""

    unidentified: tuple[str, ...]
    reason: str
    min_curvature: float  # smallest eigenvalue of the unit-diagonal Hessian (nan if not computed)
    condition: float  # its largest / smallest eigenvalue


def design_problems(
    law: Law, log_x: np.ndarray, w: np.ndarray, free: tuple[int, ...]
) -> list[tuple[tuple[str, ...], str]]:
    """``(parameters, reason)`` for each way the runs of positive weight cannot determine the free parameters."""
    used = np.asarray(w) > 0
    x = np.asarray(log_x)[used]
    free_names = tuple(law.natural[i] for i in free)
    out: list[tuple[tuple[str, ...], str]] = []
    if used.sum() <= len(free):
        return [(free_names, f"{int(used.sum())} runs of positive weight for {len(free)} free parameters")]
    distinct_rows = len(np.unique(x, axis=0))
    if distinct_rows <= len(free):
        out.append((free_names, f"{distinct_rows} distinct input combinations for {len(free)} free parameters"))
    for k, name in enumerate(law.inputs):
        names = _input_params(law, k, free)
        if len(names) < 2:
            continue  # a coefficient alone (its exponent held fixed): the curvature check decides
        distinct = len(np.unique(x[:, k]))
        span = float(np.exp(x[:, k].max() - x[:, k].min()))
        # A power term's coefficient and exponent (a center pair) need MIN_DISTINCT values; for
        # a law whose terms we cannot see, one value is surely too few and the curvature check
        # judges the rest (Gadre et al.'s over-training law is fitted on runs at two M values).
        least = MIN_DISTINCT if any(inp == k for _, _, inp in law.center_pairs) else 2
        if distinct < least:
            out.append(
                (
                    names,
                    f"input {name} has {distinct} distinct value(s) among the weighted runs "
                    f"(its terms' coefficients and exponents need at least {least})",
                )
            )
        elif span < MIN_SPAN:
            out.append(
                (names, f"input {name} spans a factor {span:.6g} (< {MIN_SPAN}: too narrow to set its exponent)")
            )
    return out


def _input_params(law: Law, k: int, free: tuple[int, ...]) -> tuple[str, ...]:
    """The free parameters of the power terms of input ``k`` (its center pairs), or every free one."""
    idx = [i for coef, expo, inp in law.center_pairs if inp == k for i in (coef, expo) if i in free]
    return tuple(law.natural[i] for i in sorted(set(idx or free)))


def sign_problems(law: Law, params: dict[str, float], fixed: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """Parameters the law requires positive that are not (held-fixed ones are the caller's)."""
    bad = [n for n in law.positive if n not in fixed and not params[n] > 0]
    if not bad:
        return []
    shown = ", ".join(f"{n} = {params[n]:.3g}" for n in bad)
    return [
        (
            tuple(bad),
            f"{shown}: law {law.name!r} needs {'it' if len(bad) == 1 else 'them'} > 0 (loss falling with scale)",
        )
    ]


@partial(jax.jit, static_argnums=(0, 4))
def curvature_matrices(cfg: problem.Config, data: problem.Data, theta, w, grouped: bool = False):
    """Hessian of the objective and ``J^T W J`` at ``theta`` (the law's fitted parameters), both
    over the free, centered coordinates: ``[B, q, q]`` each for ``theta [B, p]`` and ``w [B, P]``
    (``grouped``: each problem has its own ``data``, with a leading axis ``[B, ...]``)."""

    def one(d, th, wi):
        x = problem.centered_starts(cfg, d, th[None])[0]
        hess = jax.hessian(problem.objective, argnums=2)(cfg, d, x, wi)
        jac = jax.jacfwd(lambda v: cfg.law.log_predict(problem.full_theta(cfg, d, v), d.log_x))(x)  # [P, q]
        return hess, jnp.einsum("pi,p,pj->ij", jac, wi, jac)

    return jax.vmap(one, in_axes=(0 if grouped else None, 0, 0))(data, jnp.asarray(theta), jnp.asarray(w))


def flat_directions(matrix: np.ndarray, names: tuple[str, ...]) -> tuple[tuple[str, ...], float, float]:
    """``(names in flat directions, smallest eigenvalue, condition)`` of a unit-diagonal-scaled matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    if not np.all(np.isfinite(m)):
        return names, float("nan"), float("inf")
    d = np.diag(m)
    zero = d <= ZERO_CURVATURE * max(float(d.max()), 0.0)
    if zero.all():
        return names, 0.0, float("inf")
    keep = ~zero
    s = 1.0 / np.sqrt(d[keep])
    ev, vec = np.linalg.eigh(m[np.ix_(keep, keep)] * s[:, None] * s[None, :])
    kept = [n for n, k in zip(names, keep, strict=True) if k]
    weak = {
        kept[i] for j in np.flatnonzero(ev < CURVATURE_TOL) for i in np.flatnonzero(np.abs(vec[:, j]) >= NAME_SHARE)
    }
    flagged = tuple(n for n in names if n in weak or n in {m_ for m_, z in zip(names, zero, strict=True) if z})
    lam = 0.0 if zero.any() else float(ev[0])
    cond = float("inf") if lam <= 0 else float(ev[-1] / lam)
    return flagged, lam, cond


def curvature_problems(
    law: Law, free: tuple[int, ...], hess: np.ndarray, gn: np.ndarray, skip: tuple[str, ...] = ()
) -> tuple[list[tuple[tuple[str, ...], str]], float, float]:
    """Flat directions of the Hessian or Gauss-Newton matrix of one fit, less the parameters in ``skip``."""
    names = tuple(law.natural[i] for i in free)
    keep = [i for i, n in enumerate(names) if n not in skip]
    names = tuple(names[i] for i in keep)
    if not names:
        return [], float("nan"), float("nan")
    sub = np.ix_(keep, keep)
    h_names, h_lam, h_cond = flat_directions(np.asarray(hess)[sub], names)
    g_names, g_lam, _ = flat_directions(np.asarray(gn)[sub], names)
    flagged = tuple(n for n in names if n in h_names or n in g_names)
    if not flagged:
        return [], h_lam, h_cond
    reason = (
        f"the objective is flat along {', '.join(flagged)} at the optimum (smallest scaled curvature: "
        f"Hessian {h_lam:.2g}, Gauss-Newton {g_lam:.2g}; below {CURVATURE_TOL:g} is flat)"
    )
    return [(flagged, reason)], h_lam, h_cond


def combine(
    law: Law, problems: list[tuple[tuple[str, ...], str]], min_curvature: float, condition: float
) -> Identification:
    names = {n for ps, _ in problems for n in ps}
    ordered = tuple(n for n in law.natural if n in names)
    return Identification(ordered, "; ".join(reason for _, reason in problems), min_curvature, condition)


def identify(cfg: problem.Config, data: problem.Data, res, w: np.ndarray, matrices=None) -> Identification:
    """All three checks for the fit ``res`` (a ``FitResult``) of ``data`` with run weights ``w``
    (padding has weight 0); parameters whose term vanished (``res.vanished``) skip the curvature check.
    ``matrices``: the fit's ``(Hessian, Gauss-Newton)`` if already computed."""
    law = cfg.law
    problems = design_problems(law, np.asarray(data.log_x), w, cfg.free)
    if matrices is None:
        with jax.enable_x64(True):
            matrices = curvature_matrices(cfg, data, np.asarray(res.theta)[None], np.asarray(w)[None])
        matrices = tuple(np.asarray(m)[0] for m in matrices)
    hess, gn = matrices
    curved, lam, cond = curvature_problems(law, cfg.free, hess, gn, res.vanished)
    problems += curved + sign_problems(law, res.params, res.fixed)
    return combine(law, problems, lam, cond)


def assess(res, cfg: problem.Config, data: problem.Data, w: np.ndarray, matrices=None):
    """``res`` with the checks' outcome recorded; a converged fit that fails one becomes ``"unidentified"``."""
    found = identify(cfg, data, res, w, matrices)
    status = UNIDENTIFIED if found.unidentified and res.status == "converged" else res.status
    return res._replace(
        status=status,
        unidentified=found.unidentified,
        unidentified_reason=found.reason,
        min_curvature=found.min_curvature,
        condition=found.condition,
    )


# Groups per call of the grouped curvature check (fewer: padded to a power of two).
CURVATURE_CALL = 2048


def assess_groups(
    cfg: problem.Config, parts: list[tuple[problem.Data, np.ndarray, list]], like: int | None = None
) -> list[list]:
    """:func:`assess` for the fits of grouped data sets (``fit_groups``' buckets): each part is
    ``(data [G, P, ...], weights [G, P], results [G])`` (``G`` may be 0: the part still sets the
    calls' point count), and one list of assessed results per part comes back. Groups that pass
    every check on array-wide tests (:func:`_clear_groups`) are recorded without the per-group
    checks, which name the problems of the others; both record the same numbers. The curvature
    matrices of all parts come from calls of one shape (:func:`grouped_curvature`); with ``like``,
    the shape they have for ``like`` groups, so that a few groups checked again reuse the kernel
    compiled when all of them were checked."""
    if not any(results for _, _, results in parts):
        return [[] for _ in parts]
    p = cfg.law.n_params
    thetas = [
        np.array([np.asarray(r.theta, dtype=np.float64) for r in results]).reshape(-1, p) for _, _, results in parts
    ]
    hess, gn = grouped_curvature(
        cfg, [(data, w, theta) for (data, w, _), theta in zip(parts, thetas, strict=True)], like=like
    )
    out, lo = [], 0
    for data, w, results in parts:
        if not results:
            out.append([])
            continue
        h, m = hess[lo : lo + len(results)], gn[lo : lo + len(results)]
        lo += len(results)
        clear, lam, cond = _clear_groups(cfg, np.asarray(data.log_x), np.asarray(w), results, h, m)
        out.append(
            [
                r._replace(
                    unidentified=(), unidentified_reason="", min_curvature=float(lam[j]), condition=float(cond[j])
                )
                if clear[j]
                else assess(r, cfg, problem.Data(*(np.asarray(a)[j] for a in data)), w[j], (h[j], m[j]))
                for j, r in enumerate(results)
            ]
        )
    return out


def grouped_curvature(
    cfg: problem.Config, parts: list[tuple], like: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`curvature_matrices` ``[G, q, q]`` of every group of the parts ``(data [G_i, P_i, ...],
    weights [G_i, P_i], theta [G_i, p])``, in part order.

    Every call has one shape, whatever the parts' point counts: their points are padded to the
    largest part's with weight-0 copies (cycled), which add exactly 0 to both matrices, and calls
    take :data:`CURVATURE_CALL` groups (fewer groups: padded to a power of two, cycled, trimmed;
    ``like``: as many as for that many groups).
    ``fit_groups``' buckets of several sizes thus compile one kernel, not one each."""
    size = max(w.shape[1] for _, w, _ in parts)

    def padded(i: int, rows: np.ndarray) -> list[np.ndarray]:
        data, w, theta = parts[i]
        cycle = np.resize(np.arange(w.shape[1]), size)  # the points, cycled; the copies weigh 0
        wide = np.where(np.arange(size) < w.shape[1], np.asarray(w)[rows][:, cycle], 0.0)
        log_x, log_y = np.asarray(data.log_x)[rows][:, cycle], np.asarray(data.log_y)[rows][:, cycle]
        return [log_x, log_y, np.asarray(data.theta_fixed)[rows], np.asarray(data.shift)[rows], wide, theta[rows]]

    part = np.concatenate([np.full(len(w), i) for i, (_, w, _) in enumerate(parts)])
    row = np.concatenate([np.arange(len(w)) for _, w, _ in parts])
    n = len(row)
    n_call = _call_groups(max(n, like or 0))
    hess, gn = [], []
    for lo in range(0, n, n_call):
        pick = np.resize(np.arange(lo, min(lo + n_call, n)), n_call)
        arrays: list[np.ndarray] = []
        for i in np.unique(part[pick]):
            at = np.flatnonzero(part[pick] == i)
            for j, a in enumerate(padded(int(i), row[pick[at]])):
                if len(arrays) <= j:
                    arrays.append(np.empty((n_call,) + a.shape[1:]))
                arrays[j][at] = a
        *fields, w, theta = arrays
        with jax.enable_x64(True):
            h, m = curvature_matrices(cfg, problem.Data(*fields), theta, w, True)
        real = min(n_call, n - lo)
        hess.append(np.asarray(h)[:real])
        gn.append(np.asarray(m)[:real])
    return np.concatenate(hess), np.concatenate(gn)


def _call_groups(n: int) -> int:
    """Groups per call of :func:`grouped_curvature` checking ``n`` groups."""
    return min(CURVATURE_CALL, batches.power_of_two(n))


def compile_grouped_curvature(cfg: problem.Config, data: problem.Data, w: np.ndarray, n_groups: int) -> None:
    """Compile the kernel of :func:`grouped_curvature`'s calls for ``n_groups`` groups whose
    largest part holds groups like ``data [G, P, ...]``, ``w [G, P]`` (its shapes but the
    first), without running it. ``fit_groups`` starts this as its solve starts, while its first
    kernels trace (Python, one core) and a core would otherwise idle, rather than after the solve.

    Example:
        >>> import numpy as np
        >>> import jaxscale as js
        >>> from jaxscale import problem, specs
        >>> cfg = specs.make_spec(js.get_law("chinchilla")).cfg
        >>> data = problem.Data(np.zeros((1, 8, 2)), np.zeros((1, 8)), np.zeros((1, 5)), np.zeros((1, 2)))
        >>> compile_grouped_curvature(cfg, data, np.ones((1, 8)), n_groups=3)
    """
    n_call = _call_groups(n_groups)

    def like(a) -> jax.ShapeDtypeStruct:  # grouped_curvature's calls take float64 host arrays
        return jax.ShapeDtypeStruct((n_call,) + np.shape(a)[1:], np.float64)

    theta = jax.ShapeDtypeStruct((n_call, cfg.law.n_params), np.float64)
    with jax.enable_x64(True):
        batches.traced_alone(curvature_matrices, cfg, problem.Data(*map(like, data)), theta, like(w), True).compile()


def _clear_groups(cfg: problem.Config, log_x: np.ndarray, w: np.ndarray, results: list, hess, gn):
    """``(clear [G], min_curvature [G], condition [G])``: groups that certainly pass all three
    checks of :func:`identify`, tested array-wide; a group not clear is left to :func:`identify`.

    Clear: no term vanished, signs as the law needs, more runs of positive weight than free
    parameters and some input with more distinct values than that (so more distinct input
    tuples too), each power term's input with enough distinct values and span, and both
    curvature matrices finite, with no zero diagonal and no eigenvalue below
    :data:`CURVATURE_TOL` after unit-diagonal scaling: the same scaling and eigen-solver as
    :func:`flat_directions`, so the recorded numbers are the ones it gives.
    """
    law, free = cfg.law, cfg.free
    q = len(free)
    used = w > 0
    n_used = used.sum(axis=1)
    clear = (n_used > q) & np.array([not r.vanished and not sign_problems(law, r.params, r.fixed) for r in results])
    most_distinct = np.zeros(len(results), dtype=int)
    for k in range(len(law.inputs)):
        v = np.sort(np.where(used, log_x[..., k], np.inf), axis=1)
        steps = (v[:, 1:] != v[:, :-1]) & (np.arange(v.shape[1] - 1)[None, :] < (n_used - 1)[:, None])
        distinct = steps.sum(axis=1) + (n_used > 0)
        most_distinct = np.maximum(most_distinct, distinct)
        if len(_input_params(law, k, free)) >= 2:
            least = MIN_DISTINCT if any(inp == k for _, _, inp in law.center_pairs) else 2
            high = np.where(used, log_x[..., k], -np.inf).max(axis=1)
            with np.errstate(invalid="ignore", over="ignore"):  # groups of no runs: not clear anyway
                clear &= (distinct >= least) & (np.exp(high - v[:, 0]) >= MIN_SPAN)  # v[:, 0]: the least
    clear &= most_distinct > q

    def scaled_eigenvalues(m):
        m = np.asarray(m, dtype=np.float64)
        finite = np.all(np.isfinite(m), axis=(1, 2))
        m = np.where(finite[:, None, None], m, np.eye(q))
        d = np.diagonal(m, axis1=1, axis2=2)
        zero = d <= ZERO_CURVATURE * np.maximum(d.max(axis=1), 0.0)[:, None]
        s = 1.0 / np.sqrt(np.where(zero, 1.0, d))
        ev = np.linalg.eigh(m * s[:, :, None] * s[:, None, :])[0]
        return finite & ~zero.any(axis=1) & (ev[:, 0] >= CURVATURE_TOL), ev

    h_ok, ev = scaled_eigenvalues(hess)
    g_ok, _ = scaled_eigenvalues(gn)
    clear &= h_ok & g_ok
    with np.errstate(divide="ignore", invalid="ignore"):
        return clear, ev[:, 0], ev[:, -1] / ev[:, 0]


def is_flat(matrices: np.ndarray, skip: np.ndarray) -> np.ndarray:
    """Per matrix ``[B, q, q]``, whether it has a flat direction (as :func:`flat_directions`),
    the parameters in ``skip [B, q]`` left out (their rows and columns replaced by the identity's)."""
    m = np.array(matrices, dtype=np.float64)
    q = m.shape[-1]
    eye = np.eye(q, dtype=bool)
    m = np.where(skip[:, :, None] | skip[:, None, :], eye, m)
    bad = ~np.all(np.isfinite(m), axis=(1, 2))
    m[bad] = np.eye(q)
    d = np.diagonal(m, axis1=1, axis2=2)
    top = np.maximum(np.where(skip, -np.inf, d).max(axis=1), 0.0)
    zero = (d <= ZERO_CURVATURE * top[:, None]) & ~skip
    s = 1.0 / np.sqrt(np.where(zero, 1.0, d))
    m = np.where(zero[:, :, None] | zero[:, None, :], eye, m * s[:, :, None] * s[:, None, :])
    return bad | zero.any(axis=1) | (np.linalg.eigvalsh(m)[:, 0] < CURVATURE_TOL)


def flat_problems(
    cfg: problem.Config,
    data,
    best: problem.Best,
    rows: np.ndarray,
    weights_of,
    skip: np.ndarray,
    *,
    grouped: bool = False,
    data_index: np.ndarray | None = None,
    chunk: int = 1024,
) -> np.ndarray:
    """Which of the problems ``rows`` of an engine outcome stopped on a flat direction (the curvature
    check of :func:`identify`; design and signs are not checked: see ``BootstrapResult.ok``).

    ``weights_of(rows) -> [len(rows), P]``; ``skip [B, q]``: free parameters whose term vanished;
    ``grouped``: ``data`` has one set per problem of ``data_index`` (or per problem).
    """
    flat = np.zeros(len(rows), dtype=bool)
    theta = np.asarray(best.theta, dtype=np.float64)
    with jax.enable_x64(True):
        for lo in range(0, len(rows), chunk):
            sel = rows[lo : lo + chunk]
            # Padded to a power of two problems (cycled, trimmed below) as in assess_groups: a
            # few shapes compile, whatever the number of rows.
            pad = np.resize(np.arange(len(sel)), batches.power_of_two(len(sel)))
            d = data
            if grouped:
                take = sel if data_index is None else np.asarray(data_index)[sel]
                d = problem.Data(*(np.asarray(a)[take[pad]] for a in data))
            matrices = curvature_matrices(cfg, d, theta[sel][pad], weights_of(sel)[pad], grouped)
            hess, gn = (np.asarray(m)[: len(sel)] for m in matrices)
            flat[lo : lo + len(sel)] = is_flat(hess, skip[sel]) | is_flat(gn, skip[sel])
    return flat
