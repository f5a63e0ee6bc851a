"""Scaling laws as small, hashable descriptions around a pure log-space predictor.

A :class:`Law` is static configuration: it can be passed to ``jax.jit`` as a static
argument. Its predictor ``log_predict(theta, log_x)`` maps *fitted* parameters ``theta``
(shape ``[p]``) and the logs of the inputs (shape ``[..., k]``) to the log of the predicted
loss (shape ``[...]``). Fitting happens in log space because the inputs span 1e6–1e13 and
the LogSumExp form never exponentiates a large number.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxscale.laws import get_law
    >>> law = get_law("chinchilla")
    >>> theta = law.from_natural({"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28})
    >>> x = jnp.log(jnp.array([[70e9, 1.4e12]]))
    >>> round(float(jnp.exp(law.log_predict(theta, x))[0]), 3)
    1.937
"""

from __future__ import annotations

import functools
import importlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

LogPredict = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


@dataclass(frozen=True)
class Law:
    """A scaling law: names, a log-space predictor and a default start grid.

    Attributes:
        name: short name used in reports and on the command line.
        inputs: names of the input variables, in column order of ``log_x`` (e.g. ``("N", "D")``).
        params: names of the fitted parameters, in order of ``theta``.
        natural: names of the natural parameters, one per fitted parameter.
        log_scale: for each parameter, whether the fitted value is the log of the natural one.
        log_predict: ``(theta [p], log_x [..., k]) -> log loss [...]``, pure and
            differentiable; batch over parameter sets with ``jax.vmap``.
        grid: default start grid, one tuple of values per fitted parameter; the starts are
            their Cartesian product.
        center_pairs: ``(coef, exponent, input)`` index triples such that the predictor
            depends on them only through ``theta[coef] - theta[exponent] * log_x[input]``.
            The solver then works in coordinates where ``log_x[input]`` is centered, which
            removes the strong coef/exponent correlation (a conditioning fix, nothing more).
        formula: human-readable formula for reports.
        derived: optional ``natural params by name -> derived quantities by name`` (works on
            scalars and arrays), e.g. Chinchilla's frontier exponents ``a`` and ``b``.
        screen_float32: the predictor is safe to evaluate in float32 (nothing in it can
            overflow there), so screening may rank the start grid in float32 first and keep
            float64 for the final ranking of the best few hundred (see ``screening.screen_one``).
        positive: natural parameters the law requires to be > 0 though they are fitted freely
            (e.g. Chinchilla's exponents: a negative one means loss rising with scale); a fit
            that ends with one <= 0 is reported ``"unidentified"`` (:mod:`jaxscale.identify`).
    """

    name: str
    inputs: tuple[str, ...]
    params: tuple[str, ...]
    natural: tuple[str, ...]
    log_scale: tuple[bool, ...]
    log_predict: LogPredict
    grid: tuple[tuple[float, ...], ...]
    center_pairs: tuple[tuple[int, int, int], ...] = ()
    formula: str = ""
    derived: Callable[[dict], dict] | None = None
    screen_float32: bool = False
    positive: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        p = len(self.params)
        if not (len(self.natural) == len(self.log_scale) == len(self.grid) == p):
            raise ValueError(
                f"law {self.name!r}: params, natural, log_scale and grid must all have "
                f"{p} entries (one per fitted parameter)"
            )
        for coef, expo, inp in self.center_pairs:
            if not (0 <= coef < p and 0 <= expo < p and 0 <= inp < len(self.inputs)):
                raise ValueError(f"law {self.name!r}: center pair {(coef, expo, inp)} out of range")
        unknown = [n for n in self.positive if n not in self.natural]
        if unknown:
            raise ValueError(f"law {self.name!r}: positive names {unknown} are not among its parameters {self.natural}")

    @property
    def n_params(self) -> int:
        return len(self.params)

    def grid_points(self) -> np.ndarray:
        """The default start grid as a ``[S, p]`` float64 array of fitted parameters."""
        return np.array(list(itertools.product(*self.grid)), dtype=np.float64)

    def to_natural(self, theta):
        """Fitted parameters ``[..., p]`` -> natural parameters ``[..., p]`` (works on jax and numpy)."""
        mask = np.array(self.log_scale)
        if not isinstance(theta, np.ndarray):
            return jnp.where(mask, jnp.exp(theta), theta)
        # A resample whose coefficient ran off along a flat direction gives inf, as it should.
        with np.errstate(over="ignore"):
            return np.where(mask, np.exp(theta), theta)

    def to_fitted(self, natural) -> np.ndarray:
        """Natural parameters ``[..., p]`` -> fitted parameters ``[..., p]`` (numpy; the inverse of
        :meth:`to_natural`; a non-positive value of a log-scale parameter gives NaN/-inf)."""
        natural = np.asarray(natural, dtype=np.float64)
        mask = np.array(self.log_scale)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(mask, np.log(np.where(mask, natural, 1.0)), natural)

    def from_natural(self, values: Mapping[str, float]) -> np.ndarray:
        """Natural parameters by name -> fitted vector ``[p]`` (float64)."""
        missing = [n for n in self.natural if n not in values]
        if missing:
            raise ValueError(f"law {self.name!r} needs values for {missing}; got {sorted(values)}")
        out = np.empty(self.n_params)
        for i, (nat, is_log) in enumerate(zip(self.natural, self.log_scale, strict=True)):
            v = float(values[nat])
            if is_log and not v > 0:
                raise ValueError(f"parameter {nat} must be > 0 (it is fitted as its log); got {v}")
            out[i] = np.log(v) if is_log else v
        return out

    def natural_index(self, name: str) -> int:
        """Position of a natural parameter name, with a clear error listing the valid names."""
        if name not in self.natural:
            raise ValueError(f"law {self.name!r} has no parameter {name!r}; its parameters are {list(self.natural)}")
        return self.natural.index(name)

    def derive(self, natural: Mapping) -> dict:
        """Derived quantities from natural parameters by name (empty when the law has none)."""
        return dict(self.derived(natural)) if self.derived is not None else {}

    @property
    def derived_names(self) -> tuple[str, ...]:
        """Names of the derived quantities (e.g. ``("a", "b")`` for Chinchilla)."""
        return tuple(self.derive(dict.fromkeys(self.natural, 1.0)))

    def predict(self, theta, log_x):
        """Predicted loss (natural scale) at ``log_x``: NaN where the law is undefined (a
        prediction that is not positive, e.g. a custom law's negative base, whose log
        :func:`jaxscale.zoo.make_law` clamps to the smallest float so that fits stay finite)."""
        log_pred = self.log_predict(theta, log_x)
        return jnp.where(log_pred > jnp.log(jnp.finfo(log_pred.dtype).tiny), jnp.exp(log_pred), jnp.nan)


