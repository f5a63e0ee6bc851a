"""The law zoo: Kaplan, data-constrained (Muennighoff), broken power (Caballero), over-training
(Gadre), and laws written by the user as plain JAX functions.

Every law here is a :class:`~jaxscale.laws.Law` (a log-space predictor on log inputs, a start
grid, fitted <-> natural parameters) registered under its name, so ``fit``, ``bootstrap``,
``validate`` and ``fixed=`` work with no other code. Each predictor is written in log space
(LogSumExp of log-terms, ``softplus``, ``log1p``/``expm1``) so that nothing large is ever
exponentiated, and positive parameters are fitted as logs.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxscale.laws import get_law
    >>> law = get_law("kaplan")
    >>> theta = law.from_natural({"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095})
    >>> x = jnp.log(jnp.array([[1e9, 1e11]]))
    >>> round(float(law.predict(theta, x)[0]), 3)
    2.389
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .laws import CHINCHILLA, Law, register


def _lse(*terms):
    """LogSumExp of same-shaped arrays (``jnp.logaddexp`` is stable and gradient-safe)."""
    return functools.reduce(jnp.logaddexp, terms)


def _log_grid(*values: float) -> tuple[float, ...]:
    return tuple(float(np.log(v)) for v in values)


# --------------------------------------------------------------------------------------------
# Kaplan et al. (2020), Eq. 1.5: L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D
# log L = alpha_D * LSE((alpha_N / alpha_D) (log N_c - log N), log D_c - log D); all four
# parameters are positive and fitted as logs (so alpha_D never reaches 0 in the ratio).


def _kaplan(theta, log_x):
    log_nc, log_dc, log_an, log_ad = (theta[i] for i in range(4))
    alpha_d = jnp.exp(log_ad)
    t_n = jnp.exp(log_an - log_ad) * (log_nc - log_x[..., 0])
    t_d = log_dc - log_x[..., 1]
    return alpha_d * _lse(t_n, t_d)


KAPLAN = Law(
    name="kaplan",
    inputs=("N", "D"),
    params=("log_N_c", "log_D_c", "log_alpha_N", "log_alpha_D"),
    natural=("N_c", "D_c", "alpha_N", "alpha_D"),
    log_scale=(True, True, True, True),
    log_predict=_kaplan,
    # Two decades apart around Kaplan et al.'s own fit (N_c = 8.8e13, D_c = 5.4e13,
    # alpha_N = 0.076, alpha_D = 0.095, all inside), wide enough for Chinchilla-like data
    # (exponents ~0.3): 5 x 5 x 4 x 4 = 400 starts.
    grid=(
        _log_grid(1e8, 1e10, 1e12, 1e14, 1e16),
        _log_grid(1e8, 1e10, 1e12, 1e14, 1e16),
        _log_grid(0.05, 0.1, 0.2, 0.4),
        _log_grid(0.05, 0.1, 0.2, 0.4),
    ),
    formula="L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D",
)


# --------------------------------------------------------------------------------------------
# Muennighoff et al. (2023), Eq. 5 (datablations README, "Parametric Fit"):
#   L = E + A / N'^alpha + B / D'^beta, with
#   D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)),  U_D = min(U, D),  R_D = max(D / U_D - 1, 0)
#   N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)),  U_N = min(N, N_opt(C(U))),  R_N = max(N / U_N - 1, 0)
# N_opt(C(U)) is the compute-optimal N under the law's own Chinchilla coefficients for the
# budget at which U would be the optimal D: with G = (alpha A / (beta B))^(1 / (alpha + beta)),
# D_opt(C) = (C / 6)^b / G and N_opt(C) = G (C / 6)^a (a = beta / (alpha + beta),
# b = alpha / (alpha + beta)), so N_opt(C(U)) = G (G U)^(beta / alpha).

# Repetition counts beyond e^50 (~5e21 epochs or excess-parameter ratios) change nothing in
# the fitted regime; clipping there keeps every exp finite, values and gradients alike.
_MAX_LOG = 50.0


def _log_repeat_gain(excess, log_r_star):
    """``log(1 + R* (1 - exp(-R / R*)))`` for ``R = exp(excess) - 1`` repetitions (``excess >= 0``).

    Every intermediate is finite for any input: ``excess`` and ``log R*`` are clipped to
    ``[0, 50]`` and ``[-50, 50]``, and ``R / R*`` is formed as ``expm1(excess) * exp(-log R*)``
    (no division by a vanishing ``R*``), so no branch needs masking.
    """
    log_r_star = jnp.clip(log_r_star, -_MAX_LOG, _MAX_LOG)
    frac = -jnp.expm1(-jnp.expm1(excess) * jnp.exp(-log_r_star))  # 1 - exp(-R / R*)
    return jnp.log1p(jnp.exp(log_r_star) * frac)


def _log_n_opt_of_u(e_a, e_b, alpha, beta, log_u):
    """``log N_opt(C(U))`` (see above); ``+inf`` (no excess parameters) unless alpha, beta > 0.

    Double ``where``: the logs only ever see positive exponents, so the masked branch cannot
    leak a NaN into the gradient (optax ``safe_norm`` style).
    """
    ok = (alpha > 0) & (beta > 0)
    al = jnp.where(ok, alpha, 1.0)
    be = jnp.where(ok, beta, 1.0)
    log_g = (jnp.log(al) + e_a - jnp.log(be) - e_b) / (al + be)
    return jnp.where(ok, log_g + (be / al) * (log_g + log_u), jnp.inf)


def _data_constrained(theta, log_x):
    e, a, b, alpha, beta, log_rd, log_rn = (theta[i] for i in range(7))
    log_n, log_d, log_u = log_x[..., 0], log_x[..., 1], log_x[..., 2]
    # max(·, 0) and min(·, ·) as clips of log ratios: log(D / U_D) and log(N / U_N) are >= 0.
    excess_d = jnp.clip(log_d - log_u, 0.0, _MAX_LOG)
    excess_n = jnp.clip(log_n - _log_n_opt_of_u(a, b, alpha, beta, log_u), 0.0, _MAX_LOG)
    log_d_eff = log_d - excess_d + _log_repeat_gain(excess_d, log_rd)
    log_n_eff = log_n - excess_n + _log_repeat_gain(excess_n, log_rn)
    return _lse(jnp.broadcast_to(e, log_n.shape), a - alpha * log_n_eff, b - beta * log_d_eff)


DATA_CONSTRAINED = Law(
    name="data_constrained",
    inputs=("N", "D", "U"),
    params=("e", "a", "b", "alpha", "beta", "log_R_D", "log_R_N"),
    natural=("E", "A", "B", "alpha", "beta", "R_D", "R_N"),
    log_scale=(True, True, True, False, False, True, True),
    log_predict=_data_constrained,
    # Chinchilla's 4,500-point grid times 4 x 4 decay constants, log-spaced over 1-1000
    # repetitions. (The authors' grid, np.linspace(0, 20, 4) for both, starts at R* = 0
    # where the law is 0/0; on their 182 runs the objective has several local minima along
    # a flat R_D*/R_N* valley that reaches R_D* ~ 100, which a 1-20 grid never visits.)
    grid=CHINCHILLA.grid + (_log_grid(1, 10, 100, 1000), _log_grid(1, 10, 100, 1000)),
    formula=(
        "L(N, D, U) = E + A / N'^alpha + B / D'^beta;  D' = U_D (1 + R_D (1 - exp(-(D/U_D - 1) / R_D))),"
        " U_D = min(D, U);  N' = U_N (1 + R_N (1 - exp(-(N/U_N - 1) / R_N))), U_N = min(N, N_opt(C(U)))"
    ),
    positive=("alpha", "beta"),
)


# --------------------------------------------------------------------------------------------
# Caballero et al. (2022), broken neural scaling law in one input x:
#   y = a + b x^(-c0) prod_i (1 + (x / d_i)^(1 / f_i))^(-c_i f_i)
#   log y = LSE(log a, log b - c0 log x - sum_i c_i f_i softplus((log x - log d_i) / f_i))

_BASE_GRID = (
    CHINCHILLA.grid[0],  # log a: a in e^-1 .. e^1
    (0.0, 5.0, 10.0, 15.0),  # log b
    (0.0, 0.25, 0.5, 1.0),  # c0
)
# The first break gets 30 starts, each further break 10 (3 x 5 x 2, then 2 x 5 x 1): break
# locations d_i from 1e3 to 1e11 (rescale x, or pass starts=, for inputs outside that range).
_FIRST_BREAK = ((-0.2, 0.2, 0.5), _log_grid(1e3, 1e5, 1e7, 1e9, 1e11), _log_grid(0.2, 1.0))
_OTHER_BREAK = ((-0.2, 0.3), _log_grid(1e3, 1e5, 1e7, 1e9, 1e11), _log_grid(0.5))


@functools.cache
def broken_power_law(n_breaks: int = 1) -> Law:
    """Caballero et al.'s broken power law in one input ``x`` with ``n_breaks`` breaks.

    Natural parameters ``a, b, c0`` then ``c{i}, d{i}, f{i}`` per break (``a, b, d_i, f_i > 0``,
    fitted as logs; the slopes ``c0, c_i`` are free). The default grid has ``80 * 30 * 10^(n-1)``
    starts; beyond two breaks pass ``starts=`` instead. Cached: one :class:`Law` per ``n_breaks``,
    so repeated fits reuse one compiled kernel.
    """
    if not (isinstance(n_breaks, int) and n_breaks >= 1):
        raise ValueError(f"n_breaks must be an integer >= 1; got {n_breaks!r}")

    def log_predict(theta, log_x):
        lx = log_x[..., 0]
        t = theta[1] - theta[2] * lx
        for i in range(n_breaks):
            c, log_d, log_f = theta[3 + 3 * i], theta[4 + 3 * i], theta[5 + 3 * i]
            f = jnp.exp(log_f)
            t = t - c * f * jax.nn.softplus((lx - log_d) / f)
        return _lse(jnp.broadcast_to(theta[0], lx.shape), t)

    idx = range(1, n_breaks + 1)
    breaks = tuple(itertools.chain.from_iterable((f"c{i}", f"d{i}", f"f{i}") for i in idx))
    return Law(
        name="broken_power" if n_breaks == 1 else f"broken_power_{n_breaks}",
        inputs=("x",),
        params=("log_a", "log_b", "c0") + tuple(n if n[0] == "c" else f"log_{n}" for n in breaks),
        natural=("a", "b", "c0") + breaks,
        log_scale=(True, True, False) + (False, True, True) * n_breaks,
        log_predict=log_predict,
        grid=_BASE_GRID + _FIRST_BREAK + _OTHER_BREAK * (n_breaks - 1),
        center_pairs=((1, 2, 0),),  # log b - c0 log x
        formula="y = a + b x^(-c0) " + " ".join(f"(1 + (x/d{i})^(1/f{i}))^(-c{i} f{i})" for i in idx),
    )


BROKEN_POWER = broken_power_law(1)


# --------------------------------------------------------------------------------------------
# Gadre et al. (2024), the authors' fitted form (scaling/laws.py::powlaw_ours), inputs N and
# tokens per parameter M = D / N:  L(N, M) = E + alpha N^b + beta 6^(b/2) (M N)^b,  b < 0.
# b < 0 is enforced by fitting log(-b): the natural parameter is neg_b = -b > 0 and b itself is
# reported as a derived quantity. (With C = 6 N D = 6 M N^2 this is the paper's
# L(C, M) = E + (a M^eta + b M^-eta) C^-eta with eta = -b / 2; for b >= 0 the loss would grow
# with scale, so the constraint only removes non-physical optima.)


def _overtraining(theta, log_x):
    e, log_alpha, log_beta, log_neg_b = (theta[i] for i in range(4))
    k = jnp.exp(log_neg_b)
    log_n, log_m = log_x[..., 0], log_x[..., 1]
    t_n = log_alpha - k * log_n
    t_d = log_beta - k * (0.5 * np.log(6.0) + log_m + log_n)
    return _lse(jnp.broadcast_to(e, log_n.shape), t_n, t_d)


OVERTRAINING = Law(
    name="overtraining",
    inputs=("N", "M"),
    params=("e", "log_alpha", "log_beta", "log_neg_b"),
    natural=("E", "alpha", "beta", "neg_b"),
    log_scale=(True, True, True, True),
    log_predict=_overtraining,
    # The authors' initial values for alpha and beta (1e2 .. 3e3), Chinchilla's E grid, and
    # -b from 0.1 to 0.5 (the authors start at 0.1 and 0.3): 5 x 4 x 4 x 4 = 320 starts.
    grid=(
        CHINCHILLA.grid[0],
        _log_grid(1e2, 3e2, 1e3, 3e3),
        _log_grid(1e2, 3e2, 1e3, 3e3),
        _log_grid(0.1, 0.2, 0.3, 0.5),
    ),
    formula="L(N, M) = E + alpha N^b + beta 6^(b/2) (M N)^b,  b = -neg_b < 0",
    derived=lambda p: {"b": -p["neg_b"]},
)


# --------------------------------------------------------------------------------------------
# User-defined laws.


def _safe_log(y):
    """``log y`` where ``y > 0``; elsewhere the log of the smallest positive float (a large,
    finite residual with zero gradient). Double ``where``: ``log`` never sees ``y <= 0``."""
    tiny = jnp.finfo(y.dtype).tiny
    ok = y > tiny
    return jnp.where(ok, jnp.log(jnp.where(ok, y, 1.0)), jnp.log(tiny))


def make_law(
    fn: Callable[[dict, dict], jax.Array],
    *,
    params: Sequence[str],
    inputs: Sequence[str],
    grid: Mapping[str, Sequence[float]] | Sequence[Sequence[float]],
    space: str = "natural",
    positive: Sequence[str] = (),
    name: str = "custom",
    formula: str = "",
    derived: Callable[[dict], dict] | None = None,
) -> Law:
    """A :class:`Law` from a plain JAX function .

    Args:
        fn: ``fn(p, x)`` with ``p`` the natural parameters by name (scalars) and ``x`` the
            inputs by name (arrays of the runs). With ``space="natural"``, ``x`` holds the
            inputs themselves and ``fn`` returns the predicted loss (> 0; it is logged safely:
            a non-positive prediction becomes a large, finite residual). With ``space="log"``,
            ``x`` holds the logs of the inputs and ``fn`` returns the log of the loss.
        params: natural parameter names, e.g. ``("E", "A", "alpha")``.
        inputs: input names, matched to the runs' inputs by name (``read_runs(..., N="col")``).
        grid: start values per parameter, in natural units: a mapping ``name -> values`` or
            one sequence per parameter in ``params`` order; the starts are their product.
        positive: parameters that must be > 0; they are fitted as logs (better conditioned
            for coefficients spanning decades) and their grid values must be > 0.
        name, formula, derived: as in :class:`Law`.

    Example:
        >>> import jax.numpy as jnp
        >>> law = make_law(
        ...     lambda p, x: p["E"] + p["A"] / x["N"] ** p["alpha"],
        ...     params=("E", "A", "alpha"), inputs=("N",), positive=("E", "A"),
        ...     grid={"E": [1.0, 2.0], "A": [10.0, 100.0], "alpha": [0.1, 0.3]},
        ... )
        >>> theta = law.from_natural({"E": 1.5, "A": 100.0, "alpha": 0.5})
        >>> float(law.predict(theta, jnp.log(jnp.array([[1e4]])))[0])
        2.5
    """
    params, inputs, positive = tuple(params), tuple(inputs), tuple(positive)
    if space not in ("natural", "log"):
        raise ValueError(f"space must be 'natural' (fn returns the loss) or 'log' (fn returns log loss); got {space!r}")
    if not params or len(set(params)) != len(params):
        raise ValueError(f"params must be distinct names, one per parameter; got {params}")
    if not inputs or len(set(inputs)) != len(inputs):
        raise ValueError(f"inputs must be distinct names, one per input column; got {inputs}")
    unknown = [n for n in positive if n not in params]
    if unknown:
        raise ValueError(f"positive names {unknown} are not parameters; the parameters are {list(params)}")
    columns = _grid_columns(grid, params)
    is_log = tuple(n in positive for n in params)
    for n, lg, values in zip(params, is_log, columns, strict=True):
        if lg and not all(v > 0 for v in values):
            raise ValueError(
                f"parameter {n} is positive (fitted as its log): its grid values must be > 0; got {values}"
            )

    def natural(theta):
        return {n: jnp.exp(theta[i]) if lg else theta[i] for i, (n, lg) in enumerate(zip(params, is_log, strict=True))}

    def log_predict(theta, log_x):
        if space == "log":
            out = fn(natural(theta), {n: log_x[..., j] for j, n in enumerate(inputs)})
        else:
            out = _safe_log(jnp.asarray(fn(natural(theta), {n: jnp.exp(log_x[..., j]) for j, n in enumerate(inputs)})))
        return jnp.broadcast_to(out, log_x.shape[:-1])

    return Law(
        name=name,
        inputs=inputs,
        params=tuple(f"log_{n}" if lg else n for n, lg in zip(params, is_log, strict=True)),
        natural=params,
        log_scale=is_log,
        log_predict=log_predict,
        grid=tuple(
            tuple(float(np.log(v)) if lg else float(v) for v in values)
            for lg, values in zip(is_log, columns, strict=True)
        ),
        formula=formula or f"user law {name!r} ({space} space)",
        derived=derived,
    )


def _grid_columns(grid, params: tuple[str, ...]) -> list[tuple[float, ...]]:
    if isinstance(grid, Mapping):
        missing = [n for n in params if n not in grid]
        extra = [n for n in grid if n not in params]
        if missing or extra:
            raise ValueError(f"grid needs start values for exactly {list(params)}; missing {missing}, unknown {extra}")
        columns = [grid[n] for n in params]
    else:
        columns = list(grid)
        if len(columns) != len(params):
            raise ValueError(
                f"grid needs one sequence of start values per parameter {list(params)}; got {len(columns)}"
            )
    out = [tuple(float(v) for v in np.atleast_1d(np.asarray(c, dtype=np.float64))) for c in columns]
    for n, values in zip(params, out, strict=True):
        if not values or not all(np.isfinite(values)):
            raise ValueError(f"grid values for {n} must be a non-empty list of finite numbers; got {values}")
    return out


for _law in (KAPLAN, DATA_CONSTRAINED, BROKEN_POWER, OVERTRAINING):
    register(_law)

# The downstream laws (accuracy and error from loss or compute) register with the zoo's.
from . import accuracy  # noqa: E402, F401
