"""What Approach 1 (:mod:`jaxscale.envelope`) and Approach 2 (:mod:`jaxscale.isoflop`) share.

Both turn per-budget optima into N_opt ∝ C^a and D_opt ∝ C^b by least squares in log-log, pad
their groups into one array shape, and bootstrap in equal chunks of vmapped resamples, each
drawn from its own key. The option checks and messages are the same for both.

Example:
    >>> import jax.numpy as jnp
    >>> log_c = jnp.log(jnp.array([1e18, 1e19, 1e20]))
    >>> slope, intercept = power_law(log_c, 0.5 * log_c + 1.0, jnp.array([True, True, True]))
    >>> round(float(slope), 12), round(float(intercept), 12)
    (0.5, 1.0)
    >>> boot_chunk(1000, 1 << 20), boot_chunk(0, 1)
    (4, 1)
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import checks
from .batches import balanced_chunk
from .io import python_value

# Bound on the elements of one bootstrap chunk's largest intermediate array: chunks keep peak
# memory flat whatever n_resamples is (results do not depend on it: every resample has its own key).
CHUNK_ELEMENTS = 1 << 22


def check_options(
    by: str | Sequence[str] | None, *, level: float, n_resamples: int, flops_per_token: float
) -> list[str]:
    """Validate the options both approaches take; returns ``by`` as a list of columns."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95); got {level}")
    checks.check_resamples(n_resamples)
    if not flops_per_token > 0:
        raise ValueError(f"flops_per_token must be > 0 (6 for C = 6ND); got {flops_per_token}")
    return [] if by is None else [by] if isinstance(by, str) else list(by)


def group_keys(df: pd.DataFrame, by: list[str]) -> tuple[np.ndarray, list[tuple]]:
    """Each row's group number (groups sorted by key, NaN a key of its own) and every group's key."""
    gid = df.groupby(by, sort=True, dropna=False).ngroup().to_numpy() if by else np.zeros(len(df), np.int64)
    _, first = np.unique(gid, return_index=True)
    return gid, [tuple(python_value(v) for v in df[by].iloc[i]) for i in first]


def group_ids(keys: list[tuple]) -> np.ndarray:
    """A 32-bit hash of each group's key: it names the group's PRNG stream, whatever else is in the call."""
    return np.array([zlib.crc32(repr(key).encode()) for key in keys], np.uint32)


def group_label(by: list[str], key: tuple) -> str:
    return "all runs" if not by else "group " + ", ".join(f"{c}={v!r}" for c, v in zip(by, key, strict=True))


def boot_chunk(n_resamples: int, elements_per_resample: int) -> int:
    """Resamples per vmapped chunk: at most :data:`CHUNK_ELEMENTS` in all, in equal chunks."""
    if not n_resamples:
        return 1
    return balanced_chunk(n_resamples, min(n_resamples, CHUNK_ELEMENTS // max(1, elements_per_resample)))


def chunked_resamples(one: Callable[[jax.Array], dict], n_resamples: int, chunk: int) -> dict:
    """``one(i)`` for ``i < n_resamples``, stacked ``[n_resamples, ...]``: ``chunk`` at a time under vmap.

    Whole chunks only (a remainder would compile the body twice); surplus resamples are dropped.
    """
    n_chunks = -(-n_resamples // chunk)
    boot = jax.lax.map(jax.vmap(one), jnp.arange(n_chunks * chunk).reshape(n_chunks, chunk))
    return jax.tree.map(lambda v: v.reshape((n_chunks * chunk,) + v.shape[2:])[:n_resamples], boot)


def uniform_below(bits: jax.Array, n: jax.Array) -> jax.Array:
    """Uniform integers in ``[0, n)`` from 32 random ``bits`` by multiply-shift (bias below n / 2^32).

    One threefry call per draw, where ``jax.random.randint`` makes two: measured ~2x cheaper to
    compile and run in these bootstraps.
    """
    return ((bits.astype(jnp.uint64) * n.astype(jnp.uint64)) >> 32).astype(n.dtype)


def power_law(
    log_c: jax.Array, log_v: jax.Array, use: jax.Array, weight: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Least-squares ``log_v = intercept + slope · log_c`` over the budgets in ``use`` (NaN if < 2),
    each budget weighted by ``weight`` (default 1)."""
    u = use.astype(log_c.dtype) if weight is None else jnp.where(use, weight, 0.0).astype(log_c.dtype)
    n = jnp.sum(u, axis=-1)
    mc = jnp.sum(u * log_c, axis=-1) / jnp.where(n > 0, n, 1)
    mv = jnp.sum(u * log_v, axis=-1) / jnp.where(n > 0, n, 1)
    dc = u * (log_c - mc[..., None])
    sxx = jnp.sum(dc * (log_c - mc[..., None]), axis=-1)
    ok = (jnp.sum(use, axis=-1) >= 2) & (sxx > 0)
    slope = jnp.sum(dc * (log_v - mv[..., None]), axis=-1) / jnp.where(ok, sxx, 1.0)
    return jnp.where(ok, slope, jnp.nan), jnp.where(ok, mv - slope * mc, jnp.nan)
