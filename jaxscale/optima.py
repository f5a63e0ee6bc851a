"""Each isoFLOP budget's optimum, vectorised over groups, budgets and resamples.

Inputs are padded arrays ``[..., P]`` of one budget's points: ``x`` (log N or log D, centered),
``y`` (loss) and weights ``w`` (0 on padding and on points a resample did not draw). Each
method returns the optimum's ``x``, its loss and whether the budget has one (``ok``):

* :func:`parabola`: Hoffmann et al.'s weighted least-squares parabola in ``x``; its vertex.

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
