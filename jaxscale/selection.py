"""Exact k-smallest selection by bisection, for ranking thousands of starts per problem.

``jax.lax.top_k`` sorts on XLA:CPU, which made picking the best 8 (or 128-256) of 4,500 screened
starts a large share of screening. The k-th smallest value is found instead by bisection on
the values' order-preserving integer keys (one compare-and-count pass over the row per halving,
until a threshold has exactly k keys at or below it), and only the ``k`` selected entries are
sorted: several times faster per row, with the same indices in the same order as ``top_k``
(ties in index order).

Short rows (the 128-256 starts a two-stage screen keeps) are sorted instead: the bisection's
loop costs more to compile, in every kernel that screens, than sorting 256 values costs at run
time. A kernel that ranks a single row (one fit) sorts it whatever its length
(``sort_at_most``). Figures: benchmarks/RESULTS.md, "Selection".

Example:
    >>> import jax.numpy as jnp
    >>> from jaxscale.selection import smallest_k
    >>> smallest_k(jnp.array([3.0, 1.0, jnp.nan, 1.0, -2.0, 5.0]), 3).tolist()
    [4, 1, 3]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_INT = {jnp.dtype(jnp.float64): jnp.int64, jnp.dtype(jnp.float32): jnp.int32}


def _order_key(v: jax.Array) -> jax.Array:
    """Floats -> signed integers of the same width and order (-0.0 and 0.0 equal)."""
    itype = _INT[v.dtype]
    # -0.0 -> 0.0 (a where, since XLA may simplify v + 0.0 to v).
    bits = jax.lax.bitcast_convert_type(jnp.where(v == 0, jnp.zeros((), v.dtype), v), itype)
    # Negative floats order backwards as integers: flip their magnitude bits.
    return jnp.where(bits < 0, bits ^ jnp.iinfo(itype).max, bits)


# Rows up to this length are sorted rather than bisected (module docstring).
SORT_AT_MOST = 256


def smallest_k(values: jax.Array, k: int, sort_at_most: int = SORT_AT_MOST) -> jax.Array:
    """Indices ``[k]`` of the ``k`` smallest of ``values [n]``, smallest first, ties in index
    order, NaN counted as +inf: what ``jax.lax.top_k(-values, k)[1]`` returns, faster on CPU.

    Pure and traceable (``vmap`` it over rows); ``k`` is static and at most ``n``. Rows of up
    to ``sort_at_most`` values are sorted, longer ones bisected (the same indices either way).
    """
    key = order_keys(values)
    if key.shape[-1] <= sort_at_most:
        return jnp.argsort(key, stable=True)[:k]
    return bisected_smallest(key, k)


def order_keys(values: jax.Array) -> jax.Array:
    """The integer keys :func:`smallest_k` ranks: NaN as +inf, -0.0 and 0.0 equal."""
    return _order_key(jnp.where(jnp.isnan(values), jnp.inf, values))


def bisected_smallest(key: jax.Array, k: int) -> jax.Array:
    """:func:`smallest_k` of the keys ``key [n]`` (:func:`order_keys`) by bisection on the k-th.

    The bisection stops early at a threshold with exactly ``k`` keys at or below it: those are
    the ``k`` smallest, whatever lies above. On the 4,500 screened Epoch starts that took a
    median 16 passes over the row instead of 64 (benchmarks/RESULTS.md, "Selection"); a tie
    across the k-th place never gives such a threshold, and the bisection runs on to the k-th
    key, whose ties are taken in index order."""

    def halve(bounds):
        # Invariant: the k-th smallest key lies in [lo, hi]; ``exact``: k keys are <= hi.
        lo, hi, _ = bounds
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2) without overflow
        count = jnp.sum(key <= mid)
        enough = count >= k
        return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi), count == k

    def running(bounds):
        lo, hi, exact = bounds
        return (lo < hi) & ~exact

    # The flag is made like the keys so that it varies as they do inside a user's shard_map.
    _, kth, exact = jax.lax.while_loop(running, halve, (jnp.min(key), jnp.max(key), jnp.zeros_like(key[0], dtype=bool)))
    below = jnp.where(exact, key <= kth, key < kth)
    tied = (key == kth) & ~exact
    chosen = below | (tied & (jnp.cumsum(tied) <= k - jnp.sum(below)))
    idx = jnp.nonzero(chosen, size=k)[0]
    return idx[jnp.argsort(key[idx], stable=True)]