def uncenter(law: Law, theta_c, shift):
    """Centered-coordinate parameters -> the law's own fitted parameters.

    ``shift`` has one entry per ``law.center_pairs`` (the center of that pair's log input,
    or 0 to leave the pair alone). Linear in ``theta_c``, so it is exact and differentiable.
    """
    theta = theta_c
    for j, (coef, expo, _) in enumerate(law.center_pairs):
        theta = theta.at[..., coef].add(theta_c[..., expo] * shift[..., j])
    return theta


def center(law: Law, theta, shift):
    """Inverse of :func:`uncenter`."""
    theta_c = theta
    for j, (coef, expo, _) in enumerate(law.center_pairs):
        theta_c = theta_c.at[..., coef].add(-theta[..., expo] * shift[..., j])
    return theta_c


def _exp_shares(ts):
    """``exp(t_j - max_k t_k)`` for each of the arrays ``ts`` (a LogSumExp's unnormalised weights)."""
    top = functools.reduce(jnp.maximum, ts)
    return tuple(jnp.exp(t - top) for t in ts)


def _ranked_shares(ts):
    """:func:`_exp_shares`, the same values, taking the ``exp`` of all but the largest term (whose
    share is 1) for 2 or 3 float64 terms, where an ``exp`` is much of the objective's cost."""
    if ts[0].dtype != jnp.float64 or len(ts) > 3:
        return _exp_shares(ts)
    top = functools.reduce(jnp.maximum, ts)
    if len(ts) == 2:
        t0, t1 = ts
        e = jnp.exp(jnp.minimum(t0, t1) - top)
        return jnp.where(t0 == top, 1.0, e), jnp.where(t1 == top, 1.0, e)
    t0, t1, t2 = ts
    low = jnp.minimum(t0, t1)
    bottom = jnp.minimum(low, t2)
    middle = jnp.maximum(low, jnp.minimum(jnp.maximum(t0, t1), t2))
    e_middle, e_bottom = jnp.exp(middle - top), jnp.exp(bottom - top)
    return tuple(jnp.where(t == top, 1.0, jnp.where(t == bottom, e_bottom, e_middle)) for t in ts)


