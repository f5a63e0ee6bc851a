"""Batches of problems: padding to bucket sizes and chunked, device-sharded kernel calls.

The runner's host side below :mod:`jaxscale.runner`: a problem's points are padded to a bucket
size (:func:`bucket_size`, :func:`pad_points`, :func:`pad_groups`) so that many run counts share
a few compiled kernels, and a batch of problems is split into equal chunks (:func:`balanced_chunk`)
solved one kernel call at a time, or one chunk per device (:func:`solve`); calls run side by side
(:func:`side_by_side`), several buckets' calls in the order :func:`bucket_calls` gives them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple, TypeVar

import jax
import numpy as np

from . import backends, engine, problem, screening
from .problem import Best, Config, Data, centered_starts, limits_of

WeightSource = Callable[[int, int], np.ndarray]
T = TypeVar("T")
R = TypeVar("R")


def side_by_side(fn: Callable[[T], R], items: Iterable[T], at_once: int) -> Iterator[R]:
    """``fn(item)`` for each item, in order, with up to ``at_once`` calls running at a time.

    Kernel calls release Python while XLA runs, so calls in threads overlap one another's
    compilation, the host's padding and bookkeeping, and the parts of a call that leave cores
    idle (:data:`jaxscale.backends.Sizes.calls_at_once`). Each call is the same computation
    as when run alone, so results do not depend on ``at_once``. JAX's float64 switch is
    per thread, so each call runs with the caller's. Calls not yet started are cancelled
    when the caller stops early or raises; one already running finishes in its thread.

    Example:
        >>> list(side_by_side(lambda x: x * x, range(5), at_once=2))
        [0, 1, 4, 9, 16]
    """
    items = list(items)
    if at_once <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    x64 = bool(jax.config.jax_enable_x64)

    def run(item: T) -> R:
        with jax.enable_x64(x64):
            return fn(item)

    pool = ThreadPoolExecutor(min(at_once, len(items)), thread_name_prefix="jaxscale")
    try:
        for future in [pool.submit(run, item) for item in items]:
            yield future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def in_background(fn: Callable[..., R], *args) -> Future:
    """``fn(*args)`` in a thread of its own, started now, with the caller's float64 setting (JAX's
    is per thread): its result (or exception) comes from the future's ``result()``. For work that
    fills a core the current work leaves idle, e.g. compiling a kernel that later calls need.

    Example:
        >>> in_background(sum, [1, 2, 3]).result()
        6
    """
    x64 = bool(jax.config.jax_enable_x64)

    def run() -> R:
        with jax.enable_x64(x64):
            return fn(*args)

    pool = ThreadPoolExecutor(1, thread_name_prefix="jaxscale-ahead")
    try:
        return pool.submit(run)
    finally:
        pool.shutdown(wait=False)


# One thread traces (and lowers) a kernel at a time: tracing is Python, so two threads tracing at
# once under the GIL each finish at the end of both, where one at a time the first compiles
# (outside Python, on another core) while the next traces.
_TRACING = threading.Lock()


def traced_alone(kernel, *args, **static):
    """``kernel.lower(*args, **static)`` while no other thread traces (jitted ``kernel``'s call
    with these arguments then reuses the trace): calls of :func:`side_by_side` that each start
    with a new kernel compile one while the next traces, rather than trace side by side.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> traced_alone(jax.jit(jnp.sin), jnp.zeros(3)).compile()(jnp.zeros(3)).tolist()
        [0.0, 0.0, 0.0]
    """
    with _TRACING:
        return kernel.lower(*args, **static)


def balanced_chunk(n: int, most: int) -> int:
    """Problems per kernel call: ``n`` split into equal calls of at most ``most`` each.

    Every call of a chunked solve has one shape (the last is padded with copies), so 2,100
    problems in calls of 2,048 would solve 4,096; in two calls of 1,050 they solve 2,100.
    Solver lanes are refilled within a call only, and each call ends waiting for its slowest
    start, so fewer, larger calls are faster (benchmarks/RESULTS.md, "Chunk size").

    Example:
        >>> balanced_chunk(2100, 2048), balanced_chunk(4000, 2048), balanced_chunk(100, 2048)
        (1050, 2000, 100)
    """
    return -(-n // -(-n // max(1, most)))


MIN_BUCKET = 8


def power_of_two(n: int) -> int:
    """The least power of two at least ``n`` (1 for ``n <= 1``): counts padded to it compile a
    few shapes, however many problems or rows a call meets.

    Example:
        >>> [power_of_two(n) for n in (0, 1, 5, 8, 9)]
        [1, 1, 8, 8, 16]
    """
    return 1 << max(int(n) - 1, 0).bit_length()


def bucket_size(n_points: int) -> int:
    """The padded size of ``n_points`` runs: the next power of two, at least 8.

    Kernels compile once per data shape (seconds each: benchmarks/RESULTS.md, "Compile
    time"), and each compiled kernel holds ~550 of the process's memory mappings, of 65,530
    allowed by Linux's default vm.max_map_count. Padding to a few sizes bounds both, whatever the
    number of distinct run counts a loop of fits or an archive of groups meets.

    Example:
        >>> [bucket_size(n) for n in (5, 9, 240, 300)]
        [8, 16, 256, 512]
    """
    return max(MIN_BUCKET, power_of_two(n_points))


# fit_groups' bucket sizes: as bucket_size up to this many runs, then its multiples.
GROUP_STEP = 32


def group_buckets(counts, compile_points: int, split_after: int | None = None) -> dict[int, int]:
    """The padded size of each group size in ``counts`` (run counts of an archive's groups), as
    ``{count: size}``: buckets chosen for the archive.

    A bucket compiles one kernel (seconds) and pads its groups to its size (time in every call),
    so the choice weighs the two. A count's own size is :func:`bucket_size` up to
    :data:`GROUP_STEP` runs and the next multiple of :data:`GROUP_STEP` above; consecutive own
    sizes then share a bucket (the largest of them) wherever that pads fewer points than
    ``compile_points`` (a compilation's cost in padded points of work: the backend's,
    :data:`jaxscale.backends.Sizes.compile_points`) per bucket saved: the exact minimum of padded
    points + ``compile_points`` × buckets, by dynamic programming over the sorted sizes. No bucket
    holds groups on both sides of ``split_after`` runs (a multiple of :data:`GROUP_STEP`).

    Example:
        >>> group_buckets([20, 30, 40, 70, 300], compile_points=0)
        {20: 32, 30: 32, 40: 64, 70: 96, 300: 320}
        >>> group_buckets([20, 30, 40, 70, 300], compile_points=10_000, split_after=64)
        {20: 64, 30: 64, 40: 64, 70: 320, 300: 320}
    """
    counts = np.asarray(counts, dtype=np.int64)
    own = np.array([bucket_size(n) if n <= GROUP_STEP else -(-n // GROUP_STEP) * GROUP_STEP for n in counts.tolist()])
    sizes, per_size = np.unique(own, return_counts=True)
    groups_upto = np.concatenate([[0], np.cumsum(per_size)])
    best = np.zeros(len(sizes) + 1)  # best[j]: cost of the first j sizes in buckets
    cut = np.zeros(len(sizes) + 1, dtype=np.int64)  # where the last of those buckets starts
    for j in range(1, len(sizes) + 1):
        best[j] = np.inf
        for i in range(j, 0, -1):  # the last bucket holds sizes i-1 .. j-1, padded to sizes[j-1]
            if split_after is not None and sizes[i - 1] <= split_after < sizes[j - 1]:
                break
            cost = best[i - 1] + compile_points + sizes[j - 1] * (groups_upto[j] - groups_upto[i - 1])
            if cost < best[j]:
                best[j], cut[j] = cost, i - 1
    bucket_of = {}
    j = len(sizes)
    while j > 0:
        for size in sizes[cut[j] : j]:
            bucket_of[int(size)] = int(sizes[j - 1])
        j = cut[j]
    return {int(n): bucket_of[int(o)] for n, o in zip(counts.tolist(), own.tolist(), strict=True)}


def pad_points(data: Data, weights: np.ndarray, size: int) -> tuple[Data, np.ndarray]:
    """One problem's points padded to ``size`` with weight-0 copies of its points (cycled), which
    add exactly 0 to the objective; the centring shift stays that of the real points."""
    take = np.resize(np.arange(weights.shape[-1]), size)
    padded = np.zeros(weights.shape[:-1] + (size,))
    padded[..., : weights.shape[-1]] = weights
    log_x, log_y = np.asarray(data.log_x)[take], np.asarray(data.log_y)[take]
    return data._replace(log_x=to_device(log_x), log_y=to_device(log_y)), padded


def to_device(a) -> jax.Array:
    """A host array on JAX's default device, as ``jnp.asarray`` makes it (the dtype canonical for
    the x64 setting), without compiling: ``jnp.asarray`` of a host array runs a small compiled
    program (``lax.stage``), compiled once per shape, which a first call of many shapes pays
    for each.

    Example:
        >>> import numpy as np
        >>> to_device(np.arange(3.0)).tolist()
        [0.0, 1.0, 2.0]
    """
    return jax.device_put(np.asarray(a))


def pad_rows(a: np.ndarray, size: int) -> np.ndarray:
    """Pad the leading axis to ``size`` with copies of the first row (trimmed off afterwards)."""
    return a if a.shape[0] == size else np.concatenate([a, np.repeat(a[:1], size - a.shape[0], axis=0)])


def solve(
    cfg: Config,
    data: Data,
    starts: np.ndarray,
    weights: np.ndarray | WeightSource,
    *,
    n_refine: int,
    chunk_size: int,
    n_problems: int | None = None,
    lanes: int | None = None,
    devices: int = 1,
    progress: Callable[[int, int], None] | None = None,
    grouped: bool = False,
    data_index: np.ndarray | None = None,
    first_refine: int | None = None,
    spread_first: bool = False,
    at_once: int = 1,
    compile_only: bool = False,
) -> Best | None:
    """All problems in chunks of ``chunk_size`` problems (``devices`` chunks at a time), up to
    ``at_once`` kernel calls in flight (:func:`side_by_side`).

    ``weights`` is a ``[B, P]`` array, or a function ``(lo, hi) -> [hi - lo, P]`` (with
    ``n_problems``) so that weights are made chunk by chunk and memory stays bounded. The
    problems are split into equal chunks of at most ``chunk_size`` (:func:`balanced_chunk`);
    the last is padded with copies of its first problem and trimmed: every chunk has the
    same shape and the kernel compiles once. ``lanes`` is how many starts are iterated side
    by side (the backend's, :mod:`jaxscale.backends`). It is not capped by the size of a chunk:
    the lane count fixes the compiled arithmetic (through :func:`jaxscale.engine.lane_layout`'s block
    width), so keeping it fixed makes results bit-identical across chunk sizes and device
    counts (idle lanes cost time only in a block that also holds a live one).

    ``grouped``: each problem has its own data (host arrays in ``data`` with a leading
    ``[B]`` axis, e.g. ragged groups padded with weight-0 points); chunks of it are sent
    to the device one at a time. ``data_index`` (optional, ``[n]``) says which row of
    ``data`` each problem uses (e.g. several resamples of one group). ``first_refine``
    (``< n_refine``): each problem refines that many first and the rest only where in doubt,
    within each call (:func:`jaxscale.engine.solve_chunk`'s ``first``), those spread over the
    ``n_refine`` with ``spread_first``. ``compile_only``: compile the kernel of these calls
    (JAX keeps it for the calls to come) without running it, and return None.
    """
    lanes = backends.or_default("lanes", lanes)
    if callable(weights):
        source, n = weights, int(n_problems)
    else:
        array = np.asarray(weights)
        source, n = (lambda lo, hi: array[lo:hi]), array.shape[0]
    # Grouped: each problem centers the starts on its own data, in the kernel (screening.screened_starts).
    starts_c = to_device(starts) if grouped else centered_starts(cfg, data, starts)
    k = min(n_refine, starts.shape[0])
    first = None if first_refine is None or first_refine >= k else int(first_refine)
    limits = limits_of(cfg, np.asarray(starts).dtype)
    cfg = cfg._replace(max_steps=0, gtol=0.0)  # in the kernels' static key; limits carries them
    cfg = screening.with_grid_starts(cfg, starts)  # the law's grid: ranked term by term
    chunk = call_chunk(n, chunk_size, devices, grouped)
    step = chunk * devices

    def call(lo: int) -> tuple[int, Best]:
        hi = min(lo + step, n)
        w = to_device(pad_rows(source(lo, hi), step))
        chunk_data = data
        if grouped:
            rows = np.arange(lo, hi) if data_index is None else np.asarray(data_index)[lo:hi]
            chunk_data = Data(*(to_device(pad_rows(np.asarray(a)[rows], step)) for a in data))
        args, static = (chunk_data, starts_c, w, limits), {}
        if devices == 1:
            kernel, args = engine.chunk_solver(grouped), (cfg, *args, k, lanes)
            static = dict(grouped=grouped, first=first, spread=spread_first)
        else:
            kernel = engine.sharded_solver(cfg, k, lanes, devices, grouped, first, spread_first)
        lowered = traced_alone(kernel, *args, **static)
        if compile_only:
            lowered.compile()
            return hi, None
        return hi, jax.tree.map(lambda a: np.asarray(a)[: hi - lo], kernel(*args, **static))

    if compile_only:  # every call has the first one's shapes
        call(0)
        return None
    outs = []
    for hi, out in side_by_side(call, range(0, n, step), at_once):
        outs.append(out)
        if progress is not None:
            progress(hi, n)
    return Best(*(np.concatenate(parts) for parts in zip(*outs, strict=True)))


def call_chunk(n: int, chunk_size: int, devices: int = 1, grouped: bool = False) -> int:
    """Problems per device in each kernel call of :func:`solve` over ``n`` problems: equal calls
    (:func:`balanced_chunk`) of at most ``chunk_size`` per device; ``devices`` such chunks per call.

    Example:
        >>> call_chunk(4543, 2048), call_chunk(4543, 2048, devices=2), call_chunk(1, 2048, grouped=True)
        (1515, 1136, 4)
    """
    return max(GROUPED_MIN_ROWS if grouped else 1, balanced_chunk(-(-n // devices), chunk_size))


# Grouped calls solve at least this many problems, padding fewer. XLA compiles a call of one
# problem differently (its size-1 axes are simplified away), and the last bits that changes set
# BFGS on another path: parameters differed by up to 4e-8 from the same groups solved 2 or more
# per call (same optimum, objective within 1e-14). Compiled with the CPU's options for grouped
# kernels (backends.Sizes.grouped_compile), a call of 2 differed too (4 of 20 groups of
# test_groups' chunk-size test; 3, 4, 5, 7, 16 and 64 agreed with 2,048 to the bit).
GROUPED_MIN_ROWS = 4


class Call(NamedTuple):
    """One kernel call over groups ``lo..hi-1`` of the bucket of ``size`` runs (:func:`bucket_calls`)."""

    size: int
    lo: int
    hi: int
    compile_only: bool = False  # compile the bucket's kernel, do not run it


class Calls(NamedTuple):
    """Every bucket's kernel calls and their shapes (:func:`bucket_calls`)."""

    order: list[Call]  # in the order to start them
    rows: dict[int, int]  # groups per call, by bucket size
    chunk: dict[int, int]  # groups per device in a call
    at_once: int


def bucket_calls(
    counts: dict[int, int], per_group: dict[int, float], chunk_size: int, devices: int, at_once: int
) -> Calls:
    """The kernel calls of buckets of ``counts[size]`` groups (those :func:`solve` makes for each,
    grouped), in an order that keeps ``at_once`` calls side by side busy: first one call of each
    of the ``at_once`` buckets with the most work (``per_group[size]`` a group, in any unit),
    which compile their kernels side by side; then the other buckets' kernels compiled
    (``compile_only`` calls), so that no compilation falls among the last calls; then the calls
    left, longest first, so that the last to start are short and no thread idles long while
    another finishes.

    Example:
        >>> calls = bucket_calls({64: 1620, 192: 4543, 320: 3837}, {64: 1536, 192: 1160, 320: 1624}, 2048, 1, 2)
        >>> [(c.size, c.lo, c.compile_only) for c in calls.order[:4]], calls.rows
        ([(320, 0, False), (192, 0, False), (64, 0, True), (320, 1919, False)], {64: 1620, 192: 1515, 320: 1919})
    """
    chunk = {size: call_chunk(n, chunk_size, devices, grouped=True) for size, n in counts.items()}
    rows = {size: c * devices for size, c in chunk.items()}
    calls = [Call(size, lo, min(lo + rows[size], n)) for size, n in counts.items() for lo in range(0, n, rows[size])]

    def work(call: Call) -> float:
        return (call.hi - call.lo) * per_group[call.size]

    by_bucket = sorted(counts, key=lambda size: -counts[size] * per_group[size])
    opening = [Call(size, 0, min(rows[size], counts[size])) for size in by_bucket[:at_once]]
    compiles = [Call(size, 0, min(rows[size], counts[size]), compile_only=True) for size in by_bucket[at_once:]]
    rest = sorted((c for c in calls if c not in opening), key=work, reverse=True)
    return Calls(opening + compiles + rest, rows, chunk, at_once)


def pad_groups(
    cfg: problem.Config,
    theta_fixed: np.ndarray,
    log_x: np.ndarray,
    log_y: np.ndarray,
    members,
    size: int,
    run_weights: np.ndarray | None = None,
):
    """Host arrays ``Data [G, size, ...]`` and weights ``[G, size]`` for the groups of runs
    ``members`` (row indices per group): each padded to ``size`` with weight-0 copies of its
    points (cycled) and centered on its own runs; a run's weight is ``run_weights[row]`` (default 1)."""
    take, real = group_rows(members, size)
    ws = real * (1.0 if run_weights is None else run_weights[take])
    shifts = np.stack([problem.center_shift(cfg.law, log_x[rows], cfg.free) for rows in members])
    thetas = np.broadcast_to(theta_fixed, (len(members), theta_fixed.size)).copy()
    return problem.Data(log_x[take], log_y[take], thetas, shifts), ws


def group_rows(members, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``[G, size]`` of the groups of runs ``members``, each padded to ``size`` by
    cycling through its own runs, and ``[G, size]`` 1.0 for a real run, 0.0 for a padding copy
    (whose weight is 0): ragged groups as one array."""
    take = np.stack([np.resize(rows, size) for rows in members])
    real = (np.arange(size)[None, :] < np.array([len(rows) for rows in members])[:, None]).astype(np.float64)
    return take, real


def rows_of(source: WeightSource, rows: np.ndarray, chunk: int) -> np.ndarray:
    """Rows ``rows`` (sorted) of a chunked weight source ``(lo, hi) -> [hi - lo, P]``."""
    parts = []
    for lo in range(0, int(rows[-1]) + 1, chunk):
        sel = rows[(rows >= lo) & (rows < lo + chunk)]
        if sel.size:
            parts.append(source(lo, int(sel[-1]) + 1)[sel - lo])
    return np.concatenate(parts)


def with_rows(best: Best, rows: np.ndarray, other: Best, fields=Best._fields) -> Best:
    """``best`` with problems ``rows`` taken from ``other`` (one row of ``other`` per row)."""
    out = {}
    for name in fields:
        a = np.array(getattr(best, name))
        a[rows] = np.asarray(getattr(other, name))
        out[name] = a
    return best._replace(**out)
