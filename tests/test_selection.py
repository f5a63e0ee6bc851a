import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxscale.selection import SORT_AT_MOST, bisected_smallest, order_keys, smallest_k

_VALUES = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, 1e-300, -1e300, 7.0, np.inf, -np.inf, np.nan])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(_VALUES, st.floats(-1e6, 1e6)), min_size=1, max_size=80), st.data())
def test_smallest_k_matches_top_k_with_ties_infinities_and_nan(values, data):
    """The same indices in the same order as lax.top_k on the negated values (NaN as +inf),
    ties included, in float64 and float32. -0.0 and 0.0 are equal: their ties go by index.
    Rows this short are sorted; the bisection that longer rows take is checked on them too."""
    k = data.draw(st.integers(1, len(values)))
    with jax.enable_x64(True):
        for dtype in (np.float64, np.float32):
            with np.errstate(over="ignore"):  # 1e300 -> inf in float32, as intended
                v = jnp.asarray(np.asarray(values, dtype=np.float64).astype(dtype))
            clean = jnp.where(jnp.isnan(v), jnp.inf, jnp.where(v == 0, 0.0, v))  # top_k orders -0.0 apart
            expected = jax.lax.top_k(-clean, k)[1]
            got = jax.jit(smallest_k, static_argnums=1)(v, k)
            np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
            bisected = jax.jit(bisected_smallest, static_argnums=1)(order_keys(v), k)
            np.testing.assert_array_equal(np.asarray(bisected), np.asarray(expected))


@pytest.mark.parametrize("n, k", [(4500, 256), (SORT_AT_MOST, 8)])  # bisected, sorted
def test_smallest_k_rows_under_vmap_equal_a_python_loop(n, k):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        rows = jnp.asarray(np.round(rng.lognormal(size=(16, n)), 2))  # rounding makes ties
        batched = jax.jit(jax.vmap(lambda r: smallest_k(r, k)))(rows)
        for i in range(rows.shape[0]):
            np.testing.assert_array_equal(np.asarray(batched[i]), np.asarray(smallest_k(rows[i], k)))
            np.testing.assert_array_equal(np.asarray(batched[i]), np.asarray(jax.lax.top_k(-rows[i], k)[1]))
