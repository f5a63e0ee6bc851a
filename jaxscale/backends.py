"""Batch sizes that depend on the machine: how the runner spreads many problems over it.

One place for every size that is chosen per JAX backend (:func:`sizes`):

* ``lanes``: starts iterated side by side, and ``chunk_size``: most problems per kernel call.
  A CPU steps a lane in microseconds of arithmetic, so 512 lanes in calls of 2,048 problems fit
  its caches (benchmarks/RESULTS.md, "Lane packing", "Chunk size"). A GPU's loop iteration
  costs kernel launches whatever the lane count, so it takes many problems at once: issue 22's
  H200 ran 4,000 resamples fastest with 16,384 lanes in one call, and 100,000 in calls of 16,384
  (benchmarks/RESULTS.md, "GPU").
* ``one_block``: step all lanes as one block. On a CPU, once a call's queue of starts is empty
  only the blocks of lanes still running are stepped (:func:`jaxscale.engine.lane_layout`), one
  block after the other; on a GPU that loop multiplies the launches, while stepping every lane
  costs what stepping a few does.
* ``screen_batch``: groups whose starts are screened together, and problems whose best starts
  are selected together (one at a time on a CPU, where the ``[starts, points]`` table of one
  group already fills the cores and the selection's bisection stops early per row; a GPU's
  launches again).
* ``posterior_groups``: groups whose chains share one call of ``posterior(by=...)``. On a CPU
  each batched NUTS step waits for the deepest tree of all its chains, so few groups per call,
  two calls at a time; not 1, whose size-1 batch XLA compiles to other last bits than a batch
  of any other size, which all give the same chains.
* ``calls_at_once``: kernel calls in flight at once (:func:`jaxscale.batches.side_by_side`).
  One XLA:CPU call leaves part of the machine idle (its loop's serial parts, the host's padding
  and bookkeeping between calls, the next shape's compilation): two at once were faster on 2 cores
  for fit_groups and the bootstrap, more were slower (RESULTS.md, "Calls at once"). On a GPU the
  host's work and compilation overlap the device's.
* ``compile_points``: what one more compiled kernel costs, in padded group-points of work, when
  ``fit_groups`` chooses its buckets (:func:`jaxscale.batches.group_buckets`): on a CPU, a
  bucket kernel's compilation over what padding one more point costs per group, both measured on
  this project's 2-core machine (benchmarks/RESULTS.md, "Buckets"). A GPU compiles as slowly
  and is launch-bound, so padding costs it little: a larger figure, derived from issue 22's H200
  figures, not measured.
* ``grouped_compile``: XLA options for the kernels of grouped problems (``fit_groups``), whose
  first call compiles several kernels for seconds each. On a CPU, XLA's older fusion emitters
  (``xla_cpu_use_fusion_emitters`` off) compile them faster, which outweighs their slower loops
  in a first call, and LLVM's optimisation level 1 (``xla_backend_optimization_level``) compiles
  them faster still (the same results on the 10,000-group archive, loops as fast); a single
  fit's and a bootstrap's kernels run long after one compilation, so they keep XLA's defaults
  (benchmarks/RESULTS.md, "Compile time").
* ``grouped_solver``: ``fit_groups``' default solver. On a CPU, ``"bfgs_mixed"``
  (:mod:`jaxscale.mixed`): a search in float32, whose ``exp`` and ``log`` cost a fraction of
  float64's, finished in float64: faster calls (benchmarks/RESULTS.md, "Solvers"). A
  GPU steps all lanes as one block, which would hold lanes of both phases and evaluate both
  precisions nearly every step, and is bound by loop iterations rather than arithmetic: the
  float64 ``"bfgs"`` until ``device_run.sh`` measures the other.

The GPU sizes other than issue 22's lanes and chunks are not measured yet (no GPU lent since);
``benchmarks/device_run.sh`` measures them. Results are bit-identical whatever ``chunk_size``
and ``calls_at_once``; ``lanes``, ``one_block`` and ``screen_batch`` fix the compiled arithmetic,
so a GPU's last bits may differ from a CPU's, as any two backends' do.

Example:
    >>> from jaxscale import backends
    >>> backends.sizes("cpu").lanes, backends.sizes("cpu").chunk_size, backends.sizes("gpu").lanes
    (512, 2048, 16384)
"""

from __future__ import annotations

from typing import NamedTuple

import jax


class Sizes(NamedTuple):
    """How many problems, lanes and calls at once, for one backend."""

    lanes: int
    chunk_size: int
    one_block: bool
    screen_batch: int
    calls_at_once: int
    posterior_groups: int  # groups per call of posterior(by=...); 0: all at once
    compile_points: int  # a compilation's cost in padded group-points of work (batches.group_buckets)
    grouped_compile: tuple[tuple[str, object], ...]  # XLA options for grouped problems' kernels
    grouped_solver: str  # fit_groups' default solver


CPU = Sizes(
    lanes=512,
    chunk_size=2048,
    one_block=False,
    screen_batch=1,
    calls_at_once=2,
    posterior_groups=4,
    compile_points=300_000,
    grouped_compile=(("xla_cpu_use_fusion_emitters", False), ("xla_backend_optimization_level", 1)),
    grouped_solver="bfgs_mixed",
)
GPU = Sizes(
    lanes=16384,
    chunk_size=16384,
    one_block=True,
    screen_batch=256,
    calls_at_once=2,
    posterior_groups=0,
    compile_points=2_000_000,
    grouped_compile=(),
    grouped_solver="bfgs",
)
GPU_NAMES = ("gpu", "cuda", "rocm")


def sizes(backend: str | None = None) -> Sizes:
    """The sizes for ``backend`` (default: JAX's default backend); a backend other than a GPU gets the CPU's."""
    name = jax.default_backend() if backend is None else backend
    return GPU if name in GPU_NAMES else CPU


def or_default(name: str, value: int | None) -> int:
    """``value``, or where it is ``None`` this backend's size ``name`` (a :class:`Sizes` field)."""
    return int(getattr(sizes(), name) if value is None else value)
