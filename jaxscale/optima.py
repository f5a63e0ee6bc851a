"""Each isoFLOP budget's optimum, vectorised over groups, budgets and resamples.

Inputs are padded arrays ``[..., P]`` of one budget's points: ``x`` (log N or log D, centered),
``y`` (loss) and weights ``w`` (0 on padding and on points a resample did not draw). Each
method returns the optimum's ``x``, its loss and whether the budget has one (``ok``):

* :func:`parabola`: Hoffmann et al.'s weighted least-squares parabola in ``x``; its vertex.
* :func:`akima`: Porian et al.'s lowest point of an Akima interpolant of log loss over ``x``
  on a fine grid, interior optima only.

Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([-1.0, 0.0, 1.0, 2.0])
    >>> xv, yv, ok = parabola(x, 3.0 + (x - 0.5) ** 2, jnp.ones(4))
    >>> round(float(xv), 12), round(float(yv), 12), bool(ok)
    (0.5, 3.0, True)
    >>> int(distinct(jnp.array([1.0, 1.0, 2.0, 5.0]), jnp.array([1.0, 1.0, 1.0, 0.0])))
    2
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MIN_SIZES = 3  # a parabola needs 3 distinct sizes
AKIMA_PER_GAP = 25  # grid points per gap between sizes (Porian et al.'s interp_num_multiplier)


def distinct(x: jax.Array, w: jax.Array) -> jax.Array:
    """Distinct values of ``x`` among points of positive weight, per budget (any order)."""
    present = w > 0
    same = (x[..., :, None] == x[..., None, :]) & present[..., None, :]
    earlier = jnp.tril(jnp.ones(same.shape[-2:], bool), k=-1)  # [j, i]: i < j
    seen_before = jnp.any(same & earlier, axis=-1)
    return jnp.sum(present & ~seen_before, axis=-1)


def parabola(x: jax.Array, y: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Weighted least-squares ``y ≈ c0 + c1 x + c2 x²`` per budget → (vertex x, vertex y, ok).

    ``ok`` is false where fewer than :data:`MIN_SIZES` distinct ``x`` have weight (the parabola
    is undetermined) or the parabola is not convex (no minimum).
    """
    s0, s1, s2, s3, s4 = (jnp.sum(w * x**m, axis=-1) for m in range(5))
    t0, t1, t2 = (jnp.sum(w * x**m * y, axis=-1) for m in range(3))
    # Adjugate of the symmetric normal matrix [[s0,s1,s2],[s1,s2,s3],[s2,s3,s4]]: a closed form
    # that vectorises over every budget and resample at once (no batched LAPACK calls).
    m00, m01, m02 = s2 * s4 - s3 * s3, s2 * s3 - s1 * s4, s1 * s3 - s2 * s2
    m11, m12, m22 = s0 * s4 - s2 * s2, s1 * s2 - s0 * s3, s0 * s2 - s1 * s1
    ok = distinct(x, w) >= MIN_SIZES
    det = jnp.where(ok, s0 * m00 + s1 * m01 + s2 * m02, 1.0)
    c0 = (m00 * t0 + m01 * t1 + m02 * t2) / det
    c1 = (m01 * t0 + m11 * t1 + m12 * t2) / det
    c2 = (m02 * t0 + m12 * t1 + m22 * t2) / det
    ok = ok & (c2 > 0)
    c2 = jnp.where(ok, c2, 1.0)
    return jnp.where(ok, -c1 / (2 * c2), 0.0), jnp.where(ok, c0 - c1 * c1 / (4 * c2), 0.0), ok


def _take(a: jax.Array, index: jax.Array) -> jax.Array:
    return jnp.take_along_axis(a, index, axis=-1)


