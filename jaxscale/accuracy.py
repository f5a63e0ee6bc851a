"""Downstream laws: accuracy or error from loss or compute, and the two-step prediction.

* ``sigmoid``: ``y = floor + span · σ(k (x − x0))`` in ``x`` itself (e.g. accuracy from loss,
  OLMo's ladder step 2, Ruan et al.'s observational sigmoids);
* ``sigmoid_log``: the same in ``log x`` (e.g. accuracy from compute; ``x0`` is then the
  midpoint's ``x``, not its log);
* ``exp_saturation``: Gadre et al.'s ``Err(L) = epsilon − k · exp(−gamma L)`` (top-1 error from loss).

Each is a :class:`~jaxscale.laws.Law` of one input ``x`` (``read_runs(..., x="loss_c4_val",
loss="err_avg_17tasks")``: ``loss`` names the column fitted, here an error), written in log
space so its predictions stay positive where they are defined; fit them on the natural scale,
as the papers do (``scale="natural"``: least squares on the error itself). The sigmoid's slope
``k`` takes either sign (rising or falling). ``exp_saturation`` is defined only where its error
is positive (``k · exp(−gamma L) < epsilon``): elsewhere its prediction is NaN, and a fit that
ends there is reported ``"nonfinite"``.

:func:`two_step` chains a loss law and one of these: the loss predicted at (N, D), then the
error or accuracy predicted at that loss, with bands over paired resamples of both fits.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxscale.laws import get_law
    >>> law = get_law("exp_saturation")
    >>> theta = law.from_natural({"epsilon": 0.85, "k": 2.0, "gamma": 0.8})
    >>> round(float(law.predict(theta, jnp.log(jnp.array([[3.0]])))[0]), 6)
    0.668564
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .laws import Law, register


def _log_sigmoid(z):
    return -jax.nn.softplus(-z)


def _sigmoid(theta, log_x):
    log_floor, log_span, k, x0 = (theta[i] for i in range(4))
    return jnp.logaddexp(log_floor, log_span + _log_sigmoid(k * (jnp.exp(log_x[..., 0]) - x0)))


def _sigmoid_log(theta, log_x):
    log_floor, log_span, k, log_x0 = (theta[i] for i in range(4))
    return jnp.logaddexp(log_floor, log_span + _log_sigmoid(k * (log_x[..., 0] - log_x0)))


def _exp_saturation(theta, log_x):
    log_eps, log_k, gamma = (theta[i] for i in range(3))
    # log(eps - k e^(-gamma L)) = log eps + log1p(-e^(log k - gamma L - log eps)): NaN where <= 0.
    return log_eps + jnp.log1p(-jnp.exp(log_k - gamma * jnp.exp(log_x[..., 0]) - log_eps))


def _logs(*values: float) -> tuple[float, ...]:
    return tuple(float(np.log(v)) for v in values)


_FLOOR, _SPAN = _logs(1e-3, 0.1, 0.25, 0.5), _logs(0.1, 0.3, 0.6, 0.9)
SIGMOID = Law(
    name="sigmoid",
    inputs=("x",),
    params=("log_floor", "log_span", "k", "x0"),
    natural=("floor", "span", "k", "x0"),
    log_scale=(True, True, False, False),
    log_predict=_sigmoid,
    # x: a loss (1.5-6 nats) or another input of that order.
    grid=(_FLOOR, _SPAN, (-8.0, -2.0, -0.5, 0.5, 2.0, 8.0), (1.5, 2.5, 3.5, 5.0)),
    formula="y(x) = floor + span / (1 + exp(-k (x - x0)))",
)
SIGMOID_LOG = Law(
    name="sigmoid_log",
    inputs=("x",),
    params=("log_floor", "log_span", "k", "log_x0"),
    natural=("floor", "span", "k", "x0"),
    log_scale=(True, True, False, True),
    log_predict=_sigmoid_log,
    # x: compute (1e17-1e25 FLOPs) or model size.
    grid=(_FLOOR, _SPAN, (-2.0, -0.5, -0.1, 0.1, 0.5, 2.0), _logs(1e9, 1e17, 1e20, 1e23)),
    formula="y(x) = floor + span / (1 + exp(-k (log x - log x0)))",
)
EXP_SATURATION = Law(
    name="exp_saturation",
    inputs=("x",),
    params=("log_epsilon", "log_k", "gamma"),
    natural=("epsilon", "k", "gamma"),
    log_scale=(True, True, False),
    log_predict=_exp_saturation,
    grid=(_logs(0.5, 0.75, 0.9, 1.0), _logs(1.0, 3.0, 10.0, 30.0, 100.0), (0.5, 1.0, 1.5, 2.5)),
    formula="Err(x) = epsilon - k exp(-gamma x)",
    positive=("gamma",),
)
for _law in (SIGMOID, SIGMOID_LOG, EXP_SATURATION):
    register(_law)


def _thetas(result) -> tuple[Law, np.ndarray, np.ndarray | None]:
    """The law, the point estimate's fitted parameters ``[1, p]`` and the converged draws' ``[n, p]``."""
    from .results import BootstrapResult, FitResult

    if isinstance(result, BootstrapResult):
        return result.law, result.point.theta[None], np.asarray(result.law.to_fitted(result.draws[result.ok]))
    if isinstance(result, FitResult):
        return result.law, result.theta[None], None
    raise TypeError(f"expected a FitResult or a BootstrapResult; got {type(result).__name__}")


def two_step(loss_result, downstream_result, *, level: float = 0.95, **inputs: Sequence[float]) -> pd.DataFrame:
    """The downstream law's prediction at the loss the loss law predicts at ``inputs``.

    Args:
        loss_result: a fit (or bootstrap) of a loss law, e.g. Chinchilla's L(N, D).
        downstream_result: a fit (or bootstrap) of a law of one input ``x`` = loss, e.g.
            ``exp_saturation`` or ``sigmoid``.
        inputs: the loss law's inputs, e.g. ``N=[6.9e9], D=[1.4e11]``.
        level: of the bands, over resample ``i`` of one paired with resample ``i`` of the other
            (both bootstraps; independent fits), where both converged.

    Returns:
        One row per point: the inputs, ``loss`` and ``predicted`` (the downstream quantity),
        with ``_lower``/``_upper`` columns given two bootstraps.

    Example:
        >>> import numpy as np, jaxscale as js
        >>> loss_fit = js.fit(js.datasets.chinchilla())
        >>> x = np.linspace(2.0, 4.0, 12)
        >>> errors = js.Runs.from_arrays({"x": x}, 0.85 - 2.0 * np.exp(-0.8 * x))
        >>> err_fit = js.fit(errors, "exp_saturation", scale="natural", loss_fn="squared")
        >>> table = two_step(loss_fit, err_fit, N=[7e10], D=[1.4e12])
        >>> round(float(table["loss"][0]), 4), round(float(table["predicted"][0]), 4)
        (1.9734, 0.4375)
    """
    law_l, theta_l, draws_l = _thetas(loss_result)
    law_d, theta_d, draws_d = _thetas(downstream_result)
    if law_d.inputs != ("x",):
        raise ValueError(f"the downstream law takes one input x (a loss); law {law_d.name!r} takes {law_d.inputs}")
    missing = [n for n in law_l.inputs if n not in inputs]
    if missing:
        raise ValueError(f"two_step needs the loss law's inputs {list(law_l.inputs)}; missing {missing}")
    cols = {n: np.atleast_1d(np.asarray(inputs[n], dtype=np.float64)) for n in law_l.inputs}
    log_x = np.log(np.stack([cols[n] for n in law_l.inputs], axis=-1))

    def chain(tl, td):
        with jax.enable_x64(True):
            loss = jax.vmap(lambda t: law_l.predict(t, log_x))(jnp.asarray(tl))
            pred = jax.vmap(lambda t, v: law_d.predict(t, jnp.log(v)[:, None]))(jnp.asarray(td), loss)
        return np.asarray(loss), np.asarray(pred)

    loss, pred = chain(theta_l, theta_d)
    table = pd.DataFrame({**cols, "loss": loss[0], "predicted": pred[0]})
    if draws_l is not None and draws_d is not None:
        n = min(len(draws_l), len(draws_d))
        if n == 0:
            raise ValueError("no bootstrap resample converged on one side: no band can be computed")
        bl, bp = chain(draws_l[:n], draws_d[:n])
        tail = 100 * (1 - level) / 2
        for name, values in (("loss", bl), ("predicted", bp)):
            table[f"{name}_lower"], table[f"{name}_upper"] = np.nanpercentile(values, [tail, 100 - tail], axis=0)
    return table