# Where the objective is differentiated (every solver step), the shares are ranked; where it is
# only evaluated (screening) the plain exps are cheaper than the ranking's selects. Either way
# the derivative is that of exp(t_j - c) with the max c held constant, as jax.nn.logsumexp's
# stop_gradient has it; differentiating through the ranking's min/max instead would be wrong at
# ties (a start with two equal terms).
@jax.custom_jvp
def _shares(ts):
    return _exp_shares(ts)


@jax.custom_jvp
def _ranked(ts):
    return _ranked_shares(ts)


def _shares_jvp(primals, tangents):
    shares = _ranked(*primals)
    return shares, tuple(e * dt for e, dt in zip(shares, tangents[0], strict=True))


_shares.defjvp(_shares_jvp)
_ranked.defjvp(_shares_jvp)


def lse_linear(terms: tuple[tuple[int | None, tuple[tuple[int, int], ...]], ...]):
    """The predictor ``log L = LSE_j(θ[c_j] − Σ θ[e]·log x[k])`` (LogSumExp of linear terms).

    ``terms`` lists, per LogSumExp term, its coefficient index ``c_j`` (or None) and its
    ``(exponent index, input index)`` pairs; e.g. Chinchilla is
    ``((0, ()), (1, ((3, 0),)), (2, ((4, 1),)))`` for ``[e, a − α log N, b − β log D]``.
    """

    def term_list(theta, log_x):
        # Terms kept as separate arrays (not stacked on a minor axis of length 2-3) so that
        # XLA vectorises every exp/log along the points. ``theta [p, ...]`` may carry axes of
        # its own (screening.grid_values: one value per grid combination), broadcast with the
        # points'.
        out = []
        for coef, powers in terms:
            t = theta[coef] if coef is not None else jnp.zeros((), theta.dtype)
            for expo, inp in powers:
                t = t - theta[expo] * log_x[..., inp]
            out.append(jnp.broadcast_to(t, jnp.broadcast_shapes(jnp.shape(t), log_x.shape[:-1])))
        return out

    def log_predict(theta, log_x):
        ts = tuple(term_list(theta, log_x))
        # The max is a constant shift: stop its gradient, as jax.nn.logsumexp does.
        top = jax.lax.stop_gradient(functools.reduce(jnp.maximum, ts))
        return top + jnp.log(functools.reduce(jnp.add, _shares(ts)))

    log_predict.lse_terms = terms  # read by screening.grid_values, with the terms' values:
    log_predict.term_values = term_list
    return log_predict