def akima(x: jax.Array, y: jax.Array, w: jax.Array, per_gap: int = AKIMA_PER_GAP):
    """The lowest point of an Akima interpolant of ``y`` (natural loss; interpolated as log
    loss) over ``x``, on a grid of ``per_gap`` points per gap between sizes spanning the sizes
    sampled (Porian et al.'s choice: ``(k - 1) · 25`` points for ``k`` sizes) → (optimum x,
    its loss, ok, at an end of the grid).

    Only the points of positive weight are interpolated (each size once: the caller's points
    have distinct ``x``). The slopes are Akima's (1970) as ``scipy.interpolate.
    Akima1DInterpolator`` computes them (its default ``method="akima"``), the interpolant its
    piecewise cubic Hermite. ``ok`` is false for fewer than :data:`MIN_SIZES` sizes and where
    the lowest grid point is an end of the grid (the optimum is not interior).
    """
    present = w > 0
    n = jnp.sum(present, axis=-1)
    P = x.shape[-1]
    order = jnp.argsort(jnp.where(present, x, jnp.inf), axis=-1, stable=True)
    xs = jnp.where(jnp.arange(P) < n[..., None], _take(x, order), 0.0)
    ys = _take(jnp.log(jnp.where(present, y, 1.0)), order)
    # Segment slopes m_j, j < n - 1, at positions 2.. of an extended array with two more on
    # each side: m[1] = 2 m[2] - m[3], m[0] = 2 m[1] - m[2], and mirrored at the right end.
    seg = jnp.arange(P - 1) < (n - 1)[..., None]
    dx = jnp.where(seg, xs[..., 1:] - xs[..., :-1], 1.0)
    slopes = jnp.where(seg, (ys[..., 1:] - ys[..., :-1]) / dx, 0.0)
    m = jnp.concatenate([jnp.zeros(slopes.shape[:-1] + (2,)), slopes, jnp.zeros(slopes.shape[:-1] + (2,))], axis=-1)
    m = m.at[..., 1].set(2 * m[..., 2] - m[..., 3])
    m = m.at[..., 0].set(2 * m[..., 1] - m[..., 2])
    last = n[..., None]  # position of the last real slope is n (= 2 + (n - 2))
    m_last, m_prev = _take(m, last), _take(m, last - 1)
    right1 = 2 * m_last - m_prev
    right2 = 2 * right1 - m_last
    idx = jnp.arange(m.shape[-1])
    m = jnp.where(idx == last + 1, right1, jnp.where(idx == last + 2, right2, m))
    # Node slopes t_i from m[i..i+3]; where both weights vanish, the mean of the outer two.
    dm = jnp.abs(jnp.diff(m, axis=-1))
    f1, f2 = dm[..., 2 : P + 2], dm[..., :P]
    f12 = f1 + f2
    node = jnp.arange(P) < n[..., None]
    defined = f12 > 1e-9 * jnp.max(jnp.where(node, f12, 0.0), axis=-1, keepdims=True)
    t = jnp.where(
        defined,
        m[..., 1 : P + 1] + f2 / jnp.where(defined, f12, 1.0) * (m[..., 2 : P + 2] - m[..., 1 : P + 1]),
        0.5 * (m[..., 3 : P + 3] + m[..., :P]),
    )
    # The grid: (n - 1) · per_gap points from the smallest to the largest size.
    G = (P - 1) * per_gap
    count = (n - 1) * per_gap
    j = jnp.arange(G)
    x_lo, x_hi = xs[..., :1], _take(xs, jnp.maximum(n - 1, 0)[..., None])
    u = x_lo + (x_hi - x_lo) * j / jnp.maximum(count - 1, 1)[..., None]
    inner = xs[..., 1:]  # sizes 1..P-1: the interval of u is how many of sizes 1..n-2 are <= u
    below = (inner[..., None, :] <= u[..., :, None]) & (jnp.arange(P - 1) < (n - 2)[..., None])[..., None, :]
    k = jnp.sum(below, axis=-1)
    x0, x1, y0, y1 = _take(xs, k), _take(xs, k + 1), _take(ys, k), _take(ys, k + 1)
    t0, t1 = _take(t, k), _take(t, k + 1)
    h = jnp.where(x1 > x0, x1 - x0, 1.0)
    s = (u - x0) / h
    value = (
        (2 * s**3 - 3 * s**2 + 1) * y0
        + (s**3 - 2 * s**2 + s) * h * t0
        + (-2 * s**3 + 3 * s**2) * y1
        + (s**3 - s**2) * h * t1
    )
    value = jnp.where(j < count[..., None], value, jnp.inf)
    best = jnp.argmin(value, axis=-1)
    enough = n >= MIN_SIZES
    end = (best == 0) | (best == count - 1)
    xv = _take(u, best[..., None])[..., 0]
    yv = jnp.exp(_take(value, best[..., None])[..., 0])
    ok = enough & ~end
    return jnp.where(enough, xv, 0.0), jnp.where(enough, yv, 0.0), ok, enough & end