def _frontier_exponents(p):
    # Under C = 6ND, N_opt ∝ C^a and D_opt ∝ C^b with a = β/(α+β), b = α/(α+β) (Hoffmann et al.).
    # α + β = 0 (a fit stopped at a start with both exponents 0) gives NaN, not an exception.
    alpha, beta = np.asarray(p["alpha"], dtype=np.float64), np.asarray(p["beta"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"a": beta / (alpha + beta), "b": alpha / (alpha + beta)}


_chinchilla = lse_linear(((0, ()), (1, ((3, 0),)), (2, ((4, 1),))))
_power = lse_linear(((0, ()), (1, ((2, 0),))))

_HALF = tuple(np.round(np.arange(0.0, 2.01, 0.5), 10))
_E_GRID = tuple(np.round(np.arange(-1.0, 1.01, 0.5), 10))
_COEF_GRID = tuple(float(v) for v in range(0, 26, 5))

CHINCHILLA = Law(
    name="chinchilla",
    inputs=("N", "D"),
    params=("e", "a", "b", "alpha", "beta"),
    natural=("E", "A", "B", "alpha", "beta"),
    log_scale=(True, True, True, False, False),
    log_predict=_chinchilla,
    # Epoch AI's replication grid (Besiroglu et al. 2024): 5 x 6 x 6 x 5 x 5 = 4,500 starts.
    grid=(_E_GRID, _COEF_GRID, _COEF_GRID, _HALF, _HALF),
    center_pairs=((1, 3, 0), (2, 4, 1)),
    formula="L(N, D) = E + A / N^alpha + B / D^beta",
    derived=_frontier_exponents,
    screen_float32=True,  # LogSumExp of linear terms: every exp is of t - max(t) <= 0
    positive=("alpha", "beta"),
)

# Tied exponents (alpha = beta), as Gadre et al. and Li et al. fit them: the Chinchilla law
# with one exponent for both terms, so N_opt and D_opt both grow as C^0.5 under C = 6ND.
CHINCHILLA_TIED = Law(
    name="chinchilla_tied",
    inputs=("N", "D"),
    params=("e", "a", "b", "alpha"),
    natural=("E", "A", "B", "alpha"),
    log_scale=(True, True, True, False),
    log_predict=lse_linear(((0, ()), (1, ((3, 0),)), (2, ((3, 1),)))),
    grid=(_E_GRID, _COEF_GRID, _COEF_GRID, _HALF),
    center_pairs=((1, 3, 0), (2, 3, 1)),
    formula="L(N, D) = E + A / N^alpha + B / D^alpha",
    derived=lambda p: _frontier_exponents({**p, "beta": p["alpha"]}),
    screen_float32=True,
    positive=("alpha",),
)

POWER = Law(
    name="power",
    inputs=("x",),
    params=("e", "a", "alpha"),
    natural=("E", "A", "alpha"),
    log_scale=(True, True, False),
    log_predict=_power,
    grid=(_E_GRID, _COEF_GRID, _HALF),
    center_pairs=((1, 2, 0),),
    formula="L(x) = E + A / x^alpha",
    screen_float32=True,
    positive=("alpha",),
)

_REGISTRY: dict[str, Law] = {law.name: law for law in (CHINCHILLA, CHINCHILLA_TIED, POWER)}


def _with_zoo() -> dict[str, Law]:
    """The registry, once :mod:`jaxscale.zoo` has registered its laws in it.

    The zoo builds its laws from this module's, so it is imported here on first lookup rather
    than at the top (``import jaxscale`` itself imports nothing until a name is used).
    """
    importlib.import_module("jaxscale.zoo")  # already imported (or being imported): no effect
    return _REGISTRY


def register(law: Law, *, replace: bool = False) -> Law:
    """Make ``law`` available by name to :func:`get_law` (``fit(runs, law="name")``, the CLI).

    :mod:`jaxscale.zoo` registers its laws this way.
    """
    registry = _with_zoo()
    if not isinstance(law, Law):
        raise TypeError(f"register() takes a Law (see jaxscale.make_law); got {type(law).__name__}")
    if not replace and law.name in registry and registry[law.name] is not law:
        raise ValueError(f"a law named {law.name!r} is already registered; pass replace=True to override it")
    registry[law.name] = law
    return law


def registered_laws() -> tuple[Law, ...]:
    """Every law :func:`get_law` knows by name, in order of registration."""
    return tuple(_with_zoo().values())


def get_law(law: str | Law) -> Law:
    """Look a law up by name (or pass a :class:`Law` through).

    A name with a ``:`` loads a law of your own (:func:`jaxscale.law_files.load_law_spec`):
    ``"module:name"`` or ``"path/to/file.py:name"``.
    """
    if isinstance(law, Law):
        return law
    if isinstance(law, str) and ":" in law:
        from .law_files import load_law_spec  # law_files imports this module

        return load_law_spec(law)
    registry = _with_zoo()
    try:
        return registry[law]
    except KeyError:
        raise ValueError(
            f"unknown law {law!r}; available: {sorted(registry)}, or a law of your own as 'module:function' or "
            "'path/to/file.py:function'"
        ) from None
